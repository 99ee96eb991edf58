"""Steps that need real pods (the kind tier only): HTTP through the Service, data through the API,
a rolling restart under load, a migration that really changes the schema.

Requests reach the Service either through `kubectl port-forward svc/...` (`PortForward`) or
through a URL the caller gives (the kind tier maps the Service's NodePort to the host). A
port-forward pins one pod, so the load across a rolling restart uses the NodePort.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from controlplane import NotReady

from .apikeys import bootstrap_key
from .context import Context
from .objects import current_replicaset, pods_of, wait_rolled_out


class PortForward:
    """`kubectl port-forward svc/<fullname> :<port>` for the duration of a `with` block."""

    def __init__(self, ctx: Context, port: int = 80) -> None:
        self.ctx, self.port = ctx, port
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def _target(self) -> list[str]:
        return [f"svc/{self.ctx.fullname}", f":{self.port}", "--address", "127.0.0.1"]

    def __enter__(self) -> PortForward:
        c = self.ctx.cluster
        self.proc = subprocess.Popen(
            [c.kubectl_bin, "port-forward", "-n", self.ctx.namespace, *self._target()],
            env=c.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
            if m:
                self.url = f"http://127.0.0.1:{m[1]}"
                return self
            if not line and self.proc.poll() is not None:
                break
        self.__exit__()
        raise RuntimeError(f"kubectl port-forward to svc/{self.ctx.fullname} did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@contextmanager
def service_url(ctx: Context) -> Iterator[str]:
    """The API Service's base URL: `ctx.state["url"]` when the tier reaches it directly (the
    kind port mapping), otherwise a port-forward for the duration of the block."""
    if ctx.state.get("url"):
        yield str(ctx.state["url"])
        return
    with PortForward(ctx) as pf:
        yield pf.url


def http(
    method: str, url: str, body: dict[str, Any] | None = None, key: str | None = None
) -> tuple[int, Any]:
    """One request; ``key`` is sent as X-API-Key (every /api/v1 route needs one)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:  # our own port-forward URL
            raw = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def health_through_service(ctx: Context) -> None:
    """GET /health (liveness, touches nothing) and /health/db (readiness, a real query on the
    database the release runs) through the Service."""
    with service_url(ctx) as url:
        status, body = http("GET", f"{url}/health")
        assert (status, body) == (200, {"status": "ok"}), (status, body)
        status, body = http("GET", f"{url}/health/db")
        assert status == 200, body
        assert body["status"] == "ok", body
        assert body["database"] == "connected", body
    ctx.progress("/health and /health/db answer 200 through the Service")


def items_round_trip(ctx: Context) -> int:
    """Create an item and read it back, through the Service, with the bootstrap admin key read
    from its Secret (as NOTES.txt says); returns its id."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    key = bootstrap_key(ctx)
    with service_url(ctx) as url:
        status, created = http(
            "POST", f"{url}/api/v1/items", {"name": name, "description": "made by make e2e"}, key
        )
        assert status == 201, (status, created)
        item_id = int(created["id"])
        status, got = http("GET", f"{url}/api/v1/items/{item_id}", key=key)
        assert (status, got["id"], got["name"]) == (200, item_id, name), (status, got)
        # Without a key, or with a wrong one, the same read is refused with the error body.
        for wrong in (None, key[:-4] + "xxxx"):
            status, refused = http("GET", f"{url}/api/v1/items/{item_id}", key=wrong)
            assert (status, refused.get("error")) == (401, "unauthorized"), (status, refused)
    ctx.progress(
        f"item {item_id} created and read back through the Service with the bootstrap key;"
        " 401 without a key and with a wrong one"
    )
    return item_id


class Load(threading.Thread):
    """Steady load from this process: GET /health and /health/db in turn, as fast as answers
    come, a new connection each time (urllib sends `Connection: close`), every response
    counted; anything but 200 (or no answer within 5 s) is a failure, kept with its time."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.ok = 0
        self.failures: list[tuple[float, str, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        paths = ("/health", "/health/db")
        n = 0
        while not self.stop.is_set():
            path = paths[n % 2]
            n += 1
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=5) as r:
                    r.read()
                    code = str(r.status)
            except urllib.error.HTTPError as e:
                code = str(e.code)
            except Exception as e:  # refused, reset, timed out: all failures
                code = f"{type(e).__name__}: {e}"
            if code == "200":
                self.ok += 1
            else:
                self.failures.append((time.time(), path, code))

    @property
    def count(self) -> int:
        return self.ok + len(self.failures)


def rolling_restart_under_load(ctx: Context, base_url: str) -> None:
    """`kubectl rollout restart` of the API while a thread here calls it through the Service
    without pause (`base_url`: the kind port mapping to the Service's NodePort, so kube-proxy
    spreads the requests over the ready pods; a port-forward would pin one pod). Every response
    is counted and none may fail (maxUnavailable 0, readiness on the database, preStop drain).
    The load starts before the restart and runs until a few seconds after every old pod is
    gone."""
    c = ctx.cluster
    load = Load(base_url)
    load.start()
    try:
        c.wait_for("the load under way", lambda: load.count >= 20, 60)
        old = current_replicaset(ctx)
        old_pods = {p["metadata"]["name"] for p in pods_of(ctx, old)}
        started = load.count
        c.kubectl("rollout", "restart", f"deployment/{ctx.fullname}", "-n", ctx.namespace)
        c.kubectl(
            "rollout",
            "status",
            f"deployment/{ctx.fullname}",
            "-n",
            ctx.namespace,
            "--timeout=300s",
            timeout=320,
        )
        wait_rolled_out(ctx)

        def old_gone() -> bool:
            left = {p["metadata"]["name"] for p in c.items("pods", ctx.namespace)} & old_pods
            if left:
                raise NotReady(f"old pods still terminating: {sorted(left)}")
            return True

        c.wait_for("the old pods gone", old_gone, 180)
        time.sleep(5)
    finally:
        load.stop.set()
        load.join(timeout=10)
    during = load.count - started
    assert not load.failures, f"{len(load.failures)} failed requests: {load.failures[:20]}"
    assert during >= 100, f"only {during} requests during the restart: too little to mean much"
    ctx.progress(f"rolling restart under load: {load.count} requests, {during} during it, 0 failed")


# --- an upgrade that really migrates ------------------------------------------------------------

MIGRATION = '''"""e2e: a table added by an upgrade (tests/cluster/test_e2e_kind.py builds it in)."""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("e2e_upgrade_marker", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("e2e_upgrade_marker")
'''


def head_revision(versions: Path) -> str:
    """The repository's Alembic head: the revision no other revision builds on."""
    revs, downs = set(), set()
    for f in versions.glob("*.py"):
        text = f.read_text()
        if m := re.search(r'^revision(?::\s*str)?\s*=\s*"([^"]+)"', text, re.M):
            revs.add(m[1])
        if m := re.search(r'^down_revision(?::[^=]+)?=\s*"([^"]+)"', text, re.M):
            downs.add(m[1])
    heads = revs - downs
    assert len(heads) == 1, f"expected one Alembic head in {versions}, found {sorted(heads)}"
    return heads.pop()


def schema_revision(ctx: Context) -> str:
    """`heliox-migrate current` run in an API pod."""
    out = ctx.cluster.kubectl(
        "exec", f"deploy/{ctx.fullname}", "-c", "api", "-n", ctx.namespace, "--",
        "heliox-migrate", "current",
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]
