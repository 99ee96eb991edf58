"""The cluster tier's handle on a Kubernetes cluster, and the session's throwaway control plane.

`Cluster` wraps a kubeconfig: run kubectl (our pinned build) or any other tool (helm) against it,
read objects as JSON, apply manifests, wait for conditions, print progress lines. It does not
care where the cluster comes from, so the kind tier can build one from kind's kubeconfig.

`start_control_plane()` builds the pinned binaries if needed (scripts/control-plane/build.sh) and
starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from processes
(scripts/control-plane/cluster.py up); `Cluster.stop()` tears it down. The pytest fixtures in
conftest.py use both; see docs/ARCHITECTURE.md, "Cluster tier".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "control-plane"
TOOLS_BIN = ROOT / ".tools" / "bin"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)

T = TypeVar("T")


class NotReady(Exception):
    """Raised by a wait_for predicate to say "not yet", with the reason shown on timeout."""


def _default_progress(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


@dataclass
class Cluster:
    kubeconfig: Path
    kubectl_bin: str = str(TOOLS_BIN / "kubectl")
    state_dir: Path | None = None  # set when this session started the control plane
    info: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] = _default_progress

    # --- running commands --------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The environment for tools run against this cluster (helm, kubectl): KUBECONFIG set,
        the pinned tools first on PATH."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{TOOLS_BIN}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(
        self,
        argv: Iterable[str],
        *,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command against the cluster; on failure (check=True) raise with its output."""
        argv = [str(a) for a in argv]
        p = subprocess.run(
            argv,
            input=input,
            text=True,
            capture_output=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        if check and p.returncode != 0:
            raise CommandFailed(argv, p)
        return p

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return self.run([self.kubectl_bin, *args], input=input, check=check, timeout=timeout)

    def get(
        self,
        kind: str,
        name: str | None = None,
        namespace: str | None = None,
        selector: str | None = None,
    ) -> dict[str, Any]:
        """`kubectl get -o json`: one object, or a List with `items`."""
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        if selector:
            args += ["-l", selector]
        result: dict[str, Any] = json.loads(self.kubectl(*args).stdout)
        return result

    def items(
        self, kind: str, namespace: str | None = None, selector: str | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(kind, None, namespace, selector)["items"]
        return items

    def apply(
        self,
        manifest: str | dict[str, Any] | list[dict[str, Any]],
        namespace: str | None = None,
        extra: Iterable[str] = (),
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """`kubectl apply -f -` of YAML text, an object, or a list of objects."""
        if isinstance(manifest, list):
            manifest = {"apiVersion": "v1", "kind": "List", "items": manifest}
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        args = ["apply", "-f", "-", *extra]
        if namespace:
            args += ["-n", namespace]
        return self.kubectl(*args, input=text, check=check)

    # --- namespaces --------------------------------------------------------------------------
    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> str:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}},
            }
        )
        return name

    def delete_namespace(self, name: str, wait: bool = False) -> None:
        self.kubectl(
            "delete",
            "namespace",
            name,
            "--ignore-not-found",
            f"--wait={str(wait).lower()}",
            check=False,
            timeout=600 if wait else 120,
        )

    # --- waiting -----------------------------------------------------------------------------
    def wait_for(
        self, what: str, predicate: Callable[[], T], timeout: float = 60, interval: float = 0.5
    ) -> T:
        """Call predicate until it returns a truthy value (returned) or raises nothing but
        NotReady/CommandFailed; fail after timeout naming what was awaited and the last reason."""
        deadline = time.monotonic() + timeout
        last = "never checked"
        while True:
            try:
                value = predicate()
                if value:
                    return value
                last = f"got {value!r}"
            except (NotReady, CommandFailed) as e:
                last = str(e)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}: {last}")
            time.sleep(interval)

    def condition(self, obj: dict[str, Any], type_: str) -> str | None:
        for c in obj.get("status", {}).get("conditions") or []:
            if c.get("type") == type_:
                return str(c.get("status"))
        return None

    # --- the session's own control plane -------------------------------------------------------
    def logs(self, component: str, lines: int = 40) -> str:
        if self.state_dir is None:
            return ""
        f = self.state_dir / "logs" / f"{component}.log"
        return "\n".join(f.read_text(errors="replace").splitlines()[-lines:]) if f.exists() else ""

    def stop(self) -> None:
        if self.state_dir is not None and self.state_dir.exists():
            subprocess.run(
                [
                    sys.executable,
                    str(SCRIPTS / "cluster.py"),
                    "down",
                    "--state-dir",
                    str(self.state_dir),
                ],
                check=False,
                timeout=120,
            )


class CommandFailed(Exception):
    def __init__(self, argv: list[str], p: subprocess.CompletedProcess[str]) -> None:
        self.argv, self.returncode, self.stdout, self.stderr = (
            argv,
            p.returncode,
            p.stdout,
            p.stderr,
        )
        out = p.stdout.strip()[-2000:]
        super().__init__(f"{' '.join(argv)} exited {p.returncode}\n{p.stderr.strip()}\n{out}")


def binaries_present() -> bool:
    return (
        all(os.access(TOOLS_BIN / b, os.X_OK) for b in BINARIES)
        and (ROOT / ".tools" / "kwok-stages").is_dir()
    )


def build_binaries(progress: Callable[[str], None] = _default_progress) -> None:
    """Build (or just re-link, when cached) the pinned binaries. Needs Go; a cold build of the
    Kubernetes components takes a long time on two cores (see docs/ARCHITECTURE.md)."""
    progress("build.sh: checking the pinned control-plane binaries (a cold build takes long)")
    p = subprocess.run([str(SCRIPTS / "build.sh")], text=True, capture_output=True, check=False)
    for line in p.stderr.splitlines():
        progress(line)
    if p.returncode != 0:
        raise RuntimeError(
            f"scripts/control-plane/build.sh failed ({p.returncode}):\n{p.stderr[-4000:]}"
        )


def start_control_plane(
    progress: Callable[[str], None] = _default_progress, owner_pid: int | None = None
) -> Cluster:
    """Start a control plane in a fresh temporary state directory; the caller stops it."""
    state = Path(tempfile.mkdtemp(prefix="heliox-cluster-"))
    argv = [sys.executable, str(SCRIPTS / "cluster.py"), "up", "--state-dir", str(state)]
    if owner_pid:
        argv += ["--owner-pid", str(owner_pid)]
    p = subprocess.Popen(argv, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.stdout is not None
    output = []
    for line in p.stdout:
        output.append(line)
        progress(line.rstrip().removeprefix("cluster: "))
    if p.wait() != 0:
        subprocess.run(
            [sys.executable, str(SCRIPTS / "cluster.py"), "down", "--state-dir", str(state)],
            check=False,
            capture_output=True,
        )
        raise RuntimeError("the control plane did not start:\n" + "".join(output[-60:]))
    info = json.loads((state / "cluster.json").read_text())
    return Cluster(
        kubeconfig=Path(info["kubeconfig"]),
        kubectl_bin=info["kubectl"],
        state_dir=state,
        info=info,
        progress=progress,
    )


def reuse_control_plane(
    state: Path, progress: Callable[[str], None] = _default_progress
) -> Cluster:
    """A cluster started by hand (`make cluster-up`), left running after the session."""
    info = json.loads((state / "cluster.json").read_text())
    return Cluster(
        kubeconfig=Path(info["kubeconfig"]),
        kubectl_bin=info["kubectl"],
        state_dir=None,
        info=info,
        progress=progress,
    )


def go_available() -> bool:
    return shutil.which("go") is not None
