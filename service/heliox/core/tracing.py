"""Whether tracing is on, what is wrong with its configuration, and starting it.

Off by default, and then free: this module imports no OpenTelemetry, ``heliox.core.otel``
(which does) is never imported, and the middleware's tracing step is one ``is None`` check.

On with ``TRACING_ENABLED=true``, or when ``TRACING_ENABLED`` is unset and the standard
variables name an OTLP endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``); never with ``OTEL_SDK_DISABLED=true``. Everything else comes
from the standard ``OTEL_*`` variables, read by the OpenTelemetry SDK itself: sampler
(``OTEL_TRACES_SAMPLER``, ``OTEL_TRACES_SAMPLER_ARG``), exporter endpoint, headers, timeout and
compression, batching (``OTEL_BSP_*``), service name and resource attributes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from heliox.core.config import Settings
    from heliox.core.otel import Tracing
    from heliox.core.redis import RedisClient

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)
RATIO_SAMPLERS = frozenset({"traceidratio", "parentbased_traceidratio"})
EXPORTERS = frozenset({"otlp", "console", "none"})
# Only OTLP over HTTP (protobuf) is installed: the gRPC exporter would add grpcio to the image.
PROTOCOL = "http/protobuf"


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def tracing_wanted(settings: Settings, environ: Mapping[str, str] = os.environ) -> bool:
    if _true(environ.get("OTEL_SDK_DISABLED")):
        return False
    if settings.tracing_enabled is not None:
        return settings.tracing_enabled
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def tracing_problems(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[str]:
    """One line per OTEL_* value the SDK would only warn about (and then ignore) at run time."""
    if not tracing_wanted(settings, environ):
        return []
    problems = []
    sampler = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if sampler not in SAMPLERS:
        problems.append(
            f"OTEL_TRACES_SAMPLER: unknown sampler (one of {', '.join(sorted(SAMPLERS))})"
        )
    elif sampler in RATIO_SAMPLERS and "OTEL_TRACES_SAMPLER_ARG" in environ:
        arg = environ["OTEL_TRACES_SAMPLER_ARG"]
        try:
            ratio = float(arg)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            problems.append(
                f"OTEL_TRACES_SAMPLER_ARG: a ratio from 0 to 1 for {sampler} (got {arg!r})"
            )
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter not in EXPORTERS:
        problems.append(f"OTEL_TRACES_EXPORTER: one of {', '.join(sorted(EXPORTERS))}")
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = environ.get(name, PROTOCOL).strip().lower()
        if protocol != PROTOCOL:
            problems.append(f"{name}: only {PROTOCOL} is supported (got {protocol!r})")
    return problems


def start_tracing(settings: Settings, engine: Engine, redis: RedisClient | None) -> Tracing:
    """Set up the SDK and instrument the engine and the Redis client (from lifespan, so after
    gunicorn forks: the span processor's thread belongs to the worker)."""
    from heliox.core import otel  # noqa: PLC0415 - OpenTelemetry is imported only when on

    return otel.start(settings, engine, redis)
