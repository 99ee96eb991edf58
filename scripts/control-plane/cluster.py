#!/usr/bin/env python3
"""Start and stop a throwaway Kubernetes control plane made of processes, no containers.

    scripts/control-plane/cluster.py up   [--state-dir DIR] [--nodes N] [--apiserver-port P] ...
    scripts/control-plane/cluster.py down [--state-dir DIR]
    scripts/control-plane/cluster.py env  [--state-dir DIR]     (prints `export KUBECONFIG=...`)

`up` runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok controller
(which plays the kubelet of N fake Nodes: it moves pods through their lifecycle without running
containers), all bound to 127.0.0.1 on free ports, from the pinned binaries that build.sh links
into .tools/bin. It makes a throwaway CA, serving and client certificates and service-account keys
with openssl, writes an admin kubeconfig, waits until the cluster can take workloads (apiserver
/readyz, controllers healthy, nodes Ready, the default ServiceAccount exists), prints one progress
line per step and returns; the components keep running in the background. Every component logs
to <state-dir>/logs/<name>.log. `down` stops them (SIGTERM, then SIGKILL) and removes the state
directory. With --owner-pid, a small watcher process runs `down` when that process exits, so a
killed test run leaves nothing behind.

Only the Python standard library and the openssl command line are used, so the script runs
before any virtualenv exists (`make cluster-up`). The pytest fixture in tests/cluster/ drives it
through the same commands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_BIN_DIR = ROOT / ".tools" / "bin"
DEFAULT_STAGES_DIR = ROOT / ".tools" / "kwok-stages"  # kwok's own default stages (build.sh)
OUR_STAGES_DIR = HERE / "stages"  # our additions: failure on demand
MANIFESTS_DIR = HERE / "manifests"  # applied once the apiserver is up (StorageClass)
DEFAULT_STATE_DIR = Path(tempfile.gettempdir()) / "heliox-cluster"

# Stop order: the reverse of the start order.
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
BINARIES = [*COMPONENTS, "kubectl"]
SERVICE_CIDR = "10.96.0.0/16"  # ClusterIPs: allocated, never routed (there is no kube-proxy)
POD_CIDR = "10.244.0.1/16"  # pod IPs kwok hands out: written into status, never dialled
NODE_IP = "127.0.0.1"  # what the fake Nodes report as their address
NODE_ANNOTATION = "kwok.x-k8s.io/node"  # kwok manages the Nodes carrying it (value "fake")


class ClusterError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"cluster: {msg}", flush=True)


# --- helpers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """Our own fixed command lines (openssl, kubectl): never user input."""
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]  # noqa: S603


def wait_until(what: str, check, timeout: float, state: Path | None = None, proc: str = "") -> None:  # type: ignore[no-untyped-def]
    """Poll check() until it returns truthy; fail with the component's log tail on timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if state is not None and proc:
            pid = read_pid(state, proc)
            if pid is None or not alive(pid):
                raise ClusterError(
                    f"{proc} exited while waiting for {what}\n{log_tail(state, proc)}"
                )
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, subprocess.CalledProcessError, ValueError) as e:
            last = e
        time.sleep(0.25)
    tail = log_tail(state, proc) if state is not None and proc else ""
    raise ClusterError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})\n{tail}"
    )


def log_tail(state: Path, name: str, lines: int = 30) -> str:
    f = state / "logs" / f"{name}.log"
    if not f.exists():
        return ""
    text = f.read_text(errors="replace").splitlines()[-lines:]
    return f"--- last lines of {f} ---\n" + "\n".join(text)


def http_get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 2) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:  # noqa: S310 (loopback only)
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def insecure_ctx() -> ssl.SSLContext:
    """For the controllers' self-signed health endpoints on loopback."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- processes ------------------------------------------------------------------------------


def pid_file(state: Path, name: str) -> Path:
    return state / "pids" / name


def read_pid(state: Path, name: str) -> int | None:
    try:
        return int(pid_file(state, name).read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def ours(pid: int, state: Path) -> bool:
    """Guard against pid reuse: every process we start names the state directory."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(state) in cmdline


def start(state: Path, name: str, argv: list[str]) -> int:
    logf = open(state / "logs" / f"{name}.log", "ab")  # noqa: SIM115 (handed to the child)
    p = subprocess.Popen(  # noqa: S603 (our own component command lines)
        argv,
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own process group: survives us, killed as a group by `down`
        cwd=state,
        close_fds=True,
    )
    logf.close()
    pid_file(state, name).write_text(f"{p.pid}\n")
    return p.pid


def stop(state: Path, name: str, grace: float = 10.0) -> None:
    pid = read_pid(state, name)
    if pid is None or not alive(pid) or not ours(pid, state):
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)


# --- certificates ---------------------------------------------------------------------------


def openssl(*args: str | Path) -> None:
    run(["openssl", *map(str, args)])


def make_pki(pki: Path) -> None:
    """A throwaway CA, the apiserver's serving certificate, one client certificate per user, the
    front proxy's CA and client, and the service-account signing key pair. EC P-256 keys (quick
    to make), valid for two days."""
    pki.mkdir(parents=True, exist_ok=True)

    def key(name: str) -> Path:
        k = pki / f"{name}.key"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", k)
        return k

    def ca(name: str) -> None:
        ext = ("basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign")
        openssl("req", "-x509", "-new", "-key", key(name), "-sha256", "-days", "2",
                "-subj", f"/CN=heliox-test-{name}", "-out", pki / f"{name}.crt",
                "-addext", ext[0], "-addext", ext[1])  # fmt: skip

    def cert(name: str, subj: str, usage: str, sans: str = "", signer: str = "ca") -> None:
        csr, extf = pki / f"{name}.csr", pki / f"{name}.ext"
        openssl("req", "-new", "-key", key(name), "-subj", subj, "-out", csr)
        extf.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage={usage}\n" + (f"subjectAltName={sans}\n" if sans else "")
        )
        openssl("x509", "-req", "-in", csr, "-CA", pki / f"{signer}.crt",
                "-CAkey", pki / f"{signer}.key", "-CAcreateserial", "-days", "2", "-sha256",
                "-extfile", extf, "-out", pki / f"{name}.crt")  # fmt: skip
        csr.unlink()
        extf.unlink()

    ca("ca")
    # The aggregation layer's front proxy, set up as kubeadm does: the controllers and the
    # scheduler read its CA from the apiserver for their own authentication.
    ca("front-proxy-ca")
    cluster_names = "kubernetes,kubernetes.default,kubernetes.default.svc"
    sans = ",".join(
        ["IP:127.0.0.1", "IP:10.96.0.1", "DNS:localhost"]
        + [f"DNS:{n}" for n in [*cluster_names.split(","), "kubernetes.default.svc.cluster.local"]]
    )
    cert("apiserver", "/CN=kube-apiserver", "serverAuth", sans)
    # admin: cluster-admin through the system:masters group (kubectl, helm, the tests, and kwok,
    # which stands in for the kubelets and a volume provisioner)
    cert("admin", "/O=system:masters/CN=heliox-admin", "clientAuth")
    cert("controller-manager", "/CN=system:kube-controller-manager", "clientAuth")
    cert("scheduler", "/CN=system:kube-scheduler", "clientAuth")
    # the apiserver's client certificate towards kubelets (kwok serves none; kept for realism)
    cert("apiserver-kubelet-client", "/CN=kube-apiserver-kubelet-client", "clientAuth")
    cert("front-proxy-client", "/CN=front-proxy-client", "clientAuth", signer="front-proxy-ca")

    sa = pki / "sa.key"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", sa)
    openssl("pkey", "-in", sa, "-pubout", "-out", pki / "sa.pub")


def write_kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    # JSON is valid YAML: no YAML library needed.
    cluster = {"server": server, "certificate-authority": str(pki / "ca.crt")}
    creds = {"client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")}
    context = {"cluster": "heliox", "user": user, "namespace": "default"}
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "heliox", "cluster": cluster}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "heliox", "context": context}],
        "current-context": "heliox",
        "preferences": {},
    }
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)


# --- up -------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Everything `up` decides before starting anything: paths, binaries, ports."""

    state: Path
    bins: dict[str, str]
    stage_files: list[Path]
    ports: dict[str, int]
    nodes: int

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['etcd']}"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        argv = [self.bins["kubectl"], f"--kubeconfig={self.kubeconfig}", *args]
        return run(argv, input=stdin).stdout


def make_plan(args: argparse.Namespace) -> Plan:
    bin_dir: Path = args.bin_dir.resolve()
    bins = {}
    for name in BINARIES:
        p = bin_dir / name
        if not os.access(p, os.X_OK):
            raise ClusterError(
                f"{p} is missing: run `make cluster-tools` (scripts/control-plane/build.sh)"
            )
        bins[name] = str(p)
    stages_dir: Path = args.stages_dir.resolve()
    stage_files = sorted(stages_dir.glob("*.yaml")) if stages_dir.is_dir() else []
    if not stage_files:
        raise ClusterError(
            f"no kwok stages in {stages_dir}: run scripts/control-plane/build.sh kwok"
        )
    ports = {
        "etcd": args.etcd_port or free_port(),
        "etcd-peer": free_port(),
        "kube-apiserver": args.apiserver_port or free_port(),
        "kube-controller-manager": free_port(),
        "kube-scheduler": free_port(),
        "kwok": free_port(),
    }
    return Plan(
        state=args.state_dir.resolve(),
        bins=bins,
        stage_files=stage_files + sorted(OUR_STAGES_DIR.glob("*.yaml")),
        ports=ports,
        nodes=args.nodes,
    )


def start_etcd(plan: Plan) -> None:
    peer_url = f"http://127.0.0.1:{plan.ports['etcd-peer']}"
    start(plan.state, "etcd", [
        plan.bins["etcd"],
        "--name=heliox",
        f"--data-dir={plan.state / 'etcd'}",
        f"--listen-client-urls={plan.etcd_url}",
        f"--advertise-client-urls={plan.etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=heliox={peer_url}",
        "--initial-cluster-state=new",
        # A throwaway test store: no fsync (a big win on a shared disk), quiet logs.
        "--unsafe-no-fsync",
        "--quota-backend-bytes=2147483648",
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=5m",
        "--log-level=warn",
    ])  # fmt: skip
    wait_until(
        "etcd /health",
        lambda: '"health":"true"' in http_get(f"{plan.etcd_url}/health")[1],
        60, plan.state, "etcd",
    )  # fmt: skip


def start_apiserver(plan: Plan) -> None:
    pki = plan.pki
    start(plan.state, "kube-apiserver", [
        plan.bins["kube-apiserver"],
        f"--etcd-servers={plan.etcd_url}",
        "--bind-address=127.0.0.1",
        f"--secure-port={plan.ports['kube-apiserver']}",
        "--advertise-address=127.0.0.1",
        # The endpoint reconciler refuses a loopback address for the `kubernetes` Service's
        # endpoints; no pod runs here to dial it, so it is left without endpoints.
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        # On top of the default set (which already includes PodSecurity, ServiceAccount,
        # DefaultStorageClass, ResourceQuota, LimitRanger, the webhook and policy plugins, ...).
        "--enable-admission-plugins=NodeRestriction,PodSecurity",
        # Privileged pods are allowed by the apiserver, so that Pod Security admission is what
        # rejects them in namespaces that enforce a level (as on kind and most clusters).
        "--allow-privileged=true",
        "--profiling=false",
        f"--cert-dir={plan.state / 'certs'}",
        "--v=1",
    ])  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    wait_until(
        "kube-apiserver /readyz",
        lambda: http_get(f"{plan.server}/readyz", ctx)[0] == 200,
        120, plan.state, "kube-apiserver",
    )  # fmt: skip


def start_controllers(plan: Plan) -> None:
    pki = plan.pki
    for user in ("controller-manager", "scheduler"):
        write_kubeconfig(plan.state / f"{user}.kubeconfig", plan.server, pki, user)
    kcm = plan.state / "controller-manager.kubeconfig"
    start(plan.state, "kube-controller-manager", [
        plan.bins["kube-controller-manager"],
        f"--kubeconfig={kcm}",
        f"--authentication-kubeconfig={kcm}",
        f"--authorization-kubeconfig={kcm}",
        "--bind-address=127.0.0.1",
        f"--secure-port={plan.ports['kube-controller-manager']}",
        f"--cert-dir={plan.state / 'certs' / 'kcm'}",
        "--leader-elect=false",  # one instance: no lease to wait for
        # Every controller on by default: deployment, replicaset, statefulset, job, cronjob,
        # ttl-after-finished, garbage collector, namespace, serviceaccount(-token), endpoints,
        # endpointslice, disruption, horizontalpodautoscaling, persistentvolume-binder,
        # node lifecycle, pod GC, resource quota, ...
        "--controllers=*",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
        "--v=1",
    ])  # fmt: skip
    sched = plan.state / "scheduler.kubeconfig"
    start(plan.state, "kube-scheduler", [
        plan.bins["kube-scheduler"],
        f"--kubeconfig={sched}",
        f"--authentication-kubeconfig={sched}",
        f"--authorization-kubeconfig={sched}",
        "--bind-address=127.0.0.1",
        f"--secure-port={plan.ports['kube-scheduler']}",
        f"--cert-dir={plan.state / 'certs' / 'scheduler'}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ])  # fmt: skip
    insecure = insecure_ctx()
    for name in ("kube-controller-manager", "kube-scheduler"):
        url = f"https://127.0.0.1:{plan.ports[name]}/healthz"
        wait_until(f"{name} /healthz", lambda url=url: http_get(url, insecure)[0] == 200,
                   90, plan.state, name)  # fmt: skip


def node_manifest(i: int, zones: list[str]) -> dict[str, object]:
    name = f"kwok-node-{i}"
    size = {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
                "topology.kubernetes.io/zone": zones[i % len(zones)],
            },
        },
        "spec": {},
        "status": {"allocatable": size, "capacity": size},  # kwok's node-initialize keeps these
    }


def start_kwok(plan: Plan) -> None:
    """Cluster objects the workloads need, then kwok and its Nodes."""
    nodes = [node_manifest(i, ["zone-a", "zone-b", "zone-c"]) for i in range(plan.nodes)]
    plan.kubectl("create", "-f", "-", stdin=json.dumps({"kind": "List", "apiVersion": "v1",
                                                         "items": nodes}))  # fmt: skip
    for m in sorted(MANIFESTS_DIR.glob("*.yaml")):
        plan.kubectl("apply", "-f", str(m))
    start(plan.state, "kwok", [
        plan.bins["kwok"],
        f"--kubeconfig={plan.kubeconfig}",
        *[f"--config={f}" for f in plan.stage_files],
        f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
        f"--node-ip={NODE_IP}",
        f"--cidr={POD_CIDR}",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{plan.ports['kwok']}",
    ])  # fmt: skip

    ready = 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}'
    wait_until(
        f"{plan.nodes} kwok nodes Ready",
        lambda: plan.kubectl("get", "nodes", "-o", ready).split() == ["True"] * plan.nodes,
        60, plan.state, "kwok",
    )  # fmt: skip
    wait_until(
        "the default ServiceAccount",
        lambda: plan.kubectl("get", "serviceaccount", "default", "-n", "default", "-o", "name"),
        60, plan.state, "kube-controller-manager",
    )  # fmt: skip


def prepare(args: argparse.Namespace) -> Plan:
    """The checks and choices before `up` touches anything (a failure here stops nothing)."""
    state: Path = args.state_dir.resolve()
    if (state / "cluster.json").exists() and any(
        (pid := read_pid(state, c)) is not None and alive(pid) for c in COMPONENTS
    ):
        raise ClusterError(f"a cluster is already running from {state}: run `down` first")
    return make_plan(args)


def up(args: argparse.Namespace, plan: Plan) -> dict[str, object]:
    t0 = time.monotonic()
    state = plan.state
    if state.exists():
        shutil.rmtree(state)
    for d in ("logs", "pids", "pki", "etcd", "certs/kcm", "certs/scheduler"):
        (state / d).mkdir(parents=True, exist_ok=True)
    info: dict[str, object] = {
        "state_dir": str(state),
        "kubeconfig": str(plan.kubeconfig),
        "server": plan.server,
        "ports": plan.ports,
        "kubectl": plan.bins["kubectl"],
        "nodes": [f"kwok-node-{i}" for i in range(plan.nodes)],
        "storage_class": "kwok-volume",
    }
    (state / "cluster.json").write_text(json.dumps(info, indent=2) + "\n")
    if args.owner_pid:
        # The watcher tears everything down if the owner (a test session) dies without `down`.
        me = str(Path(__file__).resolve())
        start(state, "watcher", [sys.executable, me, "_watch", "--state-dir", str(state),
                                 "--owner-pid", str(args.owner_pid)])  # fmt: skip
    log(f"state in {state}; logs in {state / 'logs'}")

    def certificates() -> None:
        make_pki(plan.pki)
        write_kubeconfig(plan.kubeconfig, plan.server, plan.pki, "admin")

    steps: list[tuple[Callable[[], None], str]] = [
        (certificates, "certificates and kubeconfig written"),
        (lambda: start_etcd(plan), f"etcd ready on 127.0.0.1:{plan.ports['etcd']}"),
        (lambda: start_apiserver(plan), f"kube-apiserver ready at {plan.server}"),
        (lambda: start_controllers(plan), "kube-controller-manager and kube-scheduler healthy"),
        (lambda: start_kwok(plan), f"{plan.nodes} kwok nodes Ready, default ServiceAccount there"),
    ]
    for step, done in steps:
        t = time.monotonic()
        step()
        log(f"{done} ({time.monotonic() - t:.1f}s)")
    info["ready_seconds"] = round(time.monotonic() - t0, 1)
    (state / "cluster.json").write_text(json.dumps(info, indent=2) + "\n")
    (state / "env").write_text(f"export KUBECONFIG={plan.kubeconfig}\n")
    log(f"cluster up in {info['ready_seconds']}s: export KUBECONFIG={plan.kubeconfig}")
    return info


# --- down -----------------------------------------------------------------------------------


def down(state: Path, quiet: bool = False) -> None:
    state = state.resolve()
    if not state.exists():
        if not quiet:
            log(f"nothing to stop: {state} does not exist")
        return
    if not (state / "cluster.json").exists() and not (state / "pids").exists():
        raise ClusterError(f"{state} does not look like a cluster state directory; not removing it")
    t = time.monotonic()
    for name in reversed(COMPONENTS):
        stop(state, name)
    if os.getpid() != read_pid(state, "watcher"):
        stop(state, "watcher", grace=2)
    shutil.rmtree(state, ignore_errors=True)
    if not quiet:
        log(f"stopped and removed {state} ({time.monotonic() - t:.1f}s)")


def watch(state: Path, owner: int) -> None:
    """Run `down` when the owner process is gone (or the state directory was removed)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while alive(owner) and state.exists():
        time.sleep(1)
    if state.exists():
        down(state, quiet=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "env", "_watch"):
        sp = sub.add_parser(name)
        sp.add_argument(
            "--state-dir",
            type=Path,
            default=Path(os.environ.get("HELIOX_CLUSTER_DIR", DEFAULT_STATE_DIR)),
        )
        if name == "up":
            sp.add_argument("--bin-dir", type=Path, default=DEFAULT_BIN_DIR)
            sp.add_argument("--stages-dir", type=Path, default=DEFAULT_STAGES_DIR)
            sp.add_argument("--nodes", type=int, default=3)
            sp.add_argument("--apiserver-port", type=int, default=0, help="0: a free port")
            sp.add_argument("--etcd-port", type=int, default=0, help="0: a free port")
        if name in ("up", "_watch"):
            sp.add_argument(
                "--owner-pid", type=int, default=0, help="tear down when this process exits"
            )
    args = p.parse_args(argv)
    try:
        if args.cmd == "up":
            plan = prepare(args)
            try:
                up(args, plan)
            except BaseException:
                log(f"start failed; logs kept in {args.state_dir / 'logs'} until `down`")
                for name in reversed(COMPONENTS):
                    stop(args.state_dir.resolve(), name, grace=3)
                raise
        elif args.cmd == "down":
            down(args.state_dir)
        elif args.cmd == "env":
            print((args.state_dir / "env").read_text(), end="")
        else:
            watch(args.state_dir.resolve(), args.owner_pid)
    except ClusterError as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
