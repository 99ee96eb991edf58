"""The benchmark's tools: the machine's description, wrk runs measured with the server's memory
and warnings, the service and its stores started as the image runs them, and alternating
(A B, B A, ...) rounds for side-by-side ratios. Used by bench/run.py and bench/datapath.py."""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.procmem import PeakSampler, mib, sample_tree, wait_for_workers
from tests.servers import TEST_API_KEY, GunicornServer, PostgresServer

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WRK_SCRIPT = BENCH_DIR / "wrk.lua"
SEED_ITEMS = 1000
WORKERS = 2


def progress(line: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", flush=True)


# -- machine ----------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_total = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) // 1024
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (
        (wrk.stdout + wrk.stderr).splitlines()[0].strip() if wrk.stdout or wrk.stderr else "?"
    )
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_mib": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version,
        "packages": {
            p: _version(p)
            for p in (
                "gunicorn",
                "uvicorn",
                "uvicorn-worker",
                "fastapi",
                "starlette",
                "pydantic",
                "sqlalchemy",
                "psycopg",
                "redis",
                "uvloop",
                "httptools",
            )
        },
    }


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


# -- wrk ---------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    app: str
    connections: int
    seconds: float
    requests: int = 0
    rps: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    peak_rss_mib: float = 0.0
    peak_pss_mib: float = 0.0
    peak_master_rss_mib: float = 0.0
    peak_worker_rss_mib: float = 0.0
    load1: float = 0.0
    note: str = ""

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @classmethod
    def merged(cls, parts: list[Result]) -> Result:
        """Runs of one scenario as one: requests over the summed seconds, the median of the
        runs' percentiles (their max for the maximum), counts summed, peaks at their peak."""
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        requests = sum(r.requests for r in parts)
        seconds = sum(r.seconds for r in parts)

        def summed(counts: list[dict[str, int]]) -> dict[str, int]:
            total: dict[str, int] = {}
            for count in counts:
                for key, n in count.items():
                    total[key] = total.get(key, 0) + n
            return total

        return cls(
            scenario=first.scenario,
            app=first.app,
            connections=first.connections,
            seconds=seconds,
            requests=requests,
            rps=requests / seconds if seconds else 0.0,
            p50_ms=statistics.median(r.p50_ms for r in parts),
            p90_ms=statistics.median(r.p90_ms for r in parts),
            p99_ms=statistics.median(r.p99_ms for r in parts),
            max_ms=max(r.max_ms for r in parts),
            errors=summed([r.errors for r in parts]),
            statuses=summed([r.statuses for r in parts]),
            peak_rss_mib=max(r.peak_rss_mib for r in parts),
            peak_pss_mib=max(r.peak_pss_mib for r in parts),
            peak_master_rss_mib=max(r.peak_master_rss_mib for r in parts),
            peak_worker_rss_mib=max(r.peak_worker_rss_mib for r in parts),
            load1=first.load1,
            note="; ".join(dict.fromkeys(r.note for r in parts if r.note)),
        )


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    mode: str = "get",
    delay_ms: int = 0,
    count_status: bool = False,
    timeout_s: int = 30,
    cpu: int | None = None,
) -> dict[str, Any]:
    """One wrk run; ``cpu`` pins wrk to that core (the data-path runs keep it off the
    server's)."""
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_IDS": str(SEED_ITEMS)}
    if delay_ms:
        env["BENCH_DELAY_MS"] = str(delay_ms)
    if count_status:
        env["BENCH_STATUS"] = "1"
    if mode != "get":  # the /api/v1 scenarios: the admin key every GunicornServer bootstraps
        env["BENCH_API_KEY"] = TEST_API_KEY
    threads = 1 if connections < 128 else 2
    command = [
        *(["taskset", "-c", str(cpu)] if cpu is not None else []),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    done = subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + timeout_s + 30,
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return parsed
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}):\n{done.stdout}{done.stderr}")


_SERVER_PROBLEM = re.compile(
    r'level=(?:WARNING|ERROR|CRITICAL) logger=\S+ message=("[^"]*"|\S+)([^\n]*)$', re.M
)
_ERROR_TYPE = re.compile(r" error_type=(\S+)")


def server_problems(server: GunicornServer) -> dict[str, int]:
    """Warnings and errors in the server's log, by message and error type."""
    counts: dict[str, int] = {}
    for message, rest in _SERVER_PROBLEM.findall(server.log()):
        error_type = _ERROR_TYPE.search(rest)
        key = message.strip('"') + (f" ({error_type.group(1)})" if error_type else "")
        counts[key] = counts.get(key, 0) + 1
    return counts


def measure(
    scenario: str,
    app: str,
    server: GunicornServer,
    path: str,
    *,
    connections: int,
    seconds: float,
    note: str = "",
    **wrk_args: Any,
) -> Result:
    assert server.process is not None
    load1 = loadavg()[0]
    problems_before = server_problems(server)
    with PeakSampler(server.process.pid) as memory:
        raw = run_wrk(server.url + path, connections=connections, seconds=seconds, **wrk_args)
    time.sleep(0.2)  # the last access and warning lines
    logged = {
        key: n - problems_before.get(key, 0)
        for key, n in server_problems(server).items()
        if n > problems_before.get(key, 0)
    }
    if logged:
        found = "; ".join(f"{n} x {key}" for key, n in sorted(logged.items()))
        note = f"{note}; server logged {found}" if note else f"server logged {found}"
    result = Result(
        scenario=scenario,
        app=app,
        connections=connections,
        seconds=raw["seconds"],
        requests=raw["requests"],
        rps=raw["rps"],
        p50_ms=raw["p50_ms"],
        p90_ms=raw["p90_ms"],
        p99_ms=raw["p99_ms"],
        max_ms=raw["max_ms"],
        errors={k: v for k, v in raw["errors"].items() if v},
        statuses=raw["statuses"],
        peak_rss_mib=mib(memory.peak_rss_sum),
        peak_pss_mib=mib(memory.peak_pss_sum),
        peak_master_rss_mib=mib(memory.peak_master_rss),
        peak_worker_rss_mib=mib(memory.peak_worker_rss),
        load1=load1,
        note=note,
    )
    errors = f", errors {result.errors}" if result.errors else ""
    progress(
        f"{scenario} [{app}] c={connections}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms,"
        f" p99 {result.p99_ms:.1f} ms, max {result.max_ms:.0f} ms{errors};"
        f" peak RSS {result.peak_rss_mib:.0f} MiB, PSS {result.peak_pss_mib:.0f} MiB"
        + (f" ({result.note})" if "server logged" in result.note else "")
    )
    return result


# -- servers -----------------------------------------------------------------------------------


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def service_env(database_url: str, redis_url: str | None, **extra: str) -> dict[str, str]:
    """The image's environment (production) plus what a benchmark needs to be one."""
    env = {
        "ENV": "production",
        "DATABASE_URL": database_url,
        # Load from one client address would hit the 100/min limit at once.
        "RATE_LIMIT_ENABLED": "false",
        # At benchmark rates the default (10000 +- 1000) would restart each worker every few
        # seconds, and that restart (imports, about a CPU-second) would land at random inside
        # the measurement windows. Recycling is part of start-up cost, measured there.
        "MAX_REQUESTS": "0",
        # So that gunicorn can import bench.bare_app (the same for both apps).
        "PYTHONPATH": str(REPO_ROOT),
        **extra,
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


@contextlib.contextmanager
def gunicorn(env: dict[str, str], app: str = "heliox.main:app") -> Iterator[GunicornServer]:
    server = GunicornServer(env, workers=int(env.get("WEB_CONCURRENCY", WORKERS)), app=app)
    try:
        server.start(timeout=60)
        assert server.process is not None
        wait_for_workers(server.process.pid, server.workers)
        yield server
    finally:
        server.close()


def migrate_and_seed(postgres: PostgresServer) -> str:
    url = postgres.create_database("bench")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from heliox_migrate.cli import main; raise SystemExit(main())",
            "upgrade",
        ],
        env={**os.environ, "ENV": "production", "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"migration failed: {done.stderr}")
    postgres.execute(
        "INSERT INTO items (name, description) SELECT 'item ' || g, 'seeded by make bench' "
        f"FROM generate_series(1, {SEED_ITEMS}) g",
        "bench",
    )
    return url


T = TypeVar("T")

# The shared hosts' load changes within seconds (a minute's steal time swings from 0 to 25%):
# one long run a side put such a change on one side only, so A/B comparisons interleave the
# sides in short slices. wrk's shortest run is a second; two keep its start a small share.
SLICE_SECONDS = 2


def slices_for(seconds: float) -> int:
    """How many slices a side gets for ``seconds`` of measuring a round."""
    return max(1, round(seconds / SLICE_SECONDS))


def interleaved(
    first: Callable[[], T], second: Callable[[], T], slices: int, *, first_leads: bool
) -> tuple[list[T], list[T]]:
    """``slices`` runs of each side, alternated (A B A B ..., or B A B A ... when ``first_leads``
    is false) so load swings hit both sides alike; the first side's runs, then the second's."""
    runs: tuple[list[T], list[T]] = ([], [])
    order = ((0, first), (1, second)) if first_leads else ((1, second), (0, first))
    for _ in range(slices):
        for side, run in order:
            runs[side].append(run())
    return runs


def ab_rounds(
    rounds: int,
    first: tuple[str, Callable[[], Result]],
    second: tuple[str, Callable[[], Result]],
    *,
    slices: int = 1,
    keep: Callable[[Result], None] | None = None,
) -> list[dict[str, float]]:
    """A/B rounds of :func:`interleaved` runs, the lead alternating from round to round; a
    side's round is its runs merged (``keep`` receives each, the round's leader first).
    Returns each round's requests/s by side."""
    (first_name, run_first), (second_name, run_second) = first, second
    out = []
    for index in range(rounds):
        leads = index % 2 == 0
        first_runs, second_runs = interleaved(run_first, run_second, slices, first_leads=leads)
        merged = {first_name: Result.merged(first_runs), second_name: Result.merged(second_runs)}
        if keep is not None:
            for name in (first_name, second_name) if leads else (second_name, first_name):
                keep(merged[name])
        out.append({name: result.rps for name, result in merged.items()})
    return out


def idle_memory(server: GunicornServer) -> dict[str, float]:
    assert server.process is not None
    sample = sample_tree(server.process.pid)
    assert sample is not None
    return {
        "rss_sum_mib": mib(sample.rss_sum),
        "pss_sum_mib": mib(sample.pss_sum),
        "master_rss_mib": mib(sample.master_rss),
        "worker_rss_mib": mib(max(sample.workers_rss, default=0)),
    }


@contextlib.contextmanager
def table_locked(postgres: PostgresServer, seconds: float) -> Iterator[threading.Thread]:
    """Hold an exclusive lock on ``items`` for ``seconds``, from a side connection."""

    def hold() -> None:
        postgres.execute(
            f"DO $$ BEGIN LOCK TABLE items IN ACCESS EXCLUSIVE MODE; "
            f"PERFORM pg_sleep({seconds}); END $$",
            "bench",
        )

    thread = threading.Thread(target=hold, daemon=True, name="table-lock")
    thread.start()
    try:
        yield thread
    finally:
        thread.join(seconds + 30)
