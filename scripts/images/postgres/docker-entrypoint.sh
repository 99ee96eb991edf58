#!/bin/bash
# Entrypoint of the PostgreSQL stand-in: what the official image's entrypoint does for a
# non-root container, written for this image (scripts/images/STANDINS.md lists the contract).
# On an empty PGDATA: initdb as POSTGRES_USER with POSTGRES_PASSWORD and POSTGRES_INITDB_ARGS,
# remote connections by POSTGRES_HOST_AUTH_METHOD (scram-sha-256), POSTGRES_DB created, then every
# /docker-entrypoint-initdb.d file (*.sh run, or sourced when not executable; *.sql through psql)
# against a server listening on the socket only. Then PostgreSQL runs in the foreground.
set -Eeuo pipefail

log() { echo "docker-entrypoint: $*" >&2; }

if [[ ${1:-} == -* ]]; then set -- postgres "$@"; fi
if [[ ${1:-} != postgres ]]; then exec "$@"; fi

: "${PGDATA:?PGDATA must be set}"
export POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  if [[ -z ${POSTGRES_PASSWORD:-} && $auth != trust ]]; then
    log "database is uninitialized and POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)"
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 0700 "$PGDATA"
  log "initializing $PGDATA"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
    ${POSTGRES_INITDB_ARGS:-} >&2
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start >&2
  export PGPASSWORD=${POSTGRES_PASSWORD:-}
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [[ $POSTGRES_DB != postgres ]]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >&2
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh)
        if [[ -x $f ]]; then log "running $f"; "$f"; else log "sourcing $f"; . "$f"; fi ;;
      *.sql) log "running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" >&2 ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" >&2 ;;
      */\*) ;;
      *) log "ignoring $f" ;;
    esac
  done
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop >&2
  log "init process complete; ready for start up"
fi

exec "$@"
