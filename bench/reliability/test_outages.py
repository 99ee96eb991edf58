"""PostgreSQL and Redis stopped under steady load, then started again, with no restart of the
service: liveness stays up, data routes degrade to quick 503s with the error body (or, for
Redis, keep answering from PostgreSQL), recovery is on its own, nothing is a 500, and every
item written before the fault is readable after it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from bench.reliability.harness import (
    LoadDriver,
    accepted_by_server,
    bad_server_lines,
    judge,
    service_env,
    unreadable_items,
    wait_until,
)
from tests.servers import GunicornServer, PostgresServer, RedisServer

DOWN_SECONDS = 4.0
RECOVERY_BOUND = 5.0  # seconds from the dependency's return to every data request succeeding
DB_CONNECT_TIMEOUT = 3  # the default; a refused or failed connection is reported within it
EXPECTED_OK = {"GET": 200, "POST": 201}


def lanes(*, ready_probe: bool = True, read_threads: int = 2) -> list[dict[str, Any]]:
    out = [
        {"name": "health", "threads": 1, "pause": 0.01, "requests": [{"path": "/health"}]},
        {
            "name": "read",
            "threads": read_threads,
            "pause": 0.01,
            "requests": [{"path": "/api/v1/items/{id}"}, {"path": "/api/v1/items?limit=5"}],
        },
        {
            "name": "write",
            "threads": 1,
            "pause": 0.02,
            "requests": [{"method": "POST", "path": "/api/v1/items"}],
        },
    ]
    if ready_probe:
        out.append(
            {"name": "ready", "threads": 1, "pause": 0.05, "requests": [{"path": "/health/db"}]}
        )
    return out


def is_error_body(record: dict[str, Any], status: int, error: str) -> bool:
    return (
        record["status"] == status
        and record.get("shape_ok") is True
        and record.get("body_error") == error
        and record.get("rid_echoed") is True
    )


def rows_named(database_url: str, prefix: str) -> set[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT name FROM items WHERE name LIKE %s", (prefix + "%",))
        return {row[0] for row in rows.fetchall()}


def created(records: list[dict[str, Any]], before: float | None = None) -> list[int]:
    return [
        r["item_id"]
        for r in records
        if r["status"] == 201 and (before is None or r["t_end"] < before)
    ]


def recovered_at(
    records: list[dict[str, Any]], since: float, data: Callable[[dict[str, Any]], bool]
) -> float:
    """The send time from which every data request got its normal answer."""
    later = sorted(
        (r for r in records if data(r) and r["t_send"] >= since), key=lambda r: r["t_send"]
    )
    last_bad = max(
        (r["t_send"] for r in later if r["status"] != EXPECTED_OK[r["method"]]), default=None
    )
    if last_bad is None:
        return since
    good_after = [r["t_send"] for r in later if r["t_send"] > last_bad]
    assert good_after, "data requests never recovered"
    return min(good_after)


def is_data(record: dict[str, Any]) -> bool:
    return record["lane"] in ("read", "write") and record["retry_of"] is None


def test_postgres_stopped_and_started_under_load(
    postgres_server: PostgresServer,
    database_url: str,
    redis_url: str,
    items_in: Callable[[int], list[int]],
    summary: Callable[[str], None],
) -> None:
    ids = items_in(50)
    with GunicornServer(service_env(database_url, redis_url), workers=2) as server:
        pids = (server.process.pid if server.process else None, set(server.worker_pids()))
        with LoadDriver(server.port, lanes(), ids=ids, run_id="pgdown") as driver:
            time.sleep(1.5)
            t_down = time.monotonic()
            try:
                postgres_server.stop("fast")
                time.sleep(DOWN_SECONDS)
            finally:
                t_up_begin = time.monotonic()
                postgres_server.start()
            t_up = time.monotonic()
            time.sleep(RECOVERY_BOUND + 2)
        records = driver.records()
        log = server.log()
        same_processes = (server.process.pid if server.process else None, set(server.worker_pids()))

        written = rows_named(database_url, "pgdown")
        before_fault = created(records, before=t_down)
        missing = unreadable_items(server.url, created(records))

    # What each request may answer: health always 200; data routes their normal answer,
    # or 503 with the error body from the outage until recovery; the readiness probe 503 too.
    def allowed(r: dict[str, Any]) -> bool:
        if r["lane"] == "health":
            return r["status"] == 200
        normal = r["status"] == EXPECTED_OK[r["method"]]
        in_outage = t_down <= r["t_end"] and r["t_send"] <= t_up + RECOVERY_BOUND
        return normal or (in_outage and is_error_body(r, 503, "service_unavailable"))

    verdict = judge(
        "PostgreSQL down 4 s", records, accepted_by_server(log), allowed, rows_written=written
    )
    outage = [r for r in records if is_data(r) and t_down + 0.5 < r["t_send"] < t_up_begin - 0.5]
    outage_503 = [r for r in outage if r["status"] == 503]
    cached_200 = [r for r in outage if r["status"] == 200]
    health = [r for r in records if r["lane"] == "health"]
    back = recovered_at(records, t_up, is_data) - t_up
    probe_back = recovered_at(records, t_up, lambda r: r["lane"] == "ready") - t_up
    slowest_503 = max((r["latency"] for r in outage_503), default=0.0)
    summary(
        verdict.line(
            f"during the outage {len(outage_503)} data requests answered 503 (slowest "
            f"{slowest_503:.2f}s), {len(cached_200)} reads served from the Redis cache; "
            f"/health {sum(r['status'] == 200 for r in health)}/{len(health)} 200; data "
            f"recovered {back:.2f}s and /health/db {probe_back:.2f}s after PostgreSQL was back; "
            f"{len(before_fault)} items written before the fault readable after: "
            f"{not set(before_fault) & set(missing)}"
        )
    )

    assert not verdict.failed, verdict.describe_failures()
    assert not verdict.not_accepted
    assert not [r for r in records if r["status"] == 500]
    assert outage_503, "the outage was not seen by the data routes"
    assert all(is_error_body(r, 503, "service_unavailable") for r in outage_503)
    assert slowest_503 < DB_CONNECT_TIMEOUT + 1
    assert health
    assert all(r["status"] == 200 for r in health)
    assert back <= RECOVERY_BOUND, f"data routes recovered {back:.2f}s after PostgreSQL"
    assert probe_back <= RECOVERY_BOUND, f"/health/db recovered {probe_back:.2f}s after"
    assert same_processes == pids, "the service restarted"
    assert before_fault
    assert not missing, f"written but not readable: {missing[:10]}"
    assert not bad_server_lines(log), bad_server_lines(log)


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
def test_redis_stopped_and_started_under_load(
    fail_open: bool,
    redis_server: RedisServer,
    database_url: str,
    redis_url: str,
    items_in: Callable[[int], list[int]],
    summary: Callable[[str], None],
) -> None:
    ids = items_in(50)
    env = service_env(database_url, redis_url)
    if not fail_open:
        env["RATE_LIMIT_FAIL_OPEN"] = "false"
    name = "Redis down 4 s, rate limit " + ("fail-open (default)" if fail_open else "fail-closed")
    with GunicornServer(env, workers=2) as server:
        pids = set(server.worker_pids())
        # Eight readers: enough concurrency for several pooled Redis connections per worker
        # (stale ones after the restart once delayed recovery by a backoff period each).
        load = lanes(ready_probe=False, read_threads=8)
        with LoadDriver(server.port, load, ids=ids, run_id="redisdown") as driver:
            time.sleep(1.5)
            t_down = time.monotonic()
            try:
                redis_server.stop()
                time.sleep(DOWN_SECONDS)
            finally:
                t_up_begin = time.monotonic()
                redis_server.start()
            t_up = time.monotonic()
            time.sleep(RECOVERY_BOUND + 1)
        records = driver.records()
        log = server.log()
        same_workers = set(server.worker_pids()) == pids
        written = rows_named(database_url, "redisdown")
        before_fault = created(records, before=t_down)
        missing = unreadable_items(server.url, created(records))

    def allowed(r: dict[str, Any]) -> bool:
        if r["lane"] == "health":
            return r["status"] == 200
        if r["status"] == EXPECTED_OK[r["method"]]:
            return True
        # Fail-closed: the limiter answers 503 while it cannot count.
        in_outage = t_down <= r["t_end"] and r["t_send"] <= t_up + RECOVERY_BOUND
        return not fail_open and in_outage and is_error_body(r, 503, "service_unavailable")

    verdict = judge(name, records, accepted_by_server(log), allowed, rows_written=written)
    outage = [r for r in records if is_data(r) and t_down + 0.5 < r["t_send"] < t_up_begin]
    answered = [r for r in outage if r["status"] == EXPECTED_OK[r["method"]]]
    refused = [r for r in outage if r["status"] == 503]
    back = recovered_at(records, t_up, is_data) - t_up
    summary(
        verdict.line(
            f"during the outage {len(answered)} data requests answered from PostgreSQL, "
            f"{len(refused)} refused with 503; recovered {back:.2f}s after Redis was back; "
            f"{len(before_fault)} items written before the fault readable after: "
            f"{not set(before_fault) & set(missing)}"
        )
    )

    assert not verdict.failed, verdict.describe_failures()
    assert not verdict.not_accepted
    assert not [r for r in records if r["status"] == 500]
    assert outage, "no data requests during the outage"
    if fail_open:
        assert len(answered) == len(outage), "a data request failed while Redis was down"
    else:
        # After the first failed Redis call, the breaker answers at once for the whole window.
        assert len(refused) >= 0.9 * len(outage)
        assert all(is_error_body(r, 503, "service_unavailable") for r in refused)
    assert back <= RECOVERY_BOUND
    assert same_workers, "the service restarted"
    assert before_fault
    assert not missing, f"written but not readable: {missing[:10]}"
    assert not bad_server_lines(log), bad_server_lines(log)
    wait_until("Redis answers", lambda: redis_server.command("PING") == "+PONG", 5)
