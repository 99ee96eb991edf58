#!/usr/bin/env bash
# The development loop without Skaffold (`make dev-kind`): the kind cluster of
# k8s/kind/cluster.yaml (created when missing), the image built and loaded into it (no
# registry), the restricted namespace, and the chart installed or upgraded with --wait.
#
#   scripts/dev-kind.sh [HELM ARGS...]   e.g. scripts/dev-kind.sh --set replicaCount=1
#   scripts/dev-kind.sh down             delete the cluster
#
# Needs Docker. kind and helm are the pinned ones (scripts/tools.sh) unless KIND, HELM, KUBECTL
# or DOCKER name other programs. The image tag is the built image's ID, so an unchanged build
# is an unchanged release, and imagePullPolicy IfNotPresent always finds the loaded image.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
config=k8s/kind/cluster.yaml
cluster=$(sed -n 's/^name: *//p' "$config")
context=kind-$cluster
namespace=heliox release=heliox

if [[ -z ${KIND:-} || -z ${HELM:-} ]]; then
  scripts/tools.sh kind helm
fi
KIND=${KIND:-$root/.tools/bin/kind}
HELM=${HELM:-$root/.tools/bin/helm}
DOCKER=${DOCKER:-docker}
KUBECTL=${KUBECTL:-$(command -v kubectl || echo "$root/.tools/bin/kubectl")}

say() { echo "dev-kind: $*" >&2; }

if ! command -v "$DOCKER" >/dev/null || ! "$DOCKER" info >/dev/null 2>&1; then
  say "needs Docker (the docker CLI and a running engine) to build and run the image"
  exit 2
fi

if [[ ${1:-} == down ]]; then
  "$KIND" delete cluster --name "$cluster"
  exit
fi

clusters=$("$KIND" get clusters 2>/dev/null || true)
if ! grep -qx "$cluster" <<<"$clusters"; then
  say "creating the kind cluster '$cluster' from $config"
  "$KIND" create cluster --config "$config"
fi

say "building the image (target runtime)"
DOCKER_BUILDKIT=1 "$DOCKER" build --target runtime --tag heliox:build .
id=$("$DOCKER" image inspect --format '{{.Id}}' heliox:build)
tag=${id#sha256:}
tag=${tag:0:12}
"$DOCKER" tag heliox:build "heliox:$tag"

say "loading heliox:$tag into the cluster"
"$KIND" load docker-image "heliox:$tag" --name "$cluster"

"$KUBECTL" --context "$context" apply -f k8s/namespace.yaml
say "installing the chart (helm upgrade --install --wait)"
"$HELM" upgrade --install "$release" charts/heliox --kube-context "$context" \
  --namespace "$namespace" --wait --timeout 10m \
  --set image.repository=heliox --set image.tag="$tag" --set image.pullPolicy=IfNotPresent "$@"

say "up. The API: kubectl --context $context -n $namespace port-forward svc/$release 8000:80"
