#!/usr/bin/env bash
# Installs the project's pinned Go tools and links them into .tools/bin.
#
#   scripts/tools.sh helm helm3 kube-score ...   (no argument: every tool below)
#
# Binaries are built once per version with `go install` into
# ${HELIOX_CACHE:-~/.cache/heliox}/bin/<name>-<version>/ and linked from .tools/bin, so a fresh
# clone (CI) reuses them and a version bump never picks up a stale build. Go's own module and
# build caches stay in their default places, outside the checkout.
set -euo pipefail
# shellcheck source=scripts/go-env.sh
. "$(dirname "$0")/go-env.sh"

# name | go package | version   (one place to bump a pin)
TOOLS=(
  "helm|helm.sh/helm/v4/cmd/helm|v4.3.1"
  "helm3|helm.sh/helm/v3/cmd/helm|v3.22.0"
  "helm-docs|github.com/norwoodj/helm-docs/cmd/helm-docs|v1.14.2"
  "kube-score|github.com/zegl/kube-score/cmd/kube-score|v1.20.0"
  # Prometheus v3.16.0 (the module's v0.316.0): the chart's alert rules are unit-tested with it.
  "promtool|github.com/prometheus/prometheus/cmd/promtool|v0.316.0"
  "kind|sigs.k8s.io/kind|v0.33.0"
  "kwok|sigs.k8s.io/kwok/cmd/kwok|v0.8.0"
)

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${HELIOX_CACHE:-$HOME/.cache/heliox}/bin
links=$root/.tools/bin
mkdir -p "$links"

version_of() { # the pinned version of a tool, for scripts that need to print it
  local row
  for row in "${TOOLS[@]}"; do
    IFS='|' read -r n _ v <<<"$row"
    [[ $n == "$1" ]] && { echo "$v"; return 0; }
  done
  return 1
}

install_one() {
  local name=$1 row pkg version found=""
  for row in "${TOOLS[@]}"; do
    IFS='|' read -r n p v <<<"$row"
    if [[ $n == "$name" ]]; then found=1; pkg=$p; version=$v; fi
  done
  [[ -n $found ]] || { echo "tools.sh: unknown tool '$name'" >&2; return 2; }

  local dir=$cache/$name-$version bin
  bin=$dir/$(basename "$pkg")
  if [[ ! -x $bin ]]; then
    echo "tools.sh: building $name $version (go install $pkg@$version; cached for next time)" >&2
    local ldflags=""
    case $name in
      # Without these, `helm version` prints a generic default instead of the pinned release.
      helm) ldflags="-X helm.sh/helm/v4/internal/version.version=$version" ;;
      helm3) ldflags="-X helm.sh/helm/v3/internal/version.version=$version" ;;
    esac
    GOBIN=$dir.partial go install -ldflags "$ldflags" "$pkg@$version"
    rm -rf "$dir" && mv "$dir.partial" "$dir"
  fi
  ln -sfn "$bin" "$links/$name"
}

if [[ ${1:-} == --version ]]; then version_of "$2"; exit; fi
if [[ $# -eq 0 ]]; then
  for row in "${TOOLS[@]}"; do set -- "$@" "${row%%|*}"; done
fi
for tool in "$@"; do install_one "$tool"; done
