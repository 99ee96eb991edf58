"""The data routes against the same stack without our layers (issue "Data routes at the speed of
the stack"), measured side by side in one run.

One gunicorn master with one uvicorn worker, both pinned to core 0, wrk pinned to core 1
(`-t1 -c32`), PostgreSQL and Redis on loopback and pinned to core 1 as well (so core 0 runs the
worker alone: what is measured is the service's own cost, not the stores' work landing on its
core, which /health never pays), `ENV=production`, the rate limit off, and alternating rounds
(A B, B A, ...) with medians of the ratios. Each round interleaves the two sides in short
slices (A B A B ..., then B A B A ... in the next round) and compares the requests each side
served over its slices: the shared hosts' load changes within seconds (the steal time of a
minute swings from 0 to 25%), and one long measurement a side put such a change on one side
only, so one pair's rounds spread over 0.5-1.5.


| measurement | ours | against |
| --- | --- | --- |
| `/health` | the service | bare FastAPI (bench/bare_app.py) |
| item by id, uncached | the service without Redis | the bare SQLAlchemy route |
| item by id, cached | the service with Redis | the service's own `/health` |
| a page of 20 | the service without Redis | the bare route |
| a write | the service without Redis | the bare insert |
| cached item, API key | the service with Redis | the same, `AUTH_ENABLED=false` |

Every round also counts the PostgreSQL sessions opened during it, by both sides together
(`pg_stat_database.sessions`): at steady state, a connection pool that works opens none.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg

from bench.harness import (
    SLICE_SECONDS,
    gunicorn,
    interleaved,
    progress,
    run_wrk,
    service_env,
    slices_for,
)
from tests.servers import GunicornServer, PostgresServer, RedisServer, children_of

SERVER_CPU, WRK_CPU = 0, 1
CONNECTIONS = 32

# Targets: the issue's, and for writes and pages ours, set from the profile (docs/ARCHITECTURE.md,
# "Performance"): a write commits and a page counts the table, so the database's own work is a
# larger share and our layers a smaller one; a cached read should cost one Redis round trip.
TARGETS = {
    "health": ("/health vs bare", 0.95),
    "uncached": ("item by id, uncached, vs bare", 0.9),
    "cached": ("item by id, Redis cache, vs the service's /health", 0.5),
    "page": ("page of 20, uncached, vs bare", 0.85),
    "write": ("POST, vs bare", 0.85),
    # Issue "Who may call the API": the key's check answered from the in-process cache.
    "auth": ("item by id, Redis cache, API key vs AUTH_ENABLED=false", 0.95),
}


class Slice(NamedTuple):
    """One short wrk run: what it served, over how long, and its median latency."""

    requests: int
    seconds: float
    p50_ms: float


class Side(NamedTuple):
    """One side of a round: its slices' requests over their seconds, and their median p50."""

    rps: float
    p50_ms: float

    @classmethod
    def of(cls, slices: list[Slice]) -> Side:
        seconds = sum(s.seconds for s in slices)
        requests = sum(s.requests for s in slices)
        return cls(
            requests / seconds if seconds else 0.0, statistics.median(s.p50_ms for s in slices)
        )


@dataclass
class Pair:
    """One comparison: each round's requests/s of ours and of the baseline (over their slices),
    the median of their slices' p50 latencies, and the sessions PostgreSQL opened during each
    round (both sides)."""

    key: str
    label: str
    target: float
    rounds: list[tuple[float, float]] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    p50_ms: list[tuple[float, float]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(ours / base for ours, base in self.rounds) if self.rounds else 0.0

    @property
    def met(self) -> bool:
        return self.ratio >= self.target

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "target": self.target,
            "ratio": self.ratio,
            "met": self.met,
            "rounds": self.rounds,
            "new_sessions": self.sessions,
            "p50_ms": self.p50_ms,
        }


def pin(server: GunicornServer, cpu: int) -> None:
    """The master and its worker on one core (the worker was forked before: pin it too)."""
    assert server.process is not None
    pids = [server.process.pid, *server.worker_pids()]
    for pid in pids:
        os.sched_setaffinity(pid, {cpu})


@contextlib.contextmanager
def stores_pinned(postgres: PostgresServer, redis: RedisServer, cpu: int) -> Iterator[None]:
    """PostgreSQL (the postmaster, so every backend it forks from now on, and the processes
    already running) and Redis on ``cpu``; back on every core afterwards."""
    postmaster = postgres.postmaster_pid
    assert postmaster is not None
    assert redis.process is not None
    redis_pid = redis.process.pid

    def pin_all(cpus: set[int]) -> None:
        for pid in [postmaster, *children_of(postmaster), redis_pid]:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(pid, cpus)

    every_core = os.sched_getaffinity(postmaster)
    pin_all({cpu})
    try:
        yield
    finally:
        pin_all(every_core)


class SessionCounter:
    """Sessions ever opened to the bench database, read on one connection of its own (a new
    connection per reading would count itself). Backends report within about a second."""

    def __init__(self, postgres: PostgresServer) -> None:
        self.connection = psycopg.connect(postgres.url("bench"), autocommit=True)

    def __call__(self) -> int:
        time.sleep(1.2)
        self.connection.execute("SELECT pg_stat_clear_snapshot()")
        row = self.connection.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = 'bench'"
        ).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        self.connection.close()


@contextlib.contextmanager
def one_pinned_worker(
    env: dict[str, str], app: str = "heliox.main:app"
) -> Iterator[GunicornServer]:
    with gunicorn({**env, "WEB_CONCURRENCY": "1", "PRELOAD_APP": "false"}, app=app) as server:
        pin(server, SERVER_CPU)
        yield server


def measure_pairs(
    postgres: PostgresServer,
    database_url: str,
    redis: RedisServer,
    seconds: float,
    rounds: int,
    only: Collection[str] | None = None,
) -> list[Pair]:
    """Every comparison of TARGETS, or those named in ``only`` (to try one change quickly)."""
    plain = service_env(database_url, None)
    # Entries must not expire inside the measurements: all of them are filled within the
    # warm-up's seconds, so with the default TTL (60 s) they would expire together in the middle
    # of a round, and that round would measure a burst of database reads, not cache hits.
    cached = service_env(database_url, redis.url, CACHE_TTL_SECONDS="3600")
    bare_env = {**plain, "DATABASE_URL": database_url}
    pairs = {
        key: Pair(key, label, target)
        for key, (label, target) in TARGETS.items()
        if only is None or key in only
    }
    sessions_opened = SessionCounter(postgres)
    with (
        stores_pinned(postgres, redis, WRK_CPU),
        contextlib.closing(sessions_opened),
        one_pinned_worker(plain) as service,
        one_pinned_worker(cached) as with_cache,
        one_pinned_worker({**cached, "AUTH_ENABLED": "false"}) as open_cache,
        one_pinned_worker(bare_env, app="bench.bare_app:app") as bare,
    ):

        def wrk(server: GunicornServer, path: str, mode: str = "get") -> Callable[[], Slice]:
            def go() -> Slice:
                got = run_wrk(
                    server.url + path,
                    connections=CONNECTIONS,
                    seconds=SLICE_SECONDS,
                    mode=mode,
                    cpu=WRK_CPU,
                )
                return Slice(got["requests"], got["seconds"], got["p50_ms"])

            return go

        plans: dict[str, tuple[Callable[[], Slice], Callable[[], Slice]]] = {
            "health": (wrk(service, "/health"), wrk(bare, "/health")),
            "uncached": (wrk(service, "/", "item"), wrk(bare, "/", "item")),
            "cached": (wrk(with_cache, "/", "item"), wrk(with_cache, "/health")),
            "page": (wrk(service, "/", "list"), wrk(bare, "/", "list")),
            "write": (wrk(service, "/", "post"), wrk(bare, "/", "post")),
            "auth": (wrk(with_cache, "/", "item"), wrk(open_cache, "/", "item")),
        }
        # Warm-up: pools filled, lazy imports done, ids cached. Each server writes first: the
        # two cached servers share one Redis, and a server whose reads all hit entries the
        # other filled would open its pool's connections only later, inside a measurement.
        for server in (service, with_cache, open_cache, bare):
            for mode in ("post", "item", "list"):
                run_wrk(
                    server.url + "/", connections=CONNECTIONS, seconds=2, mode=mode, cpu=WRK_CPU
                )
        slices = slices_for(seconds)
        for key, pair in pairs.items():
            ours, theirs = plans[key]
            for index in range(rounds):
                before = sessions_opened()
                mine_runs, base_runs = interleaved(ours, theirs, slices, first_leads=index % 2 == 0)
                pair.sessions.append(sessions_opened() - before)
                mine, base = Side.of(mine_runs), Side.of(base_runs)
                pair.rounds.append((mine.rps, base.rps))
                pair.p50_ms.append((mine.p50_ms, base.p50_ms))
            progress(
                f"data path: {pair.label}: median ratio {pair.ratio:.2f} (target {pair.target})"
                f"; rounds {', '.join(f'{o:,.0f}/{t:,.0f}' for o, t in pair.rounds)} req/s;"
                f" new PostgreSQL sessions {pair.sessions}"
            )
    return list(pairs.values())
