"""Load-bearing steps on real pods (the kind tier): losing the PostgreSQL or the Redis pod while
requests keep coming is survived, and each API pod's memory under load stays inside its
limit."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from controlplane import NotReady

from .apikeys import bootstrap_key
from .context import Context
from .objects import api_pods, pod_ready, statefulsets_ready
from .traffic import Load, http, service_url

Obj = dict[str, Any]


# --- losing a store's pod under load --------------------------------------------------------


class Prober(threading.Thread):
    """Paced requests to a few paths, every answer recorded with its time, with ``key`` as
    X-API-Key. The pace keeps the load under the API's default rate limit (100 a minute, per
    key)."""

    def __init__(
        self, base_url: str, paths: list[str], interval: float, key: str | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.base_url, self.paths, self.interval = base_url, paths, interval
        self.headers = {"X-API-Key": key} if key else {}
        self.answers: list[tuple[float, str, int | str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for path in self.paths:
                try:
                    request = urllib.request.Request(self.base_url + path, headers=self.headers)
                    with urllib.request.urlopen(request, timeout=10) as r:
                        r.read()
                        code: int | str = r.status
                except urllib.error.HTTPError as e:
                    code = e.code
                except Exception as e:  # refused, reset, timed out
                    code = type(e).__name__
                self.answers.append((time.monotonic(), path, code))
            self.stop.wait(self.interval)

    def codes(self, path: str, since: float = 0.0) -> list[int | str]:
        return [code for t, p, code in self.answers if p == path and t >= since]


def _delete_and_wait(ctx: Context, pod: str, ready_after: float) -> float:
    """Deletes a store's pod (its StatefulSet makes it again); returns when it was deleted."""
    c = ctx.cluster
    old_uid = c.get("pod", pod, ctx.namespace)["metadata"]["uid"]
    deleted_at = time.monotonic()
    c.kubectl("delete", "pod", pod, "-n", ctx.namespace, "--wait=false")

    def back() -> bool:
        p = c.get("pod", pod, ctx.namespace)
        if p["metadata"]["uid"] == old_uid or not pod_ready(p):
            raise NotReady(f"pod/{pod} not back and Ready yet")
        return True

    c.wait_for(f"pod/{pod} made again and Ready", back, ready_after)
    return deleted_at


def written_items(ctx: Context, url: str, n: int = 5) -> list[int]:
    ids = []
    for i in range(n):
        name = f"kept-{i}-{uuid.uuid4().hex[:6]}"
        status, body = http("POST", f"{url}/api/v1/items", {"name": name}, bootstrap_key(ctx))
        assert status == 201, (status, body)
        ids.append(int(body["id"]))
    return ids


def postgres_pod_loss_under_load(ctx: Context) -> None:
    """The PostgreSQL pod deleted while requests keep coming: `/health` (liveness) answers 200
    throughout, `/health/db` turns 503 while the database is away and comes back to 200 by
    itself, and every item written before is still there (the volume is kept)."""
    with service_url(ctx) as url:
        before = written_items(ctx, url)
        prober = Prober(url, ["/health", "/health/db"], 0.5)
        prober.start()
        try:
            time.sleep(3)
            deleted_at = _delete_and_wait(ctx, f"{ctx.release}-postgresql-0", 300)

            def recovered() -> bool:
                recent = prober.codes("/health/db", time.monotonic() - 3)
                if not recent or any(code != 200 for code in recent):
                    raise NotReady(f"/health/db lately: {recent}")
                return True

            ctx.cluster.wait_for("/health/db back to 200", recovered, 120)
        finally:
            prober.stop.set()
            prober.join(timeout=15)
        health = prober.codes("/health")
        db = prober.codes("/health/db", deleted_at)
        assert health, "no /health answers recorded"
        assert set(health) == {200}, f"/health did not stay 200: {sorted(set(map(str, health)))}"
        assert 503 in db, f"/health/db never reported the outage: {db}"
        for item in before:
            status, body = http("GET", f"{url}/api/v1/items/{item}", key=bootstrap_key(ctx))
            assert status == 200, (item, status, body)
    outage = sum(1 for code in db if code != 200)
    ctx.progress(
        f"PostgreSQL pod lost: /health 200 x{len(health)}, /health/db 503 x{outage} then 200; "
        f"{len(before)} items kept"
    )


def redis_pod_loss_under_load(ctx: Context) -> None:
    """The Redis pod deleted under load (health probes as fast as they are answered) while item
    reads keep coming (paced under the default rate limit, which counts in Redis): every data
    request is answered with success (the cache and the rate limit step aside while Redis is
    away), a write during the outage succeeds, and reads return what was written."""
    with service_url(ctx) as url:
        items = written_items(ctx, url, 2)
        paths = [f"/api/v1/items/{i}" for i in items] + ["/api/v1/items?limit=5"]
        prober = Prober(url, paths, 2.0, bootstrap_key(ctx))
        load = Load(url)
        prober.start()
        load.start()
        try:
            time.sleep(3)
            deleted_at = _delete_and_wait(ctx, f"{ctx.release}-redis-0", 300)
            time.sleep(5)
            during = written_items(ctx, url, 1)
        finally:
            for t in (prober, load):
                t.stop.set()
                t.join(timeout=15)
        answers = [code for path in paths for code in prober.codes(path, deleted_at)]
        assert answers, "no data requests during the Redis outage"
        assert set(answers) == {200}, f"data routes failed while Redis was away: {answers}"
        status, body = http("GET", f"{url}/api/v1/items/{during[0]}", key=bootstrap_key(ctx))
        assert status == 200, (status, body)
    statefulsets_ready(ctx)
    ctx.progress(f"Redis pod lost: {len(answers)} data requests during it, all 200")


# --- memory ---------------------------------------------------------------------------------


def working_sets(ctx: Context) -> dict[str, int]:
    """Each API pod's `api` container working set, in bytes, from the kubelet's summary API."""
    out: dict[str, int] = {}
    for node in {p["spec"]["nodeName"] for p in api_pods(ctx)}:
        raw = ctx.cluster.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/stats/summary")
        for pod in json.loads(raw.stdout)["pods"]:
            if pod["podRef"]["namespace"] != ctx.namespace:
                continue
            for c in pod.get("containers") or []:
                if c["name"] == "api" and "memory" in c:
                    out[pod["podRef"]["name"]] = int(c["memory"]["workingSetBytes"])
    return out


def memory_under_load(ctx: Context, seconds: float = 20) -> dict[str, int]:
    """Each API pod's working set (the kubelet's figure, what the limit is enforced on) read
    under load (health probes as fast as they are answered, item reads paced under the rate
    limit), against the pod's memory limit. Returns the peaks."""
    limit = _api_memory_limit(ctx)
    peaks: dict[str, int] = {}
    with service_url(ctx) as url:
        items = written_items(ctx, url, 2)
        prober = Prober(url, [f"/api/v1/items/{i}" for i in items], 1.5, bootstrap_key(ctx))
        load = Load(url)
        prober.start()
        load.start()
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for pod, ws in working_sets(ctx).items():
                    peaks[pod] = max(peaks.get(pod, 0), ws)
                time.sleep(2)
        finally:
            for t in (prober, load):
                t.stop.set()
                t.join(timeout=15)
        assert load.ok > 100, f"too little load to mean much: {load.ok} answers"
    assert peaks, "the kubelet reported no working set for the API pods"
    for pod, ws in peaks.items():
        mib, limit_mib = ws / 2**20, limit / 2**20
        assert ws < limit, f"{pod}: working set {mib:.0f} MiB >= limit {limit_mib:.0f} MiB"
    shown = ", ".join(f"{ws / 2**20:.0f} MiB" for ws in sorted(peaks.values()))
    ctx.progress(f"API pods' working set under load: {shown} (limit {limit / 2**20:.0f} MiB)")
    return peaks


def _api_memory_limit(ctx: Context) -> int:
    d = ctx.cluster.get("deployment", ctx.fullname, ctx.namespace)
    c = next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == "api")
    value = str(c["resources"]["limits"]["memory"])
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return int(float(value[: -len(suffix)]) * factor)
    return int(value)
