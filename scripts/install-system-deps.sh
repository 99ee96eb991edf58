#!/usr/bin/env bash
# Installs the Debian packages the test tiers use, if missing: PostgreSQL and Redis servers for the
# integration and reliability tiers, wrk for the benchmarks, openssl for the cluster tier, and for
# the image and kind tiers a Docker engine (unless one already answers) with what the offline image
# builds use (debootstrap, zstd, patch, and libseccomp-dev for runc; scripts/images/).
# Idempotent: a second run does nothing.
set -euo pipefail
need=()
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# the cluster tier makes its throwaway CA and certificates with openssl
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# A Docker engine: Debian's, started by scripts/docker-engine.sh, where none runs already.
if ! docker info >/dev/null 2>&1 && ! command -v dockerd >/dev/null 2>&1; then need+=(docker.io); fi
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v patch >/dev/null 2>&1 || need+=(patch)
[[ -e /usr/include/seccomp.h ]] || need+=(libseccomp-dev)
[[ ${#need[@]} -eq 0 ]] && exit 0
echo "install-system-deps: installing ${need[*]}" >&2
sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
