"""scripts/dev-kind.sh (`make dev-kind`), run with stand-ins for docker, kind, kubectl and helm
that record their command lines: the order of the steps and the image tag handed from the
build to `kind load` to the chart. (The real run needs Docker: the e2e tier and a developer's
machine.)
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from .helpers import K8S, ROOT

IMAGE_ID = "sha256:0123456789abcdef" + "0" * 48
STUB = """#!/bin/sh
echo "{name} $*" >> "$STUB_LOG"
case "{name} $1 $2" in
  "docker info "*) [ -z "$NO_ENGINE" ] || exit 1 ;;
  "docker image inspect") echo "{image_id}" ;;
  "kind get clusters") [ -z "$CLUSTER_EXISTS" ] || echo heliox ;;
esac
exit 0
"""


def run(
    tmp_path: Path, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("docker", "kind", "kubectl", "helm"):
        stub = bin_dir / name
        stub.write_text(STUB.format(name=name, image_id=IMAGE_ID))
        stub.chmod(0o755)
    log = tmp_path / "calls.log"
    log.write_text("")
    proc = subprocess.run(
        [str(ROOT / "scripts" / "dev-kind.sh"), *args],
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "DOCKER": str(bin_dir / "docker"),
            "KIND": str(bin_dir / "kind"),
            "KUBECTL": str(bin_dir / "kubectl"),
            "HELM": str(bin_dir / "helm"),
            "STUB_LOG": str(log),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc, log.read_text().splitlines()


def _index(calls: list[str], prefix: str) -> int:
    found = [i for i, c in enumerate(calls) if c.startswith(prefix)]
    assert len(found) == 1, (prefix, calls)
    return found[0]


def test_builds_loads_and_installs_in_order(tmp_path: Path) -> None:
    proc, calls = run(tmp_path, "--set", "replicaCount=1")
    assert proc.returncode == 0, proc.stderr
    cluster = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())["name"]
    tag = IMAGE_ID.removeprefix("sha256:")[:12]
    create = _index(calls, "kind create cluster --config k8s/kind/cluster.yaml")
    build = _index(calls, "docker build --target runtime")
    load = _index(calls, f"kind load docker-image heliox:{tag} --name {cluster}")
    namespace = _index(calls, f"kubectl --context kind-{cluster} apply -f k8s/namespace.yaml")
    install = _index(calls, "helm upgrade --install heliox charts/heliox")
    assert create < build < load < namespace < install
    helm = shlex.split(calls[install])
    assert helm[helm.index("--kube-context") + 1] == f"kind-{cluster}"
    assert helm[helm.index("--namespace") + 1] == "heliox"
    assert "--wait" in helm
    sets = [helm[i + 1] for i, a in enumerate(helm) if a == "--set"]
    assert sets == [
        "image.repository=heliox",
        f"image.tag={tag}",
        "image.pullPolicy=IfNotPresent",
        "replicaCount=1",
    ]


def test_reuses_an_existing_cluster(tmp_path: Path) -> None:
    proc, calls = run(tmp_path, CLUSTER_EXISTS="1")
    assert proc.returncode == 0, proc.stderr
    assert not [c for c in calls if c.startswith("kind create")]
    assert [c for c in calls if c.startswith("helm upgrade --install")]


@pytest.mark.parametrize("args", [(), ("down",)])
def test_says_what_it_needs_without_docker(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc, calls = run(tmp_path, *args, NO_ENGINE="1")
    assert proc.returncode == 2
    assert "needs Docker" in proc.stderr
    assert [c.split()[0] for c in calls] == ["docker"]


def test_down_deletes_the_cluster(tmp_path: Path) -> None:
    proc, calls = run(tmp_path, "down")
    assert proc.returncode == 0, proc.stderr
    assert calls[-1] == "kind delete cluster --name heliox"
