"""Tracing's setup and teardown; imported only when tracing is on (core/tracing.py).

The spans: one SERVER span per request (``otel_request.py``, the middleware's step), a CLIENT
span per database statement (``otel_db.py``, our engine's events) and per Redis command (the
OpenTelemetry redis instrumentation, on our client only; the cache's pipelined read script,
which bypasses redis-py, gets its span from the instrumentation's own code: _pipe_tracer).
Only requests start traces: a database or Redis call outside one (the cache's retry loop, the
readiness check of an excluded path) has no parent and is dropped (:class:`RequestsOnly`), or
every background call would be a trace of its own. The provider is ours, not the global one: a
global provider would also switch on FastAPI's built-in telemetry (a second request span), and
tests run several apps in one process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.to_thread
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.util.types import Attributes

from heliox import __version__
from heliox.core.otel_db import StatementSpans
from heliox.core.otel_request import RequestTracer
from heliox.core.tracing import ENDPOINT_VARIABLES

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import TraceState
    from sqlalchemy import Engine

    from heliox.core.config import Settings
    from heliox.core.redis import PipeTracer, RedisClient

logger = logging.getLogger("heliox.tracing")

# Seconds lifespan waits for the last spans at shutdown (an unreachable collector must not
# hold a worker past gunicorn's graceful timeout).
SHUTDOWN_SECONDS = 3.0


def configured_sampler() -> Sampler:
    """The sampler the OTEL_TRACES_SAMPLER variables name (checked at start: core/tracing.py)."""
    name = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    fixed = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "parentbased_always_on": DEFAULT_ON,
        "parentbased_always_off": DEFAULT_OFF,
    }
    if name in fixed:
        return fixed[name]
    ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
    return TraceIdRatioBased(ratio) if name == "traceidratio" else ParentBasedTraceIdRatio(ratio)


class RequestsOnly(Sampler):
    """The configured sampler (``OTEL_TRACES_SAMPLER``) for requests; a span with no parent
    that is not a request's is dropped (background Redis calls would each be a trace)."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(  # noqa: PLR0917 - the SDK's signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        has_parent = get_current_span(parent_context).get_span_context().is_valid
        if kind is not SpanKind.SERVER and not has_parent:
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"RequestsOnly{{{self.delegate.get_description()}}}"


def _resource(settings: Settings) -> Resource:
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our defaults.
    resource = Resource.create(
        {"service.version": __version__, "deployment.environment.name": settings.env}
    )
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "heliox"}))
    return resource


def _exporter() -> SpanExporter | None:
    name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_* variables


@dataclass
class Tracing:
    provider: TracerProvider
    requests: RequestTracer
    statements: StatementSpans
    redis: RedisClient | None

    async def shutdown(self) -> None:
        """Undo the instrumentation and send the last spans, bounded."""
        self.statements.remove()
        if self.redis is not None:
            self.redis.pipe_tracer = None
            RedisInstrumentor.uninstrument_client(self.redis.redis)
        with anyio.move_on_after(SHUTDOWN_SECONDS):
            await anyio.to_thread.run_sync(self.provider.shutdown, abandon_on_cancel=True)


def _endpoint() -> str:
    for name in ENDPOINT_VARIABLES:
        if os.environ.get(name, "").strip():
            return os.environ[name]
    return "the exporter's default"


def _pipe_tracer(provider: TracerProvider, client: RedisClient) -> PipeTracer | None:
    """Spans for the pipelined commands (core/redis_pipe.py) made by the Redis
    instrumentation's own wrapper, as if redis-py ran them: same tracer, name, attributes
    (``EVALSHA ? ? ...``: no script, no values), semantic-convention mode and suppression.
    None if this version of the instrumentation has no such wrapper."""
    try:
        from opentelemetry.instrumentation.redis import (  # noqa: PLC0415
            _async_traced_execute_factory,
        )
    except ImportError:
        return None
    # The instrumentation's own tracer (name, version, schema URL); untyped upstream.
    tracer = RedisInstrumentor._get_tracer(tracer_provider=provider)  # type: ignore[no-untyped-call]
    wrapper = _async_traced_execute_factory(tracer)

    def traced(call: Callable[..., Awaitable[Any]], command: tuple[Any, ...]) -> Awaitable[Any]:
        return cast("Awaitable[Any]", wrapper(call, client.redis, command, {}))

    return traced


def _instrument_redis(provider: TracerProvider, client: RedisClient) -> None:
    RedisInstrumentor.instrument_client(client.redis, tracer_provider=provider)
    client.pipe_tracer = _pipe_tracer(provider, client)
    if client.pipe_tracer is None:
        client.pipe = None  # no span like the others: the (traced) redis-py path instead


def start(settings: Settings, engine: Engine, redis: RedisClient | None) -> Tracing:
    provider = TracerProvider(
        resource=_resource(settings), sampler=RequestsOnly(configured_sampler())
    )
    exporter = _exporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    statements = StatementSpans(provider.get_tracer("heliox.db", __version__), engine)
    if redis is not None:
        _instrument_redis(provider, redis)
    requests = RequestTracer(provider, settings.tracing_excluded_paths)
    logger.info(
        "tracing on",
        extra={
            "sampler": provider.sampler.get_description(),
            "exporter": os.environ.get("OTEL_TRACES_EXPORTER", "otlp"),
            "endpoint": _endpoint(),
        },
    )
    return Tracing(provider, requests, statements, redis)
