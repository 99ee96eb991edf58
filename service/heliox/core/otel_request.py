"""The middleware's tracing step: one SERVER span per request (imported only when tracing is on).

Made by HelioxMiddleware itself, not by a second ASGI layer: the OpenTelemetry ASGI middleware
and FastAPI's built-in telemetry cost more on the hot path (``bench/asgi_tracing.py``) and know
nothing of our request ID. The incoming W3C ``traceparent`` (with ``tracestate`` and
``baggage``: the propagators of ``OTEL_PROPAGATORS``) is the parent, so the trace ID is kept.
The span is the current context until the access line is written: the handler's task sees it,
and so does the worker thread of a unit of work (anyio copies the context into it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, StatusCode, TracerProvider, set_span_in_context

from heliox import __version__
from heliox.core.log_format import trace_id_var

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from starlette.types import Scope


class RequestSpan:
    """One request's span while it is current; ended by the middleware's tracing step."""

    __slots__ = ("_context_token", "_trace_token", "method", "span")

    def __init__(self, span: Span, parent: Context, method: str) -> None:
        self.span = span
        self.method = method
        self._context_token = otel_context.attach(set_span_in_context(span, parent))
        context = span.get_span_context()
        # Logs name the trace only when it is kept: an unsampled ID leads nowhere.
        self._trace_token: Token[str | None] | None = (
            trace_id_var.set(format(context.trace_id, "032x"))
            if context.trace_flags.sampled
            else None
        )

    def failed(self, exc: BaseException) -> None:
        self.span.record_exception(exc)

    def end(self, route: str | None, status: int) -> None:
        span = self.span
        if route is not None:
            span.update_name(f"{self.method} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(StatusCode.ERROR)
        span.end()
        otel_context.detach(self._context_token)
        if self._trace_token is not None:
            trace_id_var.reset(self._trace_token)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


class RequestTracer:
    """The middleware's tracing step: a SERVER span per request, except excluded paths."""

    def __init__(self, provider: TracerProvider, excluded_paths: Sequence[str]) -> None:
        self.tracer = provider.get_tracer("heliox", __version__)
        self.excluded = frozenset(excluded_paths)

    def begin(self, scope: Scope, request_id: str) -> RequestSpan | None:
        path: str = scope["path"]
        if path in self.excluded:
            return None
        parent = extract(_headers(scope))
        method: str = scope["method"]
        if method not in _METHODS:  # a client's made-up method must not name spans
            method = "_OTHER"
        client = scope.get("client")
        # Few attributes on purpose: the SDK checks and copies each one, on every request.
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": path,
            "heliox.request_id": request_id,
        }
        if client:
            attributes["client.address"] = client[0]
        span = self.tracer.start_span(
            method, context=parent, kind=SpanKind.SERVER, attributes=attributes
        )
        return RequestSpan(span, parent, method)
