#!/usr/bin/env bash
# Installs the Debian packages the test tiers use, if missing: PostgreSQL and Redis servers for the
# integration and reliability tiers, wrk for the benchmarks, openssl for the cluster tier.
# Idempotent: a second run does nothing.
set -euo pipefail
need=()
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# the cluster tier makes its throwaway CA and certificates with openssl
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[[ ${#need[@]} -eq 0 ]] && exit 0
echo "install-system-deps: installing ${need[*]}" >&2
sudo=""; [[ $(id -u) -eq 0 ]] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
