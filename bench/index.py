"""bench/results/README.md: the index of every recorded run, newest first, from their JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.harness import WORKERS
from bench.record import TARGET_HEALTH_RATIO, TARGET_READY_S, TARGET_RSS_MIB


def _datapath_cell(ratios: dict[str, float] | None) -> str:
    if not ratios:
        return "-"
    keys = ("health", "uncached", "cached", "page", "write", "auth")
    return " / ".join(f"{ratios[k]:.2f}" if k in ratios else "-" for k in keys)


def _tracing(headline: dict[str, Any]) -> str:
    """Runs from before tracing existed have no figure."""
    value = headline.get("tracing_ratio")
    return f"{value:.2f}" if value else "n/a"


def write_index(results_dir: Path) -> None:
    """bench/results/README.md: every recorded run, newest first, with its headline numbers."""
    rows = []
    for path in sorted(results_dir.glob("*.json"), reverse=True):
        data = json.loads(path.read_text())
        h = data["headline"]
        rows.append(
            f"| [{data['timestamp']}]({path.stem}.md){' (quick)' if data.get('quick') else ''} | "
            f"{h['health_ratio']:.2f} ({h['health_rps']:,.0f} / {h['bare_rps']:,.0f}) | "
            f"{h['items_cache_ratio']:.2f} | {_tracing(h)} | {h['peak_rss_mib']:.0f} | "
            f"{h['peak_pss_mib']:.0f} | "
            f"{h['to_ready_s']:.2f} | {_datapath_cell(h.get('datapath'))} | "
            f"{data['load_before'][0]:.2f} |"
        )
    text = "\n".join(
        [
            "# Benchmark results",
            "",
            "Written by `make bench` (`python -m bench.run`); one Markdown report, latency plot "
            "and JSON file per run. Newest first, so a regression shows as a change down a "
            'column. How the numbers are taken: docs/ARCHITECTURE.md, "Benchmarks and '
            'reliability".',
            "",
            f"Targets: `/health` >= {TARGET_HEALTH_RATIO} x the bare FastAPI baseline; RSS of "
            f"master + {WORKERS} workers <= {TARGET_RSS_MIB:.0f} MiB; start to ready <= "
            f"{TARGET_READY_S:g} s.",
            "",
            "| run | /health ratio (service / bare req/s) | items cache ratio | tracing on/off "
            "(cached reads) | peak RSS sum MiB | peak PSS sum MiB | start to ready s | data path "
            "ratios (health, uncached, cached, page, write, keyed/open) | load before |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
            *rows,
            "",
        ]
    )
    (results_dir / "README.md").write_text(text)
