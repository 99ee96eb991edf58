"""The benchmark's report: the Markdown page with its targets and tables, its headline numbers
and the JSON file (the plot is bench/plot.py, the index of every run bench/index.py)."""

from __future__ import annotations

import re
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import tracing_cost
from bench.harness import REPO_ROOT, SEED_ITEMS, WORKERS, Result
from bench.record import (
    DB_REQUEST_TIMEOUT_S,
    HEALTHY_SCENARIO,
    LOCK_S,
    LOCKED_SCENARIO,
    POOL_OVERFLOW,
    POOL_SIZE,
    POOL_TIMEOUT_S,
    TARGET_HEALTH_RATIO,
    TARGET_READY_S,
    TARGET_RSS_MIB,
    Run,
)


def verdict(ok: bool) -> str:
    return "**MET**" if ok else "**MISSED**"


def headline(run: Run) -> dict[str, Any]:
    ratios = [r["service"] / r["bare"] for r in run.health_rounds if r.get("bare")]
    cache_ratios = [r["cache"] / r["no cache"] for r in run.items_rounds if r.get("no cache")]
    # The memory target is the defaults'; tracing (opt-in) reports its own peak.
    service_results = [
        r for r in run.results if r.app.startswith("service") and "tracing" not in r.app
    ]
    peak_rss = max([r.peak_rss_mib for r in service_results], default=0.0)
    peak_pss = max([r.peak_pss_mib for r in service_results], default=0.0)
    service_start = next((s for s in run.startup if s.app == "service"), None)
    ready = statistics.median(service_start.to_ready_s) if service_start else 0.0
    health = statistics.median(service_start.to_health_s) if service_start else 0.0
    return {
        "health_ratio": statistics.median(ratios) if ratios else 0.0,
        "health_ratios": ratios,
        "items_cache_ratio": statistics.median(cache_ratios) if cache_ratios else 0.0,
        "tracing_ratio": tracing_cost.ratio(run.tracing_rounds),
        "peak_rss_mib": peak_rss,
        "peak_pss_mib": peak_pss,
        "to_health_s": health,
        "to_ready_s": ready,
        "health_rps": statistics.median([r["service"] for r in run.health_rounds] or [0.0]),
        "bare_rps": statistics.median([r["bare"] for r in run.health_rounds] or [0.0]),
        "datapath": {p["key"]: round(p["ratio"], 3) for p in run.datapath},
    }


def datapath_markdown(pairs: list[dict[str, Any]], settings: dict[str, Any]) -> list[str]:
    lines = [
        "## Data path (1 pinned worker, side by side)",
        "",
        "One worker pinned to core 0, wrk pinned to core 1 (`-t1 -c32`), "
        f"{settings.get('seconds', 0):g} s a side per round in slices of "
        f"{settings.get('slice_seconds', 0):g} s alternated (A B A B ..., then B A B A ...), "
        f"{settings.get('rounds', 0)} rounds, median of the rounds' ratios; p50 is the median of "
        "a side's slices; `new sessions` counts the PostgreSQL sessions opened during each round, "
        "both sides together (bench/datapath.py).",
        "",
        "| comparison | median ratio | target | verdict | rounds (ours / baseline req/s) | p50 ms "
        "(ours / baseline) | new sessions |",
        "| --- | ---: | ---: | --- | --- | --- | --- |",
    ]
    for p in pairs:
        lines.append(
            f"| {p['label']} | **{p['ratio']:.2f}** | {p['target']:g} | {verdict(p['met'])} | "
            + ", ".join(f"{o:,.0f} / {t:,.0f}" for o, t in p["rounds"])
            + " | "
            + ", ".join(f"{o:.1f} / {t:.1f}" for o, t in p["p50_ms"])
            + f" | {', '.join(str(n) for n in p['new_sessions'])} |"
        )
    return [*lines, ""]


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _statuses(result: Result) -> str:
    """Counted statuses when the run counted them, else wrk's non-2xx total; then wrk's errors."""
    if result.statuses:
        parts = [f"{code}: {n}" for code, n in sorted(result.statuses.items())]
    else:
        parts = [f"non-2xx: {result.errors['status']}"] if result.errors.get("status") else []
    parts += [f"{kind}: {n}" for kind, n in sorted(result.errors.items()) if kind != "status"]
    return ", ".join(parts) if parts else "0"


def render_markdown(run: Run, plot_name: str | None) -> str:
    h = headline(run)
    m = run.machine
    lines = [
        f"# Benchmark run {run.timestamp}",
        "",
        "`make bench` (`python -m bench.run`"
        + (" --quick" if run.quick else "")
        + "): gunicorn with `service/gunicorn.conf.py`, "
        f"{WORKERS} uvicorn workers, `ENV=production`, PostgreSQL and Redis on 127.0.0.1; wrk "
        "on loopback. Same command, config and worker class for the bare FastAPI baseline "
        "(`bench/bare_app.py`).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cores']} cores ({m['cores_usable']} usable), {m['cpu_model']}; "
        f"memory {m['memory_mib']:,} MiB; kernel {m['kernel']}",
        f"- Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + f"; {m['wrk']}",
        f"- Load average before: {run.load_before[0]:.2f} / {run.load_before[1]:.2f} / "
        f"{run.load_before[2]:.2f} (1/5/15 min); after: {run.load_after[0]:.2f} / "
        f"{run.load_after[1]:.2f} / {run.load_after[2]:.2f} (the run itself adds about 3 to 4: "
        "two workers, wrk and PostgreSQL). The machine is shared: other work competes for the "
        "same cores, so compare the side-by-side ratios, not absolute requests/s across runs.",
        f"- Run took {run.duration_s:.0f} s; {run.settings['seconds_per_run']:g} s per "
        f"measurement, {run.settings['ab_rounds']} rounds for the ratios, each side's round "
        f"in slices of {run.settings.get('slice_seconds', run.settings['seconds_per_run']):g} s "
        "alternated with the other side's (A B A B ..., then B A B A ...; its scenario row "
        "merges them).",
        "",
        "## Targets",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        f"| `/health` requests/s >= {TARGET_HEALTH_RATIO} x bare FastAPI | median ratio "
        f"**{h['health_ratio']:.2f}** ({h['health_rps']:,.0f} vs {h['bare_rps']:,.0f} req/s; "
        f"rounds: {', '.join(f'{x:.2f}' for x in h['health_ratios'])}) | "
        f"{verdict(h['health_ratio'] >= TARGET_HEALTH_RATIO)} |",
        f"| RSS of master + {WORKERS} workers <= {TARGET_RSS_MIB:.0f} MiB (peak over every "
        f"service scenario) | **{h['peak_rss_mib']:.0f} MiB** RSS sum (PSS sum "
        f"{h['peak_pss_mib']:.0f} MiB) | {verdict(h['peak_rss_mib'] <= TARGET_RSS_MIB)} |",
        f"| process start to ready (first 200 on `/health/db`) <= {TARGET_READY_S:g} s | median "
        f"**{h['to_ready_s']:.2f} s** (first 200 on `/health`: {h['to_health_s']:.2f} s) | "
        f"{verdict(h['to_ready_s'] <= TARGET_READY_S)} |",
        "",
        f"`GET /api/v1/items/{{id}}` with the Redis cache vs without: median ratio "
        f"**{h['items_cache_ratio']:.2f}** (rounds: "
        + ", ".join(f"{r['cache']:,.0f} vs {r['no cache']:,.0f}" for r in run.items_rounds)
        + " req/s).",
        "",
        *tracing_cost.markdown(run, run.asgi_tracing),
        "## Scenarios",
        "",
        "| scenario | app | conns | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx / errors "
        "| peak RSS sum MiB | peak PSS sum MiB | load |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in run.results:
        lines.append(
            f"| {r.scenario} | {r.app} | {r.connections} | {r.rps:,.0f} | {_ms(r.p50_ms)} | "
            f"{_ms(r.p90_ms)} | {_ms(r.p99_ms)} | {_ms(r.max_ms)} | {_statuses(r)} | "
            f"{r.peak_rss_mib:.0f} | {r.peak_pss_mib:.0f} | {r.load1:.1f} |"
        )
    lines += [
        "",
        "Errors are wrk's counters (connect, read, write, timeout) and non-2xx responses; "
        "the budget rows count every status. `load` is the 1-minute load average when the "
        "measurement started.",
        "",
    ]
    noted = [r for r in run.results if r.note]
    if noted:
        lines += [
            "Notes (what the server logged as warnings or errors during a run, and setup):",
            "",
        ]
        lines += [f"- {r.scenario} [{r.app}]: {r.note}" for r in noted]
        lines.append("")
    lines += [
        "### Connection budget",
        "",
    ]
    for r in run.find(HEALTHY_SCENARIO) + run.find(LOCKED_SCENARIO):
        others = {c: n for c, n in r.statuses.items() if c not in ("200", "503")}
        bound = POOL_TIMEOUT_S if "healthy" in r.scenario else DB_REQUEST_TIMEOUT_S
        ok = not others and not r.errors.get("timeout") and r.max_ms / 1000 <= bound + 1
        lines.append(
            f"- {r.scenario}: {r.requests:,} responses ({_statuses(r)}), max latency "
            f"{r.max_ms / 1000:.2f} s against a bound of {bound:g} s "
            f"({'pool timeout' if bound == POOL_TIMEOUT_S else 'DB_REQUEST_TIMEOUT'}): "
            f"{'no hang, only 200/503' if ok else 'OUT OF BOUNDS'}."
        )
    lines += [
        "",
        f"{WORKERS} workers x ({POOL_SIZE} + {POOL_OVERFLOW}) = "
        f"{WORKERS * (POOL_SIZE + POOL_OVERFLOW)} connections at most; each worker runs "
        "database work on at most 40 threads (anyio's default), so the rest queue for a "
        "thread, then for a connection (DB_POOL_TIMEOUT 5 s), all under DB_REQUEST_TIMEOUT "
        f"(15 s). With the table locked for {LOCK_S:g} s, the queries that hold a connection "
        "wait for the lock (under statement_timeout, 10 s) and then answer 200; the requests "
        "waiting for a connection get 503 when the pool timeout (5 s) expires: 503s mean the "
        "budget refused work quickly instead of queueing it without bound.",
        "",
        "## Start-up",
        "",
        "| app | runs | to first 200 on /health (s) | to first 200 on /health/db (s) |",
        "| --- | ---: | --- | --- |",
    ]
    for s in run.startup:
        lines.append(
            f"| {s.app} | {len(s.to_health_s)} | "
            + ", ".join(f"{t:.2f}" for t in s.to_health_s)
            + " | "
            + (", ".join(f"{t:.2f}" for t in s.to_ready_s) if s.app == "service" else "n/a")
            + " |"
        )
    lines += [
        "",
        f"From `Popen` of gunicorn to the first 200, polling every 5 ms; with {WORKERS} workers.",
        "",
        "## Memory",
        "",
        "Idle, after start:",
        "",
        "| app | RSS sum MiB | PSS sum MiB | master RSS MiB | largest worker RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for app, figures in run.idle.items():
        lines.append(
            f"| {app} | {figures['rss_sum_mib']:.0f} | {figures['pss_sum_mib']:.0f} | "
            f"{figures['master_rss_mib']:.0f} | {figures['worker_rss_mib']:.0f} |"
        )
    lines += [
        "",
        "RSS counts every page a process has resident, so adding the RSS of a master and its "
        "forked workers counts each shared page (shared libraries, pages inherited at fork "
        "and not written since) once per process. A pod's memory limit is enforced on its "
        "cgroup, which is charged each page once. PSS (`Pss:` in `/proc/<pid>/smaps_rollup`) "
        "splits each shared page between the processes sharing it, so the PSS sum of the "
        "tree is close to what the pod is charged (page tables, socket buffers and page "
        "cache the processes read but do not map come on top). Sampled every 0.25 s during "
        "each measurement; peaks of the sums.",
    ]
    if run.memory_variants:
        lines += [
            "",
            "### gunicorn and glibc settings compared",
            "",
            "Each variant: a fresh start, then `/health`, `GET /api/v1/items/{id}` and "
            "`POST /api/v1/items` under load (cache on).",
            "",
            "| variant | ready s | idle RSS sum | idle PSS sum | master RSS | peak RSS sum | "
            "peak PSS sum | /health req/s | items req/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for v in run.memory_variants:
            lines.append(
                f"| {v.name} | {v.to_ready_s:.2f} | {v.idle_rss_mib:.0f} | "
                f"{v.idle_pss_mib:.0f} | {v.master_rss_mib:.0f} | {v.peak_rss_mib:.0f} | "
                f"{v.peak_pss_mib:.0f} | {v.health_rps:,.0f} | {v.items_rps:,.0f} |"
            )
        lines += ["", "Memory in MiB. Throughput here is one short run each: noise."]
    if run.datapath:
        settings = run.settings.get("datapath", {})
        lines += ["", *datapath_markdown(run.datapath, settings)]
    if plot_name:
        lines += ["", "## Latency", "", f"![latency percentiles]({plot_name})"]
    lines += [
        "",
        "## Settings",
        "",
        "Service environment: `ENV=production`, `DATABASE_URL` and `REDIS_URL` (the no-Redis "
        "app has none), `RATE_LIMIT_ENABLED=false` (all load comes from one address), "
        "`MAX_REQUESTS=0` (no worker recycling inside measurement windows), everything else "
        "at its default (`ACCESS_LOG=true`: an access line per API request). "
        f"{SEED_ITEMS} seeded items; ids and offsets drawn at random by `bench/wrk.lua`.",
        "",
    ]
    return "\n".join(lines)


def sanitize(text: str) -> str:
    """No absolute paths of this machine in committed results."""
    for prefix, name in ((str(REPO_ROOT), "<repo>"), (str(Path.home()), "~")):
        if prefix and prefix != "/":
            text = text.replace(prefix, name)
    return re.sub(r"/tmp/heliox-[\w-]+", "<tmp>", text)


def to_json(run: Run) -> dict[str, Any]:
    data = asdict(run)
    data["headline"] = headline(run)
    return data
