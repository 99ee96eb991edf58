"""Database pool gauges under gunicorn: every scrape reports every worker's current pool.

Two workers, real PostgreSQL. Connections are held checked out by real requests: PATCHes of a
row the test has locked (``SELECT ... FOR UPDATE``), which wait inside a worker on PostgreSQL
with their connection until the test commits. The test knows which worker holds each request
and which one answered each scrape (from /proc: the worker whose file descriptor is the server
end of that TCP connection), so it checks both workers' answers against what is held.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from heliox.core.config import Settings
from heliox.core.metrics import FLUSH_INTERVAL_SECONDS
from tests.servers import TEST_API_KEY, GunicornServer, worker_of

# Each worker writes its pool figures once a flush interval; the grace is for a loaded machine
# (a worker not scheduled in time). Before the fix they were written only at a scrape: never.
PUBLISHED_WITHIN = FLUSH_INTERVAL_SECONDS + 4
POOL_SIZE = Settings.model_fields["db_pool_size"].default  # DB_POOL_SIZE unset here


def _http(method: str, path: str, body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {TEST_API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _read_response(connection: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, "connection closed before a response"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, "connection closed inside a response"
        body += chunk
    return int(head.split()[1]), body


def _scrape(server: GunicornServer) -> tuple[int, dict[str, float]]:
    """One scrape on a new connection: the worker that answered, and the pool gauges."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(_http("GET", "/metrics"))
        status, body = _read_response(connection)
        worker = worker_of(server, connection)  # still open: keep-alive
    assert status == 200, f"/metrics answered {status}: {body[:300]!r}\n{server.log()[-4000:]}"
    gauges = {
        name: float(value)
        for name, value in re.findall(r"^heliox_db_pool_(\w+) (\S+)$", body.decode(), re.M)
    }
    return worker, gauges


def _scrapes_from_every_worker(server: GunicornServer) -> Iterator[tuple[int, dict[str, float]]]:
    """Scrapes until each worker has answered at least twice (new connections land on either)."""
    answered: dict[int, int] = {}
    for _ in range(400):
        worker, gauges = _scrape(server)
        answered[worker] = answered.get(worker, 0) + 1
        yield worker, gauges
        if len(answered) == server.workers and min(answered.values()) >= 2:
            return
    raise AssertionError(f"scrapes were answered by {answered} only")


class _Held:
    """PATCHes waiting on the test's row lock, each on its own connection, by worker."""

    def __init__(self, server: GunicornServer, item_id: int) -> None:
        self.server = server
        self.item_id = item_id
        self.by_worker: dict[int, list[socket.socket]] = {}

    def add(self) -> int:
        connection = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        body = json.dumps({"name": "held"}).encode()
        connection.sendall(_http("PATCH", f"/api/v1/items/{self.item_id}", body))
        worker = worker_of(self.server, connection)
        self.by_worker.setdefault(worker, []).append(connection)
        return worker

    def holding(self, worker: int | None = None) -> int:
        """Requests holding a connection: a worker runs at most DB_POOL_SIZE units of work at
        once (core/db.py), so its requests beyond that wait for a slot, not on the lock."""
        if worker is None:
            return sum(self.holding(pid) for pid in self.by_worker)
        return min(self.count(worker), POOL_SIZE)

    def count(self, worker: int | None = None) -> int:
        if worker is None:
            return sum(len(held) for held in self.by_worker.values())
        return len(self.by_worker.get(worker, []))

    def finish(self, alive: Callable[[int], bool]) -> list[int]:
        statuses = []
        for worker, held in self.by_worker.items():
            for connection in held:
                if alive(worker):
                    statuses.append(_read_response(connection)[0])
                connection.close()
        self.by_worker.clear()
        return statuses


def _own_checked_out(server: GunicornServer, pid: int) -> float | None:
    """What one worker has written to its own gauge file (None: nothing yet)."""
    path = Path(server.env["PROMETHEUS_MULTIPROC_DIR"]) / f"gauge_livesum_{pid}.db"
    if not path.exists():
        return None
    for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
        if metric.name == "heliox_db_pool_checked_out":
            return sum(sample.value for sample in metric.samples)
    return None


def _wait_until_published(server: GunicornServer, held: _Held) -> None:
    """Until every worker's own file shows what it holds now, without any scrape."""
    deadline = time.monotonic() + PUBLISHED_WITHIN
    while True:
        own = {pid: _own_checked_out(server, pid) for pid in server.worker_pids()}
        if all(value == held.holding(pid) for pid, value in own.items()):
            return
        assert time.monotonic() < deadline, (
            f"pool figures not written within {PUBLISHED_WITHIN}s: {own}, held {held.by_worker}"
        )
        time.sleep(0.05)


def _wait_for_lock_waiters(database_url: str, count: int, timeout: float = 15) -> None:
    dbname = database_url.rsplit("/", 1)[1]
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as watcher:
        while True:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND wait_event_type = 'Lock'",
                (dbname,),
            ).fetchone()
            if row is not None and row[0] == count:
                return
            assert time.monotonic() < deadline, f"{row} requests waiting on the lock, not {count}"
            time.sleep(0.05)


@pytest.fixture
def server(database_url: str) -> Iterator[GunicornServer]:
    env = {
        "ENV": "production",
        "DATABASE_URL": database_url,
        "RATE_LIMIT_ENABLED": "false",
        # The held requests wait on the test's lock for as long as it takes.
        "DB_STATEMENT_TIMEOUT_MS": "0",
        "DB_REQUEST_TIMEOUT": "120",
        # Requests beyond a worker's pool wait for a slot that long too (see _Held.holding).
        "DB_POOL_TIMEOUT": "120",
    }
    with GunicornServer(env, workers=2) as gunicorn:
        yield gunicorn


def test_every_scrape_reports_every_workers_pool(server: GunicornServer, database_url: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(_http("POST", "/api/v1/items", b'{"name": "hot"}'))
        status, body = _read_response(connection)
    assert status == 201
    item_id = json.loads(body)["id"]
    # Every worker reports an idle pool. Not at once: the key's first use writes its last-used
    # time in the background (core/auth/gate.py), holding a connection for a moment.
    deadline = time.monotonic() + 5
    while True:
        latest = dict(_scrapes_from_every_worker(server))
        if all(gauges["checked_out"] == 0 for gauges in latest.values()):
            break
        assert time.monotonic() < deadline, f"connections still checked out: {latest}"
        time.sleep(0.1)

    held = _Held(server, item_id)
    with psycopg.connect(database_url) as locker:
        locker.execute("SELECT 1 FROM items WHERE id = %s FOR UPDATE", (item_id,))
        # Connections checked out in both workers, a different number in each.
        workers = server.worker_pids()
        while not (held.count(workers[0]) >= 1 and held.count(workers[1]) >= 2):
            assert held.count() < 20, f"one worker took every connection: {held.by_worker}"
            held.add()
        _wait_for_lock_waiters(database_url, held.holding())
        _wait_until_published(server, held)
        for worker, gauges in _scrapes_from_every_worker(server):
            assert gauges["checked_out"] == held.holding(), (worker, gauges, held.by_worker)
        locker.commit()
    assert set(held.finish(alive=lambda _pid: True)) == {200}

    _wait_until_published(server, held)  # nothing held any more
    for worker, gauges in _scrapes_from_every_worker(server):
        assert gauges["checked_out"] == 0, (worker, gauges)
        assert gauges["size"] == 2 * POOL_SIZE, "2 workers"


def test_a_killed_workers_connections_are_not_counted(
    server: GunicornServer, database_url: str
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(_http("POST", "/api/v1/items", b'{"name": "hot"}'))
        item_id = json.loads(_read_response(connection)[1])["id"]

    held = _Held(server, item_id)
    with psycopg.connect(database_url) as locker:
        locker.execute("SELECT 1 FROM items WHERE id = %s FOR UPDATE", (item_id,))
        victim, survivor = server.worker_pids()
        while not (held.count(victim) >= 2 and held.count(survivor) >= 1):
            assert held.count() < 20, f"one worker took every connection: {held.by_worker}"
            held.add()
        _wait_for_lock_waiters(database_url, held.holding())
        _wait_until_published(server, held)
        assert _scrape(server)[1]["checked_out"] == held.holding()

        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while victim in server.worker_pids() or len(server.worker_pids()) < 2:
            assert time.monotonic() < deadline, "worker not replaced"
            time.sleep(0.1)
        assert not (
            Path(server.env["PROMETHEUS_MULTIPROC_DIR"]) / f"gauge_livesum_{victim}.db"
        ).exists()
        for worker, gauges in _scrapes_from_every_worker(server):
            assert gauges["checked_out"] == held.holding(survivor), (worker, gauges)
        locker.commit()
    assert set(held.finish(alive=lambda pid: pid != victim)) == {200}
