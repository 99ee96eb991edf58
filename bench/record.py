"""What a benchmark run records: the measurements, and the targets they are judged against
(reported MET or MISSED, never adjusted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.harness import Result

TARGET_HEALTH_RATIO = 0.9
TARGET_RSS_MIB = 200.0
TARGET_READY_S = 2.0
# The pool a worker may open (DB_POOL_SIZE + DB_MAX_OVERFLOW defaults) and its wait bound.
POOL_SIZE, POOL_OVERFLOW, POOL_TIMEOUT_S = 5, 10, 5.0
DB_REQUEST_TIMEOUT_S = 15.0
LOCK_S = 9.0
HEALTHY_SCENARIO = "budget: 256 conns, DB healthy"
LOCKED_SCENARIO = f"budget: 256 conns, table locked {LOCK_S:g} s"


@dataclass
class Startup:
    app: str
    to_health_s: list[float] = field(default_factory=list)
    to_ready_s: list[float] = field(default_factory=list)


@dataclass
class MemoryVariant:
    name: str
    env: dict[str, str]
    idle_rss_mib: float = 0.0
    idle_pss_mib: float = 0.0
    master_rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    peak_pss_mib: float = 0.0
    to_ready_s: float = 0.0
    health_rps: float = 0.0
    items_rps: float = 0.0


@dataclass
class Run:
    timestamp: str
    quick: bool
    machine: dict[str, Any]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    duration_s: float = 0.0
    results: list[Result] = field(default_factory=list)
    health_rounds: list[dict[str, float]] = field(default_factory=list)
    items_rounds: list[dict[str, float]] = field(default_factory=list)
    # Tracing on (ratio 1.0) against off on cached reads (bench/tracing_cost.py), the exporter's
    # traffic, and the in-process cost of one request span by where it is made.
    tracing_rounds: list[dict[str, float]] = field(default_factory=list)
    tracing_exports: dict[str, int] = field(default_factory=dict)
    asgi_tracing: list[dict[str, Any]] = field(default_factory=list)
    startup: list[Startup] = field(default_factory=list)
    idle: dict[str, dict[str, float]] = field(default_factory=dict)
    memory_variants: list[MemoryVariant] = field(default_factory=list)
    # bench/datapath.py's comparisons (Pair.as_dict()), newest section.
    datapath: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def find(self, scenario: str, app: str | None = None) -> list[Result]:
        return [r for r in self.results if r.scenario == scenario and (app is None or r.app == app)]
