"""Graceful reload (SIGHUP) and graceful stop (SIGTERM) of gunicorn under steady load, with slow
requests in flight: no request a worker accepted is lost, and every item written is kept.

Slow requests are real ones on the production app: PATCHes of rows that the test has locked
(``SELECT ... FOR UPDATE`` in an open transaction), so they sit inside a worker, waiting on
PostgreSQL, until the test commits. No test-only route is needed, and the requests in flight
hold database connections, as slow requests do in production.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.reliability.harness import (
    LoadDriver,
    accepted_by_server,
    bad_server_lines,
    judge,
    service_env,
    unreadable_items,
    wait_for_new_workers,
    wait_until,
)
from tests.servers import GunicornServer

EXPECTED = {"GET": 200, "POST": 201, "PATCH": 200}
HOLD_AFTER_SIGNAL = 2.0  # the slow requests stay in flight this long after the signal


def lanes() -> list[dict[str, Any]]:
    return [
        {"name": "health", "threads": 2, "pause": 0.01, "requests": [{"path": "/health"}]},
        {
            "name": "read",
            "threads": 2,
            "pause": 0.01,
            "requests": [{"path": "/api/v1/items/{id}"}, {"path": "/api/v1/items?limit=5"}],
        },
        {
            "name": "write",
            "threads": 1,
            "pause": 0.02,
            "requests": [{"method": "POST", "path": "/api/v1/items"}],
        },
        {
            "name": "slow",
            "threads": 4,
            "pause": 0,
            "requests": [{"method": "PATCH", "path": "/api/v1/items/{hot}"}],
        },
    ]


def expected(record: dict[str, Any]) -> bool:
    return record["status"] == EXPECTED[record["method"]] and record.get("rid_echoed", False)


def lock_rows(database_url: str, ids: list[int]) -> psycopg.Connection[Any]:
    conn = psycopg.connect(database_url)
    conn.execute("SELECT id FROM items WHERE id = ANY(%s) FOR UPDATE", (ids,)).fetchall()
    return conn  # the transaction stays open: the rows stay locked until commit


def waiting_on_locks(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'heliox' "
            "AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def written_names(database_url: str, prefix: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name, id FROM items WHERE name LIKE %s", (prefix + "%",)
        ).fetchall()
    return dict(rows)


def run_signal_scenario(
    sig: signal.Signals,
    database_url: str,
    redis_url: str,
    items_in: Callable[[int], list[int]],
    summary: Callable[[str], None],
) -> None:
    ids = items_in(50)
    hot = ids[:4]
    run_id = f"sig{sig.name.lower()}"
    server = GunicornServer(service_env(database_url, redis_url), workers=2)
    server.start()
    restarted: GunicornServer | None = None
    try:
        old_workers = set(server.worker_pids())
        with LoadDriver(server.port, lanes(), ids=ids[4:], hot_ids=hot, run_id=run_id) as driver:
            time.sleep(1.0)
            locker = lock_rows(database_url, hot)
            try:
                # The slow lane's PATCHes are now inside the workers, waiting on the locks.
                wait_until(
                    "slow requests in flight", lambda: waiting_on_locks(database_url) >= 3, 15
                )
                t_signal = time.monotonic()
                server.signal(sig)
                time.sleep(HOLD_AFTER_SIGNAL)
            finally:
                locker.commit()
                locker.close()
            if sig == signal.SIGHUP:
                new_workers = wait_for_new_workers(server, old_workers, 2, timeout=30)
                time.sleep(2.0)  # the new workers serve the steady load
            else:
                assert server.wait(timeout=40) == 0, server.log()
                time.sleep(0.5)  # the driver meets a closed port
        records = driver.records()
        log = server.log()
        if sig == signal.SIGTERM:
            # Read everything back through a fresh service on the same database.
            restarted = GunicornServer(service_env(database_url, redis_url), workers=1)
            restarted.start()
        reader = restarted or server

        rows = written_names(database_url, run_id)
        verdict = judge(sig.name, records, accepted_by_server(log), expected, rows_written=rows)
        before = [r for r in records if r["t_send"] < t_signal and r["retry_of"] is None]
        across = [
            r
            for r in before
            if r["lane"] == "slow" and r["t_end"] > t_signal + HOLD_AFTER_SIGNAL - 0.5
        ]
        created = {r["rid"]: r["item_id"] for r in records if r["status"] == 201}
        missing = unreadable_items(reader.url, list(created.values()))
        extra = (
            f"{len(before)} sent before the signal, {len(across)} slow ones in flight across it "
            f"(answered {sum(1 for r in across if expected(r))}), {len(created)} items written, "
            f"{len(created) - len(missing)} read back"
        )
        summary(verdict.line(extra))

        assert not verdict.failed, verdict.describe_failures()
        assert len(across) >= 3, "the slow requests were not in flight across the signal"
        assert all(expected(r) for r in across)
        assert not [r for r in verdict.not_accepted if r["t_send"] < t_signal - 0.5], (
            "requests sent well before the signal were not accepted"
        )
        # Data safety: every 201 is a row with the name we sent, readable through the API.
        assert all(rows.get(rid) == item_id for rid, item_id in created.items())
        assert not missing, f"written but not readable: {missing[:10]}"
        assert not bad_server_lines(log), bad_server_lines(log)
        if sig == signal.SIGHUP:
            assert not (new_workers & old_workers)
            assert server.process is not None
            assert server.process.poll() is None, "the master must survive a reload"
            after = [r for r in records if r["t_send"] > t_signal + HOLD_AFTER_SIGNAL + 1]
            assert after
            assert all(expected(r) for r in after if r["outcome"] == "response")
        else:
            assert 'message="database engine disposed"' in log
    finally:
        server.close()
        if restarted is not None:
            restarted.close()


def test_sighup_reload_loses_nothing(
    database_url: str,
    redis_url: str,
    items_in: Callable[[int], list[int]],
    summary: Callable[[str], None],
) -> None:
    run_signal_scenario(signal.SIGHUP, database_url, redis_url, items_in, summary)


def test_sigterm_drains_everything_accepted(
    database_url: str,
    redis_url: str,
    items_in: Callable[[int], list[int]],
    summary: Callable[[str], None],
) -> None:
    run_signal_scenario(signal.SIGTERM, database_url, redis_url, items_in, summary)
