#!/usr/bin/env bash
# Builds the Go (and one C) programs that the offline images carry, each once per version:
#
#   scripts/images/components.sh [NAME...]        (no argument: all; prints nothing when cached)
#   scripts/images/components.sh --dir NAME       the cached directory holding NAME's binaries
#
# Binaries go to ${HELIOX_CACHE:-~/.cache/heliox}/bin/<name>-<version>[-<patch hash>]/, outside the
# checkout, like scripts/tools.sh. The Kubernetes components (kubelet, kubeadm, kube-proxy and the
# control plane) and etcd come from scripts/control-plane/build.sh, which the cluster tier shares.
set -euo pipefail
# shellcheck source=scripts/go-env.sh
. "$(dirname "$0")/../go-env.sh"

here=$(cd "$(dirname "$0")" && pwd)
cache=${HELIOX_CACHE:-$HOME/.cache/heliox}/bin

# name | module | version | packages in the module (space-separated) | cgo | ldflags (%v: version)
# Versions follow kind v0.33's node image where served, and kubeadm v1.37's defaults for the
# images it asks for (CoreDNS). One place to bump a pin.
COMPONENTS=(
  "containerd|github.com/containerd/containerd/v2|v2.3.7|cmd/containerd cmd/containerd-shim-runc-v2 cmd/ctr|0|-X github.com/containerd/containerd/v2/version.Version=%v"
  "runc|github.com/opencontainers/runc|v1.5.3|.|1|-X main.version=%v"
  "crictl|sigs.k8s.io/cri-tools|v1.37.0|cmd/crictl|0|-X sigs.k8s.io/cri-tools/pkg/version.Version=%v"
  "cni-plugins|github.com/containernetworking/plugins|v1.9.1|plugins/main/bridge plugins/main/loopback plugins/ipam/host-local plugins/meta/portmap|0|-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=%v"
  "coredns|github.com/coredns/coredns|v1.14.6|.|0|"
  "local-path-provisioner|github.com/rancher/local-path-provisioner|v0.0.30|.|0|-X main.VERSION=%v"
  "kube-network-policies|sigs.k8s.io/kube-network-policies|v0.8.0|cmd|0|"
)
# runc's own default tags minus libpathrs (a Rust library; the Go fallback is used instead).
RUNC_TAGS="seccomp urfave_cli_no_docs"
CONTAINERD_TAGS="urfave_cli_no_docs no_btrfs"

log() { echo "images/components: $*" >&2; }

row_of() {
  local row
  for row in "${COMPONENTS[@]}"; do
    [[ ${row%%|*} == "$1" ]] && { echo "$row"; return 0; }
  done
  log "unknown component '$1'"
  return 2
}

# Patches applied to a module's source before building, from scripts/images/patches/<name>/.
patch_hash() {
  local dir=$here/patches/$1
  if [[ -d $dir ]]; then cat "$dir"/*.patch | sha256sum | cut -c1-10; fi
}

dir_of() {
  local name=$1 row version h
  row=$(row_of "$name")
  IFS='|' read -r _ _ version _ _ _ <<<"$row"
  h=$(patch_hash "$name")
  echo "$cache/$name-$version${h:+-$h}"
}

build_pause() {
  # The pause container's program, from the Kubernetes source of the pinned release (its
  # build/pause), compiled as upstream does: static, -Os. Tag 3.10.2 is what kubeadm v1.37 asks for.
  local kube_dir out
  kube_dir=$(cd "$here/../control-plane/kube" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  out=$cache/pause-3.10.2
  [[ -x $out/pause ]] && return 0
  log "building pause 3.10.2 from k8s.io/kubernetes build/pause (gcc -static)"
  rm -rf "$out.partial" && mkdir -p "$out.partial"
  gcc -Os -Wall -Werror -static -DVERSION=v3.10.2-heliox -o "$out.partial/pause" \
    "$kube_dir/build/pause/linux/pause.c"
  rm -rf "$out" && mv "$out.partial" "$out"
}

build_one() {
  local name=$1 row module version pkgs cgo ldflags out tags="" start=$SECONDS
  [[ $name == pause ]] && { build_pause; return; }
  row=$(row_of "$name")
  IFS='|' read -r _ module version pkgs cgo ldflags <<<"$row"
  out=$(dir_of "$name")
  [[ -f $out/.complete ]] && return 0
  ldflags="-s -w ${ldflags//%v/$version}"
  case $name in
    runc) tags=$RUNC_TAGS ;;
    containerd) tags=$CONTAINERD_TAGS ;;
  esac
  rm -rf "$out.partial" && mkdir -p "$out.partial"
  if [[ -d $here/patches/$name ]]; then
    # A patched module cannot be `go install`ed: build a patched copy of its source instead.
    log "building $name $version with scripts/images/patches/$name (cached in $out)"
    local src work
    src=$(cd "$here/../control-plane/kube" && go mod download -json "$module@$version" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    work=$(mktemp -d)
    cp -r "$src/." "$work" && chmod -R u+w "$work"
    local p
    for p in "$here/patches/$name"/*.patch; do patch -s -d "$work" -p1 <"$p"; done
    (cd "$work" && for pkg in $pkgs; do
      CGO_ENABLED=$cgo go build -trimpath -tags "$tags" -ldflags "$ldflags" \
        -o "$out.partial/$name" "./$pkg"
    done)
    rm -rf "$work"
  else
    log "building $name $version (go install; cached in $out)"
    local targets=() pkg
    for pkg in $pkgs; do
      if [[ $pkg == . ]]; then targets+=("$module@$version"); else targets+=("$module/$pkg@$version"); fi
    done
    GOBIN=$out.partial CGO_ENABLED=$cgo go install -trimpath -tags "$tags" -ldflags "$ldflags" "${targets[@]}"
  fi
  touch "$out.partial/.complete"
  rm -rf "$out" && mv "$out.partial" "$out"
  log "built $name $version in $((SECONDS - start))s"
}

if [[ ${1:-} == --dir ]]; then
  if [[ $2 == pause ]]; then echo "$cache/pause-3.10.2"; else dir_of "$2"; fi
  exit
fi
mkdir -p "$cache"
if [[ $# -eq 0 ]]; then
  for row in "${COMPONENTS[@]}"; do set -- "$@" "${row%%|*}"; done
  set -- "$@" pause
fi
for c in "$@"; do build_one "$c"; done
