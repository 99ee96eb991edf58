#!/bin/sh
# Entrypoint of the Redis stand-in: as the official image's for a non-root container, files it
# creates are private (umask 0077) and `redis-server` with no config file runs unprotected (the
# container's network is the boundary). The subchart sets its own command and skips this.
set -eu
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
umask 0077
if [ "$1" = redis-server ] && [ "$#" -eq 1 ]; then set -- redis-server --protected-mode no; fi
exec "$@"
