"""A throwaway kind cluster for the e2e tier, from k8s/kind/cluster.yaml, on any Docker host.

Users run k8s/kind/cluster.yaml as it is. The tier runs a copy that differs only where this
machine needs it, each difference applied only where it is needed:
- the node image: kind's pinned one where it can be pulled, else ours, built offline
  (scripts/images/build.sh node);
- the NodePort mapping's host port: a free one (a developer's own kind cluster may hold 30080);
- on cgroup v1 hosts, kubeadm's SystemVerification preflight skipped and the kubelet's
  `failCgroupV1: false`: Kubernetes 1.35+ refuses cgroup v1 otherwise (KEP-5573);
- where `docker run --privileged` fails (a bounding set without CAP_SYS_RESOURCE, as here), kind
  sees tests/cluster/kind/docker first on its PATH, which maps --privileged to the capabilities
  the host allows (the node image's entrypoint remounts the cgroups read-write).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from controlplane import ROOT, Cluster
from scenarios import traffic

from tests import dockerenv

KIND_CONFIG = ROOT / "k8s" / "kind" / "cluster.yaml"
DOCKER_WRAPPER_DIR = Path(__file__).resolve().parent / "kind"
NODE_PORT = 30080  # the Service's NodePort that k8s/kind/cluster.yaml maps to the host
IMAGE = ("heliox", "e2e")
NEXT_TAG = "e2e-next"  # the same image plus one migration (scenarios.traffic.MIGRATION)
BROKEN_TAG = "e2e-broken"  # e2e-next under another name, for the upgrade whose migration fails

CGROUP_V1_PATCHES = [
    "apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\n"
    "nodeRegistration:\n  ignorePreflightErrors: [SystemVerification]\n",
    "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n"
    "nodeRegistration:\n  ignorePreflightErrors: [SystemVerification]\n",
    "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfailCgroupV1: false\n",
]


def cgroup_v1() -> bool:
    return not Path("/sys/fs/cgroup/cgroup.controllers").exists()


def pinned_node_image() -> str:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    return str(config["nodes"][0]["image"])


def privileged_refused(image: str) -> bool:
    """Whether this Docker host refuses `docker run --privileged` (it then needs the wrapper)."""
    proc = subprocess.run(
        ["docker", "run", "--rm", "--privileged", "--entrypoint", "/bin/true", image],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode == 0:
        return False
    if "operation not permitted" in proc.stderr:
        return True
    raise RuntimeError(f"docker run --privileged {image} failed otherwise:\n{proc.stderr}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cluster_config(state: Path, node_image: str) -> tuple[Path, int]:
    """The tier's copy of k8s/kind/cluster.yaml (see the module docstring) and the host port
    that reaches NodePort 30080."""
    config: dict[str, Any] = yaml.safe_load(KIND_CONFIG.read_text())
    host_port = free_port()
    mapped = 0
    for node in config.get("nodes") or []:
        node["image"] = node_image
        for m in node.get("extraPortMappings") or []:
            if m.get("containerPort") == NODE_PORT:
                m["hostPort"] = host_port
                mapped += 1
    assert mapped, f"{KIND_CONFIG.relative_to(ROOT)} maps no port to NodePort {NODE_PORT}"
    if cgroup_v1():
        config["kubeadmConfigPatches"] = list(config.get("kubeadmConfigPatches") or [])
        config["kubeadmConfigPatches"] += CGROUP_V1_PATCHES
    out = state / "kind.yaml"
    out.write_text(yaml.safe_dump(config))
    return out, host_port


@dataclass
class KindCluster:
    kind: str
    name: str
    state: Path
    node_image: str
    progress: Callable[[str], None]
    wrapped: bool = False
    host_port: int = 0

    @classmethod
    def reuse(cls, state: Path, kind: str, progress: Callable[[str], None]) -> KindCluster:
        """A cluster a previous run kept (HELIOX_E2E_KEEP=1), from its state directory."""
        saved = json.loads((state / "cluster.json").read_text())
        progress(f"reusing kind cluster {saved['name']} ({state})")
        return cls(kind=kind, state=state, progress=progress, **saved)

    def save(self) -> None:
        keep = {k: getattr(self, k) for k in ("name", "node_image", "wrapped", "host_port")}
        (self.state / "cluster.json").write_text(json.dumps(keep))

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.wrapped:
            env["PATH"] = f"{DOCKER_WRAPPER_DIR}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        argv = [self.kind, *args]
        self.progress(" ".join(argv))
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=self.env, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        return proc

    def create(self) -> None:
        self.wrapped = privileged_refused(self.node_image)
        if self.wrapped:
            self.progress(
                "docker run --privileged is refused here: kind runs through "
                "tests/cluster/kind/docker (--privileged mapped to the host's capabilities)"
            )
        config, self.host_port = cluster_config(self.state, self.node_image)
        if cgroup_v1():
            self.progress(
                "cgroup v1 host: kubeadm skips SystemVerification, kubelet failCgroupV1=false"
            )
        self.run(
            "create", "cluster", "--name", self.name, "--config", str(config),
            "--kubeconfig", str(self.kubeconfig), "--wait", "300s", "--retain",
        )  # fmt: skip
        self.save()

    def load(self, *images: str) -> None:
        self.run("load", "docker-image", *images, "--name", self.name)

    def logs(self, into: Path) -> None:
        subprocess.run(
            [self.kind, "export", "logs", str(into), "--name", self.name],
            capture_output=True, timeout=300, env=self.env, check=False,
        )  # fmt: skip

    def delete(self) -> None:
        self.run(
            "delete",
            "cluster",
            "--name",
            self.name,
            "--kubeconfig",
            str(self.kubeconfig),
            timeout=300,
        )


# --- the tier's cluster, with the images it runs ---------------------------------------------


def _run(argv: list[str], progress: Callable[[str], None], timeout: float = 1800) -> None:
    progress(" ".join(argv))
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stderr[-3000:]}")


def build_app_images(python_image: str, progress: Callable[[str], None]) -> list[str]:
    """The runtime image as `heliox:e2e` (on `python_image`: the official Python where it can be
    pulled, else the Debian-built one), and `heliox:e2e-next`: the same plus one Alembic revision
    on top of the repository's head (the upgrade's hook really migrates), also tagged
    `heliox:e2e-broken`."""
    repo, tag = IMAGE
    _run(
        ["docker", "build", "-q", "--build-arg", f"PYTHON_IMAGE={python_image}",
         "--target", "runtime", "-t", f"{repo}:{tag}", str(ROOT)],
        progress,
    )  # fmt: skip
    head = traffic.head_revision(ROOT / "migrations-job" / "versions")
    with tempfile.TemporaryDirectory(prefix="heliox-e2e-image-") as d:
        (Path(d) / "9000_e2e_marker.py").write_text(
            traffic.MIGRATION.format(revision="e2e_marker", down=head)
        )
        (Path(d) / "Dockerfile").write_text(
            f"FROM {repo}:{tag}\nCOPY 9000_e2e_marker.py /app/migrations-job/versions/\n"
        )
        _run(["docker", "build", "-q", "-t", f"{repo}:{NEXT_TAG}", d], progress)
    _run(["docker", "tag", f"{repo}:{NEXT_TAG}", f"{repo}:{BROKEN_TAG}"], progress)
    return [f"{repo}:{t}" for t in (tag, NEXT_TAG, BROKEN_TAG)]


def node_image(progress: Callable[[str], None]) -> str:
    """kind's pinned node image where it can be pulled, else ours, built offline."""
    pinned = pinned_node_image()
    if dockerenv.pulled([pinned], progress):
        return pinned
    return dockerenv.build_images(["node"], progress)["KIND_NODE_IMAGE"]


def store_values(images: dict[str, str]) -> dict[str, Any]:
    """The subcharts' image values for the PostgreSQL and Redis images in use."""
    values: dict[str, Any] = {}
    for chart, name in (("postgresql", "POSTGRES_IMAGE"), ("redis", "REDIS_IMAGE")):
        repo, tag = images[name].rsplit(":", 1)
        values[chart] = {"image": {"repository": repo, "tag": tag}}
    return values


@contextlib.contextmanager
def kind_test_cluster(
    kind: str, kubectl: str, cluster_progress: Callable[[str], None]
) -> Iterator[Cluster]:
    """The kind tier's cluster: Docker engine, images (official or built here), a new kind
    cluster (or the one HELIOX_E2E_REUSE names), the app images loaded into it; deleted at the
    end unless HELIOX_E2E_KEEP=1 (or reused)."""
    with dockerenv.engine(cluster_progress):
        stores = dockerenv.store_images(cluster_progress)
        python = dockerenv.python_image(cluster_progress)
        kept = os.environ.get("HELIOX_E2E_REUSE")
        if kept:
            kc = KindCluster.reuse(Path(kept), kind, cluster_progress)
        else:
            kc = KindCluster(
                kind=kind,
                name=f"heliox-e2e-{uuid.uuid4().hex[:6]}",
                state=Path(tempfile.mkdtemp(prefix="heliox-e2e-")),
                node_image=node_image(cluster_progress),
                progress=cluster_progress,
            )
        created = bool(kept)
        try:
            if not kept:
                kc.create()
                created = True
            app = build_app_images(python, cluster_progress)
            kc.load(*app, stores["POSTGRES_IMAGE"], stores["REDIS_IMAGE"])
            c = Cluster(kubeconfig=kc.kubeconfig, kubectl_bin=kubectl, progress=cluster_progress)
            c.info["url"] = f"http://127.0.0.1:{kc.host_port}"
            c.info["stores"] = stores
            c.info["kind"] = kc  # kc.load(): `kind load` with the docker wrapper where needed
            yield c
        finally:
            if created and (kept or os.environ.get("HELIOX_E2E_KEEP") == "1"):
                cluster_progress(
                    f"kept kind cluster {kc.name}: export KUBECONFIG={kc.kubeconfig}; "
                    f"run again on it with HELIOX_E2E_REUSE={kc.state}"
                )
            elif created:
                kc.delete()
                shutil.rmtree(kc.state, ignore_errors=True)
