#!/usr/bin/env bash
# A Docker engine for the image and kind tiers, on machines without a running one.
#
#   scripts/docker-engine.sh start   start dockerd unless one answers; wait until it does
#   scripts/docker-engine.sh stop    stop the dockerd that `start` started (never another one)
#   scripts/docker-engine.sh status  exit 0 when an engine answers
#
# On a laptop or a hosted CI runner with Docker running, `start` finds it and does nothing. Here
# (no systemd; Debian's docker.io from scripts/install-system-deps.sh) it runs dockerd in the
# background as root and records its pid in $HELIOX_DOCKER_STATE (default /run/heliox-dockerd).
# Containers go into the caller's own memory cgroup (--cgroup-parent): by default Docker would put
# them under /docker at the root of each hierarchy, outside the cgroup that this machine's
# supervisor accounts our processes in (docs/ARCHITECTURE.md, "Images and the kind tier").
set -euo pipefail

state=${HELIOX_DOCKER_STATE:-/run/heliox-dockerd}
say() { echo "docker-engine: $*" >&2; }

answers() { docker info >/dev/null 2>&1; }

start() {
  if answers; then return 0; fi
  command -v dockerd >/dev/null || { say "no dockerd: run scripts/install-system-deps.sh (Debian's docker.io)"; exit 2; }
  [[ $(id -u) -eq 0 ]] || { say "dockerd must run as root here (no systemd to start it)"; exit 2; }
  mkdir -p "$state"
  local args=() memcg
  memcg=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
  if [[ -n $memcg && $memcg != / ]]; then
    args+=(--cgroup-parent="$memcg")
  fi
  say "starting dockerd ${args[*]} (log: $state/dockerd.log)"
  setsid dockerd "${args[@]}" --pidfile "$state/dockerd.pid" >"$state/dockerd.log" 2>&1 </dev/null &
  echo $! >"$state/started-by-us"
  local i
  for i in $(seq 120); do
    if answers; then say "dockerd answers"; return 0; fi
    if ! kill -0 "$(cat "$state/started-by-us")" 2>/dev/null; then break; fi
    sleep 0.5
  done
  tail -20 "$state/dockerd.log" >&2
  say "dockerd did not come up"
  exit 1
}

stop() {
  [[ -f $state/started-by-us ]] || return 0
  local pid
  pid=$(cat "$state/started-by-us")
  if kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]; then
    say "stopping dockerd ($pid)"
    kill -TERM "$pid"
    local i
    for i in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$state/started-by-us"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) say "usage: $0 start|stop|status"; exit 2 ;;
esac
