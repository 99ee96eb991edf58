"""The benchmark's latency plot: p50, p90 and p99 per scenario and app (matplotlib, if present)."""

from __future__ import annotations

from pathlib import Path

from bench.harness import Result, progress
from bench.record import Run


def plot(run: Run, path: Path) -> bool:
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        progress("matplotlib not installed: no plot")
        return False
    # One bar group per scenario and app (the A/B rounds: their median round).
    grouped: dict[tuple[str, str], list[Result]] = {}
    for r in run.results:
        grouped.setdefault((r.scenario, r.app), []).append(r)
    labels, p50, p90, p99 = [], [], [], []
    for (scenario, app), results in grouped.items():
        chosen = sorted(results, key=lambda r: r.rps)[len(results) // 2]
        labels.append(f"{scenario}\n[{app}]")
        p50.append(max(chosen.p50_ms, 0.01))
        p90.append(max(chosen.p90_ms, 0.01))
        p99.append(max(chosen.p99_ms, 0.01))
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(labels) + 1.8))
    y = list(range(len(labels)))
    height = 0.27
    ax.barh([i - height for i in y], p50, height, label="p50")
    ax.barh(y, p90, height, label="p90")
    ax.barh([i + height for i in y], p99, height, label="p99")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)")
    ax.set_title(f"Heliox latency, run {run.timestamp} ({run.machine['cores']} cores)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
