"""What a request span costs per request, in process, by where it is made.

The ASGI app is called directly (no server, no sockets), so the figures are the layers' own
CPU cost per request, best of several rounds: the service with tracing off; on, with the span
made by HelioxMiddleware's tracing step (what the service does); off, but wrapped in the
OpenTelemetry ASGI middleware (opentelemetry-instrumentation-asgi, a second layer); and off,
but with FastAPI's built-in telemetry making the span. Every span goes to the same kind of
provider (always sampled, batched, exported to nothing), so only the instrumentation differs.
Route: ``GET /`` (service info: no database, not excluded from tracing).

    python -m bench.asgi_tracing              # prints one line per variant
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from heliox.app import create_app
from heliox.core import otel
from heliox.core.config import Settings

ASGI = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _provider() -> TracerProvider:
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(_Discard()))
    return provider


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _call(app: ASGI, path: str = "/") -> None:
    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(path), _receive, send)
    assert status == 200, status


@dataclass
class Variant:
    name: str
    us_per_request: float = 0.0
    rounds_us: list[float] | None = None


async def _time(app: ASGI, path: str, calls: int, rounds: int) -> list[float]:
    for _ in range(200):  # warm: lazy imports, route caches
        await _call(app, path)
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            await _call(app, path)
        out.append((time.perf_counter() - started) / calls * 1e6)
    return out


async def _measure(calls: int, rounds: int) -> list[Variant]:
    database = Path(tempfile.mkdtemp(prefix="heliox-asgi-")) / "bench.db"
    settings = Settings(
        database_url=f"sqlite:///{database}", env="production", access_log=False
    ).model_copy(update={"database_url": f"sqlite+pysqlite:///{database}"})
    variants: list[tuple[str, Callable[[], Awaitable[tuple[ASGI, Callable[[], Awaitable[None]]]]]]]

    async def plain(tracing: bool) -> tuple[ASGI, Callable[[], Awaitable[None]]]:
        app = create_app(settings.model_copy(update={"tracing_enabled": tracing}))
        resources = app.state.resources
        await resources.start()
        return app, resources.stop

    async def off() -> tuple[ASGI, Callable[[], Awaitable[None]]]:
        return await plain(False)

    async def ours() -> tuple[ASGI, Callable[[], Awaitable[None]]]:
        # The service's own provider (sampler from OTEL_TRACES_SAMPLER: unset, every new trace
        # is kept), its spans batched to the same exporter of nothing.
        exporter = otel._exporter
        otel._exporter = _Discard  # type: ignore[assignment]
        try:
            return await plain(True)
        finally:
            otel._exporter = exporter  # type: ignore[method-assign]

    async def contrib_asgi() -> tuple[ASGI, Callable[[], Awaitable[None]]]:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware  # noqa: PLC0415

        app, stop = await plain(False)
        wrapped = OpenTelemetryMiddleware(app, tracer_provider=_provider())
        return wrapped, stop

    async def fastapi_native() -> tuple[ASGI, Callable[[], Awaitable[None]]]:
        from fastapi.telemetry._asgi import NativeTelemetry  # noqa: PLC0415

        app, stop = await plain(False)
        config = {
            **app._telemetry,
            "tracing": True,
            "tracer_provider": _provider(),
            "operation_spans": False,
        }
        app._telemetry = config  # type: ignore[assignment]
        app._native_telemetry = NativeTelemetry(config)  # type: ignore[arg-type]
        return app, stop

    variants = [
        ("GET /, tracing off", "/", off),
        ("GET /, tracing on: HelioxMiddleware's step (ours)", "/", ours),
        ("GET /, tracing off + OpenTelemetry ASGI middleware", "/", contrib_asgi),
        ("GET /, tracing off + FastAPI's built-in telemetry", "/", fastapi_native),
        ("GET /health, tracing off", "/health", off),
        ("GET /health, tracing on (excluded path: no span)", "/health", ours),
    ]
    results = []
    for name, path, make in variants:
        app, stop = await make()
        try:
            timings = await _time(app, path, calls, rounds)
        finally:
            await stop()
        results.append(Variant(name, min(timings), timings))
    return results


def measure(calls: int = 3000, rounds: int = 7) -> list[Variant]:
    return asyncio.run(_measure(calls, rounds))


def describe(variants: list[Variant]) -> list[str]:
    """One line each, with the difference to the tracing-off variant of the same path."""
    lines = []
    base = 0.0
    for v in variants:
        first_of_path = v.name.endswith("tracing off")
        if first_of_path:
            base = v.us_per_request
        extra = "" if first_of_path else f" ({v.us_per_request - base:+.1f} us)"
        median = statistics.median(v.rounds_us or [0])
        lines.append(f"{v.name}: {v.us_per_request:.1f} us/request{extra}; median {median:.1f}")
    return lines


if __name__ == "__main__":
    for line in describe(measure()):
        print(line)
