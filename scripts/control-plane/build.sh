#!/usr/bin/env bash
# Builds the pinned control-plane binaries of the cluster tier and links them into .tools/bin.
#
#   scripts/control-plane/build.sh [kube] [etcd] [kwok]     (no argument: all three)
#
#   kube  one multi-call binary from the wrapper module kube/ (k8s.io/kubernetes, staging modules
#         mapped to their published releases): kube-apiserver, kube-controller-manager,
#         kube-scheduler, kubectl, and the kind node image's kubelet, kubeadm and kube-proxy are
#         links to it (see kube/main.go)
#   etcd  etcd from the wrapper module etcd/ (its server module has replace directives)
#   kwok  the kwok controller (not kwokctl), via scripts/tools.sh
#
# The versions are the ones in the wrapper modules' go.mod (and tools.sh for kwok): one place to
# bump a pin. Binaries are cached once per version and wrapper content under
# ${HELIOX_CACHE:-~/.cache/heliox}/bin/<name>-<version>-<hash>/, like scripts/tools.sh does, so a
# fresh clone (CI) reuses them and an edited wrapper never picks up a stale build.
# A cold build of kube takes tens of minutes of CPU; it is built with -p 2 (GOFLAGS may override).
set -euo pipefail
# shellcheck source=scripts/go-env.sh
. "$(dirname "$0")/../go-env.sh"

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${HELIOX_CACHE:-$HOME/.cache/heliox}/bin
links=$root/.tools/bin
mkdir -p "$links" "$cache"
# One build at a time (two test sessions, or a session and `make cluster-tools`, may start
# together): the second waits, then finds the binaries cached.
if command -v flock >/dev/null; then
  exec 9>"$cache/.control-plane-build.lock"
  flock 9
fi

log() { echo "control-plane/build: $*" >&2; }

# version of a module required by a wrapper module, read from its go.mod
module_version() { (cd "$here/$1" && go list -m -f '{{.Version}}' "$2"); }

# short hash of a wrapper module's files: part of the cache key
wrapper_hash() { (cd "$here/$1" && cat go.mod go.sum main.go | sha256sum | cut -c1-10); }

# build_wrapper <dir> <binary name> <version> <ldflags> <link names...>
build_wrapper() {
  local dir=$1 name=$2 version=$3 ldflags=$4
  shift 4
  local out=$cache/$name-$version-$(wrapper_hash "$dir")
  if [[ ! -x $out/$name ]]; then
    log "building $name $version from scripts/control-plane/$dir (cached in $out; a cold build takes a while)"
    local start=$SECONDS
    rm -rf "$out.partial" && mkdir -p "$out.partial"
    (cd "$here/$dir" && GOFLAGS="${GOFLAGS:--p=2} -mod=readonly" CGO_ENABLED=0 \
      go build -trimpath -ldflags "-s -w $ldflags" -o "$out.partial/$name" .)
    local n
    for n in "$@"; do [[ $n == "$name" ]] || ln -sfn "$name" "$out.partial/$n"; done
    rm -rf "$out" && mv "$out.partial" "$out"
    log "built $name $version in $((SECONDS - start))s"
  fi
  local n
  for n in "$@"; do ln -sfn "$out/$n" "$links/$n"; done
}

build_kube() {
  local v major minor flags="" pkg
  v=$(module_version kube k8s.io/kubernetes)
  major=${v#v}; major=${major%%.*}
  minor=${v#v"$major".}; minor=${minor%%.*}
  # What hack/lib/version.sh sets, so `--version` prints the pinned release (kwokctl and our own
  # checks read it).
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  build_wrapper kube kube "$v" "$flags" kube kube-apiserver kube-controller-manager kube-scheduler kubectl \
    kubelet kubeadm kube-proxy
}

build_etcd() {
  local v
  v=$(module_version etcd go.etcd.io/etcd/server/v3)
  build_wrapper etcd etcd "$v" "" etcd
}

# kwok's controller plus its stock stages, taken from the same pinned release so they always match:
# nodes become Ready and keep a lease; pods become Running/Ready (with IPs), Job pods Succeeded,
# deleted pods go away; claims of the kwok-volume StorageClass are provisioned and bound (the
# StorageClass itself is in manifests/). Our own stages (failure on demand) are in stages/.
KWOK_STAGES=(
  node/fast/node-initialize.yaml
  node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml
  volume/fast/pvc-provision.yaml volume/fast/pv-bind.yaml volume/fast/pvc-delete.yaml
  volume/fast/pv-delete.yaml
)
build_kwok() {
  "$root/scripts/tools.sh" kwok
  local v src out f
  v=$("$root/scripts/tools.sh" --version kwok)
  out=$cache/kwok-stages-$v
  if [[ ! -d $out ]]; then
    src=$(cd "$here" && go mod download -json "sigs.k8s.io/kwok@$v" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $src/kustomize/stage ]] || { log "kwok $v module source not found"; exit 1; }
    rm -rf "$out.partial" && mkdir -p "$out.partial"
    for f in "${KWOK_STAGES[@]}"; do cp "$src/kustomize/stage/$f" "$out.partial/"; done
    rm -rf "$out" && mv "$out.partial" "$out"
  fi
  ln -sfn "$out" "$root/.tools/kwok-stages"
}

if [[ $# -eq 0 ]]; then set -- etcd kwok kube; fi
for c in "$@"; do
  case $c in
    kube | etcd | kwok) "build_$c" ;;
    *) log "unknown component '$c' (kube, etcd, kwok)"; exit 2 ;;
  esac
done
