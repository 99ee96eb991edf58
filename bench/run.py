"""``make bench``: the service as the image runs it, under wrk, beside a bare FastAPI baseline.

Starts a throwaway PostgreSQL and Redis on 127.0.0.1, migrates and seeds a database, then runs
gunicorn with ``service/gunicorn.conf.py`` (production settings, 2 workers) three ways: the
service with its Redis cache, the service without Redis (cache off), and ``bench.bare_app``
(same command, config and worker class; only the app differs). Every scenario is a bounded
wrk run on loopback while a sampler reads the memory of the master and workers from /proc.
Results: ``bench/results/<UTC timestamp>.md`` (tables, targets MET or MISSED), ``.png``
(latency), ``.json`` (the numbers), and the index ``bench/results/README.md``, newest first.

    python -m bench.run                 # the full run (about 5 minutes)
    python -m bench.run --quick         # shorter runs, for trying the harness (not committed)
    python -m bench.run --no-memory-variants   # skip the gunicorn/glibc memory comparison
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from bench import asgi_tracing, datapath, tracing_cost
from bench.harness import (
    SEED_ITEMS,
    SLICE_SECONDS,
    WORKERS,
    Result,
    ab_rounds,
    gunicorn,
    http_status,
    idle_memory,
    loadavg,
    machine_info,
    measure,
    migrate_and_seed,
    progress,
    run_wrk,
    service_env,
    slices_for,
    table_locked,
)
from bench.index import write_index
from bench.plot import plot
from bench.procmem import PeakSampler, mib, sample_tree
from bench.record import (
    HEALTHY_SCENARIO,
    LOCK_S,
    LOCKED_SCENARIO,
    POOL_OVERFLOW,
    POOL_SIZE,
    TARGET_HEALTH_RATIO,
    TARGET_READY_S,
    TARGET_RSS_MIB,
    MemoryVariant,
    Run,
    Startup,
)
from bench.report import headline, render_markdown, sanitize, to_json, verdict
from tests.otlp import OtlpReceiver
from tests.servers import GunicornServer, PostgresServer, RedisServer, missing_servers

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def measure_startup(env: dict[str, str], app: str, label: str, runs: int) -> Startup:
    """Process start (Popen) to the first 200 on /health and on /health/db."""
    startup = Startup(label)
    for _ in range(runs):
        server = GunicornServer(env, workers=WORKERS, app=app)
        try:
            started = time.monotonic()
            process = server.spawn()
            health_at = ready_at = None
            deadline = started + 60
            while ready_at is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{label} did not start:\n{server.log()}")
                if health_at is None and http_status(server.port, "/health", 0.5) == 200:
                    health_at = time.monotonic() - started
                if health_at is not None:
                    if app != "heliox.main:app":
                        ready_at = health_at  # the bare app has no readiness path
                    elif http_status(server.port, "/health/db", 2.5) == 200:
                        ready_at = time.monotonic() - started
                if ready_at is None:
                    time.sleep(0.005)
            assert health_at is not None
            startup.to_health_s.append(health_at)
            startup.to_ready_s.append(ready_at)
        finally:
            server.close()
    progress(
        f"start-up [{label}]: to /health {', '.join(f'{t:.2f}' for t in startup.to_health_s)} s;"
        f" to /health/db {', '.join(f'{t:.2f}' for t in startup.to_ready_s)} s"
    )
    return startup


def measure_memory_variant(
    variant: MemoryVariant, base_env: dict[str, str], seconds: float
) -> MemoryVariant:
    env = {**base_env, **variant.env}
    started = time.monotonic()
    with gunicorn(env) as server:
        assert server.process is not None
        while http_status(server.port, "/health/db", 2.5) != 200:
            time.sleep(0.01)
        variant.to_ready_s = time.monotonic() - started
        time.sleep(0.5)
        idle = sample_tree(server.process.pid)
        assert idle is not None
        variant.idle_rss_mib, variant.idle_pss_mib = mib(idle.rss_sum), mib(idle.pss_sum)
        variant.master_rss_mib = mib(idle.master_rss)
        with PeakSampler(server.process.pid) as memory:
            health = run_wrk(server.url + "/health", connections=32, seconds=seconds)
            items = run_wrk(server.url + "/", connections=64, seconds=seconds, mode="item")
            run_wrk(server.url + "/", connections=16, seconds=seconds / 2, mode="post")
        variant.peak_rss_mib, variant.peak_pss_mib = (
            mib(memory.peak_rss_sum),
            mib(memory.peak_pss_sum),
        )
        variant.health_rps, variant.items_rps = health["rps"], items["rps"]
    progress(
        f"memory [{variant.name}]: idle RSS {variant.idle_rss_mib:.0f} / PSS"
        f" {variant.idle_pss_mib:.0f} MiB (master {variant.master_rss_mib:.0f}); peak under load"
        f" RSS {variant.peak_rss_mib:.0f} / PSS {variant.peak_pss_mib:.0f} MiB;"
        f" ready in {variant.to_ready_s:.2f} s"
    )
    return variant


def benchmark(args: argparse.Namespace) -> Run:
    quick = args.quick
    seconds = 2.0 if quick else args.seconds
    rounds = 2 if quick else args.rounds
    slices = slices_for(seconds)
    run = Run(
        timestamp=datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        quick=quick,
        machine=machine_info(),
        load_before=loadavg(),
    )
    run.settings = {
        "workers": WORKERS,
        "seconds_per_run": seconds,
        "ab_rounds": rounds,
        "slice_seconds": SLICE_SECONDS,
        "seed_items": SEED_ITEMS,
        "wrk_threads": "1 (2 above 127 connections)",
    }
    began = time.monotonic()
    progress(
        f"machine: {run.machine['cores']} cores, {run.machine['cpu_model']};"
        f" load average {run.load_before[0]:.2f} {run.load_before[1]:.2f} {run.load_before[2]:.2f}"
    )
    with PostgresServer() as postgres, RedisServer() as redis:
        database_url = migrate_and_seed(postgres)
        cached_env = service_env(database_url, redis.url)
        uncached_env = service_env(database_url, None)
        progress(f"PostgreSQL and Redis up; {SEED_ITEMS} items seeded")

        startup_runs = 2 if quick else 3
        run.startup.append(measure_startup(cached_env, "heliox.main:app", "service", startup_runs))
        run.startup.append(measure_startup(cached_env, "bench.bare_app:app", "bare", startup_runs))

        with (
            gunicorn(cached_env) as ours,
            gunicorn(cached_env, app="bench.bare_app:app") as bare,
        ):
            run.idle["service"] = idle_memory(ours)
            run.idle["bare"] = idle_memory(bare)
            # Warm-up: first requests pay for lazy imports and JIT-less caches in both apps.
            run_wrk(ours.url + "/health", connections=32, seconds=1)
            run_wrk(bare.url + "/health", connections=32, seconds=1)

            def health(server: GunicornServer, app: str) -> Callable[[], Result]:
                def go() -> Result:
                    return measure(
                        "/health", app, server, "/health", connections=32, seconds=SLICE_SECONDS
                    )

                return go

            run.health_rounds = ab_rounds(
                rounds,
                ("service", health(ours, "service")),
                ("bare", health(bare, "bare")),
                slices=slices,
                keep=run.results.append,
            )

            run.results.append(
                measure(
                    "/health/db, 20 probes at 1/s each",
                    "service",
                    ours,
                    "/health/db",
                    connections=20,
                    seconds=max(seconds, 8),
                    delay_ms=1000,
                    note="20 connections, each one request a second",
                )
            )
            run.results.append(
                measure(
                    "/health/db, saturation",
                    "service",
                    ours,
                    "/health/db",
                    connections=64,
                    seconds=seconds,
                )
            )

            with gunicorn(uncached_env) as nocache:
                run.idle["service, no Redis"] = idle_memory(nocache)
                # Fill the cache: every id read once (then the cached runs are mostly hits).
                run_wrk(ours.url + "/", connections=32, seconds=2, mode="item")
                run_wrk(nocache.url + "/", connections=32, seconds=1, mode="item")

                def item(server: GunicornServer, app: str) -> Callable[[], Result]:
                    def go() -> Result:
                        return measure(
                            "GET /api/v1/items/{id}",
                            app,
                            server,
                            "/",
                            connections=32,
                            seconds=SLICE_SECONDS,
                            mode="item",
                        )

                    return go

                run.items_rounds = ab_rounds(
                    rounds,
                    ("cache", item(ours, "service, Redis cache")),
                    ("no cache", item(nocache, "service, no Redis")),
                    slices=slices,
                    keep=run.results.append,
                )

                # Tracing on at ratio 1.0 against off, on the same cached reads.
                with (
                    OtlpReceiver(decode=False) as receiver,
                    gunicorn(tracing_cost.tracing_env(cached_env, receiver)) as traced,
                ):
                    run_wrk(traced.url + "/", connections=32, seconds=1, mode="item")
                    run.tracing_rounds = ab_rounds(
                        rounds,
                        ("on", item(traced, "service, Redis cache, tracing 1.0")),
                        ("off", item(ours, "service, Redis cache")),
                        slices=slices,
                        keep=run.results.append,
                    )
                    run.tracing_exports = {"requests": receiver.requests, "bytes": receiver.bytes}

                run.results.append(
                    measure(
                        "GET /api/v1/items?offset&limit=20",
                        "service, Redis cache",
                        ours,
                        "/",
                        connections=32,
                        seconds=seconds,
                        mode="list",
                    )
                )
                run.results.append(
                    measure(
                        "GET /api/v1/items?offset&limit=20",
                        "service, no Redis",
                        nocache,
                        "/",
                        connections=32,
                        seconds=seconds,
                        mode="list",
                    )
                )
                run.results.append(
                    measure(
                        "POST /api/v1/items",
                        "service, Redis cache",
                        ours,
                        "/",
                        connections=16,
                        seconds=seconds,
                        mode="post",
                    )
                )

                # Connection budget: 256 connections on 2 workers x (5 + 10) pooled connections.
                run.results.append(
                    measure(
                        HEALTHY_SCENARIO,
                        "service, no Redis",
                        nocache,
                        "/",
                        connections=256,
                        seconds=max(seconds, 6),
                        mode="item",
                        count_status=True,
                        timeout_s=40,
                        note=f"pool {POOL_SIZE}+{POOL_OVERFLOW} per worker",
                    )
                )
                # The same with the table locked for 9 s: 15 queries per worker hold their
                # connections waiting for the lock (statement_timeout 10 s), the others wait
                # for a connection up to DB_POOL_TIMEOUT (5 s) and get 503.
                # wrk leaves up to 256 requests in flight when it stops; the server still runs
                # them (a handler is not cancelled when its client goes). Let them drain, or
                # they, not this run's requests, would be the ones queued behind the lock.
                time.sleep(3)
                with table_locked(postgres, LOCK_S):
                    time.sleep(0.3)
                    run.results.append(
                        measure(
                            LOCKED_SCENARIO,
                            "service, no Redis",
                            nocache,
                            "/",
                            connections=256,
                            seconds=LOCK_S + 3,
                            mode="item",
                            count_status=True,
                            timeout_s=40,
                            note="DB_POOL_TIMEOUT 5 s, statement_timeout 10 s",
                        )
                    )

        data_seconds = 2.0 if quick else args.datapath_seconds
        data_rounds = 2 if quick else args.datapath_rounds
        pairs = datapath.measure_pairs(postgres, database_url, redis, data_seconds, data_rounds)
        run.datapath = [p.as_dict() for p in pairs]
        run.settings["datapath"] = {
            "seconds": data_seconds,
            "slice_seconds": SLICE_SECONDS,
            "rounds": data_rounds,
        }

        variants_asgi = asgi_tracing.measure(rounds=3 if quick else 7)
        run.asgi_tracing = [asdict(v) for v in variants_asgi]
        for line in asgi_tracing.describe(variants_asgi):
            progress(f"in process: {line}")

        if not args.no_memory_variants:
            variants = [
                MemoryVariant("as configured", {}),
                MemoryVariant("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"}),
                *memory_preload_variants(),
            ]
            for variant in variants:
                run.memory_variants.append(
                    measure_memory_variant(variant, cached_env, 2.0 if quick else 4.0)
                )

    run.load_after = loadavg()
    run.duration_s = time.monotonic() - began
    progress(
        f"done in {run.duration_s:.0f} s; load average {run.load_after[0]:.2f}"
        f" {run.load_after[1]:.2f} {run.load_after[2]:.2f}"
    )
    return run


def memory_preload_variants() -> list[MemoryVariant]:
    """preload_app on and off, whichever gunicorn.conf.py does by default (PRELOAD_APP)."""
    return [
        MemoryVariant("PRELOAD_APP=false", {"PRELOAD_APP": "false"}),
        MemoryVariant("PRELOAD_APP=true", {"PRELOAD_APP": "true"}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs to try the harness")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds for ratios")
    parser.add_argument("--no-memory-variants", action="store_true")
    parser.add_argument(
        "--datapath-seconds", type=float, default=8.0, help="seconds per data-path measurement"
    )
    parser.add_argument(
        "--datapath-rounds",
        type=int,
        default=5,
        help="data-path rounds (medians: 5 ride out a noisy one)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)

    if shutil.which("wrk") is None:
        print(
            "bench: wrk not found (Debian: apt-get install wrk; scripts/install-system-deps.sh)",
            file=sys.stderr,
        )
        return 2
    reason = missing_servers()
    if reason is not None:
        print(f"bench: {reason}", file=sys.stderr)
        return 2

    run = benchmark(args)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_path = args.out / f"{run.timestamp}.png"
    plotted = plot(run, plot_path)
    report = sanitize(render_markdown(run, plot_path.name if plotted else None))
    (args.out / f"{run.timestamp}.md").write_text(report)
    (args.out / f"{run.timestamp}.json").write_text(
        sanitize(json.dumps(to_json(run), indent=1)) + "\n"
    )
    write_index(args.out)
    h = headline(run)
    ratio_ok = verdict(h["health_ratio"] >= TARGET_HEALTH_RATIO)
    rss_ok = verdict(h["peak_rss_mib"] <= TARGET_RSS_MIB)
    ready_ok = verdict(h["to_ready_s"] <= TARGET_READY_S)
    progress(f"tracing on/off, cached item reads: {h['tracing_ratio']:.2f}")
    progress(
        f"/health ratio {h['health_ratio']:.2f} ({ratio_ok}), peak RSS sum"
        f" {h['peak_rss_mib']:.0f} MiB ({rss_ok}), PSS sum {h['peak_pss_mib']:.0f} MiB,"
        f" ready {h['to_ready_s']:.2f} s ({ready_ok})".replace("**", "")
    )
    progress(f"wrote {sanitize(str(args.out / run.timestamp))}.md, .png, .json and README.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
