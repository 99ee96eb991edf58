#!/usr/bin/env bash
# Builds the images the kind tier needs (`make images`), offline: no image registry answers on our
# machines, so every image is made here from Debian's packages, PyPI and Go modules.
#
#   scripts/images/build.sh [python] [stores] [node]      (no argument: all three)
#
#   python  a Python 3.11 base for the Dockerfile's PYTHON_IMAGE (Debian bookworm's python3)
#   stores  stand-ins for the official postgres:17-alpine and redis:7.4-alpine images
#           (scripts/images/STANDINS.md is the contract they honour)
#   node    a kind node image for the Kubernetes version the cluster tier builds, carrying every
#           image kubeadm and the node start (control plane, etcd, CoreDNS, pause, the pod
#           network with NetworkPolicy enforcement, a storage provisioner)
#
# Prints one NAME=IMAGE line per image on stdout (the tests read them) and a progress line per
# step on stderr. Each image is keyed by the content of what it is built from: a built image is
# saved to ${HELIOX_CACHE:-~/.cache/heliox}/images/ and loaded from there on a machine whose Docker
# lacks it (a fresh CI machine), so only a changed input rebuilds. Needs Docker (a running
# engine: scripts/docker-engine.sh), Go, gcc, debootstrap and zstd (scripts/install-system-deps.sh).
set -euo pipefail
# shellcheck source=scripts/go-env.sh
. "$(dirname "$0")/../go-env.sh"

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${HELIOX_CACHE:-$HOME/.cache/heliox}
archives=$cache/images
mkdir -p "$archives"
# The Docker 28 client wants buildx for BuildKit and there is none: the classic builder.
export DOCKER_BUILDKIT=0
# Bumped by hand to rebuild every base image (e.g. to take Debian's updates).
BASE_EPOCH=1
KUBE_VERSION=$(cd "$root/scripts/control-plane/kube" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
LABEL=io.heliox.build-key

step() { echo "images: $*" >&2; }
# Build containers still running when the script ends (a failed step) are removed.
build_boxes=()
remove_boxes() { if ((${#build_boxes[@]})); then docker rm -f "${build_boxes[@]}" >/dev/null 2>&1 || true; fi; }
trap remove_boxes EXIT
die() { echo "images: $*" >&2; exit 1; }

# A short hash of files (paths and contents, in order) and strings: an image's cache key.
key_of() {
  local arg
  for arg in "$@"; do
    if [[ -d $arg ]]; then
      (cd "$arg" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    elif [[ -f $arg ]]; then
      sha256sum <"$arg"
    else
      echo "$arg"
    fi
  done | sha256sum | cut -c1-12
}

# ensure REF KEY BUILDER [ARGS...]: REF in Docker with label KEY, from Docker, else from its
# archive, else built by BUILDER (called as BUILDER REF KEY ARGS...) and archived.
ensure() {
  local ref=$1 key=$2 builder=$3
  shift 3
  local archive=$archives/$(tr '/:@' '___' <<<"$ref")-$key.tar.zst
  if [[ $(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$ref" 2>/dev/null) == "$key" ]]; then
    return 0
  fi
  if [[ -f $archive ]]; then
    step "loading $ref from the cache"
    zstd -dcq "$archive" | docker load -q >/dev/null
    return 0
  fi
  local start=$SECONDS
  step "building $ref"
  "$builder" "$ref" "$key" "$@"
  [[ $(docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$ref") == "$key" ]] ||
    die "$ref was built without its $LABEL label"
  rm -f "$archives/$(tr '/:@' '___' <<<"$ref")-"*.tar.zst
  docker save "$ref" | zstd -q -T0 -3 -o "$archive.partial"
  mv "$archive.partial" "$archive"
  step "built $ref in $((SECONDS - start))s"
}

# The Debian mirror this machine's apt uses (the only place packages come from).
debian_mirror() {
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    /etc/apt/sources.list.d/*.sources | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# --- Debian bases: debootstrap --variant=minbase, imported -----------------------------------
build_debian() {
  local ref=$1 key=$2 suite=$3 rootfs
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/heliox-debootstrap-XXXXXX")
  step "debootstrap $suite from $(debian_mirror) (a few minutes)"
  debootstrap --variant=minbase "$suite" "$rootfs" "$(debian_mirror)" >"$rootfs.log" 2>&1 ||
    { tail -20 "$rootfs.log" >&2; die "debootstrap $suite failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs.log"
  tar -C "$rootfs" --numeric-owner -c . |
    docker import --change "LABEL $LABEL=$key" --change 'CMD ["/bin/bash"]' - "$ref" >/dev/null
  rm -rf "$rootfs"
}

debian() { # debian SUITE -> prints the ref
  local suite=$1 key ref
  key=$(key_of "debootstrap minbase $suite $BASE_EPOCH")
  ref=heliox.local/debian:$suite
  ensure "$ref" "$key" build_debian "$suite"
  echo "$ref"
}

# docker build of CONTEXT with the key as a label; extra arguments go to docker build.
build_context() {
  local ref=$1 key=$2 context=$3 out
  shift 3
  if ! out=$(docker build -q --label "$LABEL=$key" -t "$ref" "$@" "$context" 2>&1); then
    echo "$out" | tail -40 >&2
    die "docker build of $ref failed"
  fi
}

# --- python: the Dockerfile's PYTHON_IMAGE ---------------------------------------------------
build_python() {
  local ref=$1 key=$2 base=$3 ctx
  ctx=$(mktemp -d)
  cp "$here/python/"* "$ctx/"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/host-ca-certificates.crt"
  build_context "$ref" "$key" "$ctx" --build-arg "BASE=$base"
  rm -rf "$ctx"
}

image_python() {
  local base key
  base=$(debian bookworm)
  key=$(key_of "$here/python" /etc/ssl/certs/ca-certificates.crt "$(image_key "$base")")
  ensure heliox.local/python:3.11-bookworm "$key" build_python "$base"
  echo "PYTHON_IMAGE=heliox.local/python:3.11-bookworm"
}

image_key() { docker image inspect -f "{{index .Config.Labels \"$LABEL\"}}" "$1"; }

# --- stores: PostgreSQL and Redis stand-ins ---------------------------------------------------
build_store() {
  local ref=$1 key=$2 dir=$3 base=$4
  build_context "$ref" "$key" "$here/$dir" --build-arg "BASE=$base"
}

image_stores() {
  local trixie bookworm
  trixie=$(debian trixie)
  bookworm=$(debian bookworm)
  ensure heliox.local/postgres:17-trixie "$(key_of "$here/postgres" "$(image_key "$trixie")")" \
    build_store postgres "$trixie"
  ensure heliox.local/redis:7.0-bookworm "$(key_of "$here/redis" "$(image_key "$bookworm")")" \
    build_store redis "$bookworm"
  echo "POSTGRES_IMAGE=heliox.local/postgres:17-trixie"
  echo "REDIS_IMAGE=heliox.local/redis:7.0-bookworm"
}

# --- node: the kind node image and the images inside it --------------------------------------
# An image of a directory tree of programs: FROM BASE, the tree at /, an entrypoint.
build_tree_image() {
  local ref=$1 key=$2 base=$3 tree=$4 entrypoint=$5 ctx
  ctx=$(mktemp -d)
  cp -a "$tree" "$ctx/tree"
  rm -f "$ctx/tree/.sources"
  {
    echo "FROM $base"
    echo "COPY tree/ /"
    echo "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [[ -n $entrypoint ]] && echo "ENTRYPOINT $entrypoint"
  } >"$ctx/Dockerfile"
  build_context "$ref" "$key" "$ctx"
  rm -rf "$ctx"
}

# A base with extra Debian packages (kube-proxy needs iptables, nftables and conntrack).
build_packages_image() {
  local ref=$1 key=$2 base=$3 ctx
  shift 3
  ctx=$(mktemp -d)
  printf 'FROM %s\nRUN apt-get update && apt-get install --yes --no-install-recommends %s && rm -rf /var/lib/apt/lists/*\n' \
    "$base" "$*" >"$ctx/Dockerfile"
  build_context "$ref" "$key" "$ctx"
  rm -rf "$ctx"
}

# tree_image REF BASE ENTRYPOINT TREE: ensure an image of TREE; the key is TREE's cache dirs' names
# (they carry version and content hash) plus BASE's key.
tree_image() {
  local ref=$1 base=$2 entrypoint=$3 tree=$4 key base_key=scratch
  [[ $base == scratch ]] || base_key=$(image_key "$base")
  key=$(key_of "$base_key" "$entrypoint" "$(cat "$tree/.sources")")
  ensure "$ref" "$key" build_tree_image "$base" "$tree" "$entrypoint"
}

# A tree holding PROGRAM (a path) as DEST, with links NAME -> DEST for the multi-call binary.
make_tree() {
  local tree=$1 program=$2 dest=$3
  shift 3
  mkdir -p "$tree$(dirname "$dest")"
  cp "$program" "$tree$dest"
  local name
  for name in "$@"; do ln -sf "$(basename "$dest")" "$tree$(dirname "$dest")/$name"; done
  echo "$(dirname "$program")" >>"$tree/.sources"
}

image_node() {
  step "building the node's programs (cached after the first time)"
  "$root/scripts/control-plane/build.sh" kube etcd >&2
  "$here/components.sh" >&2
  local bin=$cache/bin kube etcd work bookworm proxy_base ref images=()
  kube=$(readlink -f "$root/.tools/bin/kube")
  etcd=$(readlink -f "$root/.tools/bin/etcd")
  dir() { "$here/components.sh" --dir "$1"; }
  work=$(mktemp -d "${TMPDIR:-/tmp}/heliox-node-XXXXXX")
  bookworm=$(debian bookworm)

  # The control plane: kubeadm's static pods run `kube-apiserver ...` and so on from PATH.
  make_tree "$work/kube" "$kube" /usr/local/bin/kube kube-apiserver kube-controller-manager \
    kube-scheduler kube-proxy
  local component
  for component in kube-apiserver kube-controller-manager kube-scheduler; do
    ref=registry.k8s.io/$component:$KUBE_VERSION
    tree_image "$ref" scratch "[\"/usr/local/bin/$component\"]" "$work/kube"
    images+=("$ref")
  done
  proxy_base=heliox.local/kube-proxy-base:bookworm
  ensure "$proxy_base" "$(key_of "$(image_key "$bookworm")" iptables nftables conntrack)" \
    build_packages_image "$bookworm" iptables nftables conntrack
  ref=registry.k8s.io/kube-proxy:$KUBE_VERSION
  tree_image "$ref" "$proxy_base" '["/usr/local/bin/kube-proxy"]' "$work/kube"
  images+=("$ref")

  make_tree "$work/etcd" "$etcd" /usr/local/bin/etcd
  ref=registry.k8s.io/etcd:$("$etcd" --version | sed -n 's/^etcd Version: //p')-0
  tree_image "$ref" scratch '["/usr/local/bin/etcd"]' "$work/etcd"
  images+=("$ref")

  make_tree "$work/coredns" "$(dir coredns)/coredns" /coredns
  ref=registry.k8s.io/coredns/coredns:$(basename "$(dir coredns)" | sed 's/^coredns-//')
  tree_image "$ref" scratch '["/coredns"]' "$work/coredns"
  images+=("$ref")

  make_tree "$work/pause" "$(dir pause)/pause" /pause
  ref=registry.k8s.io/pause:3.10.2
  tree_image "$ref" scratch '["/pause"]' "$work/pause"
  images+=("$ref")

  # Ours, named by us (the node's manifests name them).
  local knp lpp helper
  knp=heliox.local/kube-network-policies:$(basename "$(dir kube-network-policies)" | sed 's/^kube-network-policies-//')
  make_tree "$work/knp" "$(dir kube-network-policies)/kube-network-policies" /usr/local/bin/kube-network-policies
  tree_image "$knp" "$bookworm" '["/usr/local/bin/kube-network-policies"]' "$work/knp"
  lpp=heliox.local/local-path-provisioner:$(basename "$(dir local-path-provisioner)" | sed 's/^local-path-provisioner-//')
  make_tree "$work/lpp" "$(dir local-path-provisioner)/local-path-provisioner" /usr/local/bin/local-path-provisioner
  tree_image "$lpp" scratch '["/usr/local/bin/local-path-provisioner"]' "$work/lpp"
  # The provisioner's helper pods run `sh -c 'mkdir ...'`: the Debian base is enough.
  helper=heliox.local/local-path-helper:bookworm
  docker tag "$bookworm" "$helper"
  images+=("$knp" "$lpp" "$helper")

  # The node's own files.
  local rootfs=$work/rootfs
  mkdir -p "$rootfs/usr/bin" "$rootfs/usr/local/bin" "$rootfs/usr/local/sbin" "$rootfs/opt/cni/bin" "$rootfs/kind/manifests"
  cp -a "$here/kind-node/files/." "$rootfs/"
  cp "$kube" "$rootfs/usr/bin/kube"
  for component in kubelet kubeadm kubectl; do ln -sf kube "$rootfs/usr/bin/$component"; done
  cp "$(dir containerd)"/{containerd,containerd-shim-runc-v2,ctr} "$rootfs/usr/local/bin/"
  cp "$(dir crictl)/crictl" "$rootfs/usr/local/bin/"
  cp "$(dir runc)/runc" "$rootfs/usr/local/sbin/"
  cp "$(dir cni-plugins)"/{bridge,host-local,portmap,loopback} "$rootfs/opt/cni/bin/"
  echo "$KUBE_VERSION" >"$rootfs/kind/version"
  local manifest
  for manifest in default-cni.yaml default-storage.yaml; do
    sed -e "s|@NETWORK_POLICIES_IMAGE@|$knp|g" -e "s|@LOCAL_PATH_PROVISIONER_IMAGE@|$lpp|g" \
      -e "s|@LOCAL_PATH_HELPER_IMAGE@|$helper|g" "$here/kind-node/manifests/$manifest" \
      >"$rootfs/kind/manifests/$manifest"
  done
  cp "$here/kind-node/Dockerfile" "$work/Dockerfile"

  local image_keys="" i
  for i in "${images[@]}"; do image_keys+="$i=$(image_key "$i") "; done
  local node=heliox.local/kind-node:$KUBE_VERSION key
  key=$(key_of "$here/kind-node" "$image_keys" "$(image_key "$bookworm")" "$kube" \
    "$(dir containerd)" "$(dir runc)" "$(dir crictl)" "$(dir cni-plugins)")
  ensure "$node" "$key" build_node "$work" "$bookworm" "${images[@]}"
  rm -rf "$work"
  echo "KIND_NODE_IMAGE=$node"
}

# The node image: the Dockerfile's image, then (as kind's `build node-image` does) every image
# imported into the node's containerd, unpacked at first use, pinned so the kubelet's image
# garbage collection keeps it; committed with the node's entrypoint.
build_node() {
  local ref=$1 key=$2 work=$3 base=$4
  shift 4
  build_context "$ref-rootfs" "$key" "$work" --build-arg "BASE=$base"
  local box
  box=$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$ref-rootfs" infinity)
  build_boxes+=("$box")
  docker exec "$box" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &
    for i in $(seq 50); do ctr version >/dev/null 2>&1 && exit 0; sleep 0.2; done; cat /tmp/containerd.log; exit 1'
  local image
  for image in "$@"; do
    step "  importing $image into the node"
    docker save "$image" | docker exec -i "$box" ctr --namespace=k8s.io images import \
      --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
  done
  # Every image kubeadm will ask for must be there under the name it asks for.
  local missing
  missing=$(docker exec "$box" bash -c 'have=$(ctr --namespace=k8s.io images list -q)
    for i in $(kubeadm config images list --kubernetes-version "$(cat /kind/version)"); do
      grep -qxF "$i" <<<"$have" || echo "$i"; done')
  [[ -z $missing ]] || die "the node image lacks images kubeadm asks for: $missing"
  # sleep, the box's PID 1, reaps nothing: a stopped containerd stays a zombie (state Z)
  docker exec "$box" pkill containerd
  docker exec "$box" bash -c 'for i in $(seq 50); do pgrep -x -r D,R,S containerd >/dev/null || exit 0; sleep 0.2; done; exit 1'
  docker exec "$box" rm -rf /tmp/containerd.log /run/containerd
  docker commit \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    --change "LABEL $LABEL=$key" "$box" "$ref" >/dev/null
  docker rm -f "$box" >/dev/null
  docker rmi -f "$ref-rootfs" >/dev/null
}

if [[ $# -eq 0 ]]; then set -- python stores node; fi
for what in "$@"; do
  case $what in
    python | stores | node) "image_$what" ;;
    *) die "unknown image set '$what' (python, stores, node)" ;;
  esac
done
