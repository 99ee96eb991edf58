# Sourced by every script that runs Go (and mirrored in the Makefile): Go's module and build
# caches live beside the project's other build caches under ~/.cache/heliox, which CI keeps
# between runs, unless the caller set them.
heliox_cache=${HELIOX_CACHE:-$HOME/.cache/heliox}
export GOMODCACHE=${GOMODCACHE:-$heliox_cache/go/mod}
export GOCACHE=${GOCACHE:-$heliox_cache/go/build}
