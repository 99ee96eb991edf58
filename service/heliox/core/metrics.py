"""Prometheus metrics: requests by route template and status, latency, DB pool figures, cache
reads, rate-limit refusals and Redis errors.

Under gunicorn, PROMETHEUS_MULTIPROC_DIR is set (gunicorn.conf.py) before any worker imports
prometheus_client, so every worker writes its samples to files there and a scrape of any
worker aggregates them all; dead workers are marked in gunicorn's ``child_exit`` hook.
Every worker writes its request samples and its pool figures once a flush interval (lifespan's
flusher) and when it answers a scrape, so a scrape answered by any worker is at most that old
for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"

REQUESTS = Counter(
    "heliox_http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "heliox_http_request_duration_seconds",
    "HTTP request latency by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
# livesum: the pool figures of all live workers add up to the pod's; a dead worker's file is
# removed by child_exit (gunicorn.conf.py), so its last figures are not counted.
POOL_GAUGES = {
    name: Gauge(f"heliox_db_pool_{name}", help_text, multiprocess_mode="livesum")
    for name, help_text in (
        ("size", "Configured pool size (persistent connections)."),
        ("checked_out", "Connections in use."),
        ("checked_in", "Idle connections in the pool."),
        ("overflow", "Connections open beyond the pool size."),
        ("limit", "Most connections the pool opens (pool size + max overflow)."),
    )
}
CACHE_READS = Counter(
    "heliox_cache_reads_total",
    "Cached reads by result: hit; miss (read from the database, then cached); bypass (Redis "
    "unavailable, or an invalidation of this worker pending: read from the database).",
    ["result"],
)
RATE_LIMIT_REFUSALS = Counter(
    "heliox_rate_limit_refusals_total",
    "Requests refused by the rate limit: over_limit (429), failed_credentials (429, the "
    "client address over its failed-credentials budget), limiter_unavailable (503, Redis down "
    "with RATE_LIMIT_FAIL_OPEN=false).",
    ["reason"],
)
RATE_LIMIT_UNCHECKED = Counter(
    "heliox_rate_limit_unchecked_total",
    "Requests let through without a rate-limit check: Redis down, RATE_LIMIT_FAIL_OPEN=true.",
)
REDIS_ERRORS = Counter(
    "heliox_redis_errors_total",
    "Redis calls that failed (error or timeout). While a worker's breaker is open its calls are "
    "skipped, not counted: about one error per REDIS_BACKOFF_SECONDS per busy worker.",
)

CONTENT_TYPE = CONTENT_TYPE_LATEST


# How often a worker writes its batched request samples to the shared metric cells.
FLUSH_INTERVAL_SECONDS = 1.0


class _Series:
    """One label set's samples, batched in plain Python numbers and written to the metric's
    cells by :func:`flush`.

    Every request lands here. In multiprocess mode each cell update is a locked write to a
    memory-mapped file, and the three per request (count, sum, bucket) cost about as much as
    the rest of our middleware together, so requests only add to local numbers and the cells
    get the totals once a second (lifespan's flusher), before a scrape of this worker, and at
    shutdown. A scrape can therefore miss the last second of another worker's requests; a
    worker that is killed outright loses at most that second. The cells written are the ones
    ``inc()``/``observe()`` write; the unit tests read the exposition back, so a
    prometheus_client change that broke this would fail them.
    """

    __slots__ = ("bounds", "buckets", "count", "pending", "pending_buckets", "total")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        counter: Any = REQUESTS.labels(*labels)
        histogram: Any = LATENCY.labels(*labels)
        self.count = counter._value
        self.total = histogram._sum
        self.buckets = histogram._buckets
        self.bounds = histogram._upper_bounds
        self.pending = [0, 0.0]  # requests, seconds
        self.pending_buckets = [0] * len(self.buckets)

    def observe(self, seconds: float) -> None:
        pending = self.pending
        pending[0] += 1
        pending[1] += seconds
        self.pending_buckets[bisect_left(self.bounds, seconds)] += 1

    def flush(self) -> None:
        requests, seconds = self.pending
        if not requests:
            return
        buckets = self.pending_buckets
        self.pending = [0, 0.0]
        self.pending_buckets = [0] * len(buckets)
        self.count.inc(requests)
        self.total.inc(seconds)
        for cell, n in zip(self.buckets, buckets, strict=True):
            if n:
                cell.inc(n)


_series: dict[tuple[str, str, int], _Series] = {}


class Tally:
    """Increments of one counter (and label values), batched like the request samples: a
    request adds to a plain int, the flush writes the total."""

    __slots__ = ("counter", "labels", "pending")

    def __init__(self, counter: Counter, *labels: str) -> None:
        self.counter = counter
        self.labels = labels
        self.pending = 0
        _tallies.append(self)

    def add(self) -> None:
        self.pending += 1

    def flush(self) -> None:
        if self.pending:
            count, self.pending = self.pending, 0
            (self.counter.labels(*self.labels) if self.labels else self.counter).inc(count)


_tallies: list[Tally] = []
CACHE_HIT = Tally(CACHE_READS, "hit")
CACHE_MISS = Tally(CACHE_READS, "miss")
CACHE_BYPASS = Tally(CACHE_READS, "bypass")
RATE_LIMITED = Tally(RATE_LIMIT_REFUSALS, "over_limit")
LIMITER_UNAVAILABLE = Tally(RATE_LIMIT_REFUSALS, "limiter_unavailable")
# An address over its failed-credentials budget (core/auth/gate.py): refused whatever it sends.
FAILED_CREDENTIALS_LIMITED = Tally(RATE_LIMIT_REFUSALS, "failed_credentials")
RATE_LIMIT_SKIPPED = Tally(RATE_LIMIT_UNCHECKED)
REDIS_FAILED = Tally(REDIS_ERRORS)


def observe(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    series = _series.get(key)
    if series is None:
        if method not in _METHODS:
            method = "OTHER"  # arbitrary methods must not mint new label values
            key = (method, route, status)
        series = _series.get(key) or _Series((method, route, str(status)))
        _series[key] = series
    series.observe(seconds)


def flush() -> None:
    """Write every batched sample to the metric cells (on the event loop, as observe runs)."""
    for series in list(_series.values()):
        series.flush()
    for tally in _tallies:
        tally.flush()


async def flush_periodically(
    interval: float = FLUSH_INTERVAL_SECONDS, *, sample: Callable[[], None] | None = None
) -> None:
    """Flush the batched samples and, with ``sample``, set this worker's gauges (pool figures):
    each worker's, not only the scraped one's, must be current when any of them is scraped."""
    while True:
        await asyncio.sleep(interval)
        if sample is not None:
            sample()
        flush()


def set_pool_figures(figures: Mapping[str, int]) -> None:
    for name, value in figures.items():
        gauge = POOL_GAUGES.get(name)
        if gauge is not None:
            gauge.set(value)


def render() -> bytes:
    flush()  # this worker's own samples are current; the others' at most a flush interval old
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    registry.register(SizedFilesCollector(None, path=directory))
    return generate_latest(registry)


class SizedFilesCollector(MultiProcessCollector):
    """prometheus_client's collector of every process's files, minus the empty ones.

    A process creates its file, then sizes it (prometheus_client's MmapedDict): a scrape that
    lists the file in between finds 0 bytes, and the library's reader fails on it (the whole
    scrape answered 500). An empty file holds no samples yet, so it is left out."""

    def __init__(self, registry: CollectorRegistry | None, path: str) -> None:
        super().__init__(registry, path=path)  # type: ignore[no-untyped-call]
        self.directory = path

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in glob.glob(os.path.join(self.directory, "*.db")):
            with contextlib.suppress(FileNotFoundError):  # a dead worker's, removed meanwhile
                if os.path.getsize(path) > 0:
                    files.append(path)
        return self.merge(files, accumulate=True)  # type: ignore[no-any-return, no-untyped-call]
