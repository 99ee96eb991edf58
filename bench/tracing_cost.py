"""The benchmark's tracing scenario: what tracing costs, end to end and per layer.

End to end: cached ``GET /api/v1/items/{id}`` on the service with tracing off (the default)
and on at ratio 1.0 (every request a trace: the request span, the rate limit's and the cache's
Redis commands beneath it), alternated like the other A/B scenarios. The spans go over OTLP/HTTP
to a receiver in this process that counts them without decoding (a collector's work is not the
service's cost). In process: ``bench.asgi_tracing`` (the span made by our middleware against
the OpenTelemetry ASGI middleware and FastAPI's built-in telemetry).
"""

from __future__ import annotations

import statistics
from typing import Any

from tests.otlp import OtlpReceiver


def tracing_env(base: dict[str, str], receiver: OtlpReceiver) -> dict[str, str]:
    return {
        **base,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
    }


def ratio(rounds: list[dict[str, float]]) -> float:
    ratios = [r["on"] / r["off"] for r in rounds if r.get("off")]
    return statistics.median(ratios) if ratios else 0.0


def markdown(run: Any, asgi: list[dict[str, Any]]) -> list[str]:
    """The report's tracing section (``run`` is bench.run's Run)."""
    rounds: list[dict[str, float]] = run.tracing_rounds
    if not rounds:
        return []
    exports: dict[str, int] = run.tracing_exports
    traced = [r for r in run.results if "tracing" in r.app]
    untraced = [r for r in run.results if r.scenario == traced[0].scenario] if traced else []
    lines = [
        "## Tracing",
        "",
        "Cached `GET /api/v1/items/{id}`, tracing off (the default) against on at ratio 1.0 "
        "(`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, `OTEL_TRACES_SAMPLER_ARG=1.0`: every "
        "request a trace of a request span and its Redis commands), alternated; spans sent "
        "over OTLP/HTTP to a receiver in the harness that counts them without decoding: "
        f"median ratio **{ratio(rounds):.2f}** (rounds: "
        + ", ".join(f"{r['on']:,.0f} vs {r['off']:,.0f}" for r in rounds)
        + f" req/s; {exports.get('requests', 0):,} exports, "
        f"{exports.get('bytes', 0) / 1e6:,.1f} MB received).",
    ]
    if traced:
        peak = max(r.peak_rss_mib for r in traced)
        base = max(r.peak_rss_mib for r in untraced if "tracing" not in r.app)
        lines.append(
            f"Peak RSS sum with tracing on: {peak:.0f} MiB, against {base:.0f} MiB off in the "
            "same scenario (the SDK, the exporter and its HTTP client are imported only when "
            "tracing is on)."
        )
    lines.append("")
    if asgi:
        best_of = len(asgi[0].get("rounds_us") or [])
        lines += [
            f"In process (the ASGI app called directly, best of {best_of} rounds; "
            "`bench/asgi_tracing.py`): the cost of one request span by where it is made.",
            "",
            "| variant | us per request | difference |",
            "| --- | ---: | ---: |",
        ]
        base_us = 0.0
        for row in asgi:
            if row["name"].endswith("tracing off"):
                base_us = row["us_per_request"]
                difference = ""
            else:
                difference = f"{row['us_per_request'] - base_us:+.1f}"
            lines.append(f"| {row['name']} | {row['us_per_request']:.1f} | {difference} |")
        lines.append("")
    return lines
