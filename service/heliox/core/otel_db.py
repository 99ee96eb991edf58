"""A CLIENT span per database statement, from our engine's own events (tracing on only).

Not the SQLAlchemy instrumentation package: it refuses SQLAlchemy 2.1 (it declares
``< 2.1.0``) and patches ``create_engine`` and ``Engine.connect`` process-wide, where three
listeners on our engine are all a span needs. The statement is recorded as SQLAlchemy sends it,
with placeholders: parameter values never reach a span.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, StatusCode, Tracer
from sqlalchemy import Engine, event

_SPAN = "_heliox_span"  # where a statement's span waits on its execution context


class StatementSpans:
    def __init__(self, tracer: Tracer, engine: Engine) -> None:
        self.tracer = tracer
        self.engine = engine
        url = engine.url
        system = url.get_backend_name()
        self.system = "postgresql" if system.startswith("postgres") else system
        self.attributes: dict[str, Any] = {"db.system.name": self.system}
        if url.database:
            self.attributes["db.namespace"] = url.database
        if url.host:
            self.attributes["server.address"] = url.host
        if url.port:
            self.attributes["server.port"] = url.port
        self.listeners = (
            ("before_cursor_execute", self._before),
            ("after_cursor_execute", self._after),
            ("handle_error", self._error),
        )
        for name, listener in self.listeners:
            event.listen(engine, name, listener)

    def remove(self) -> None:
        for name, listener in self.listeners:
            event.remove(self.engine, name, listener)

    def _before(
        self, _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        if context is None:  # nowhere to keep the span until the statement ends
            return
        words = statement.split(None, 1)
        operation = words[0].upper() if words else ""
        attributes = {**self.attributes, "db.query.text": statement}
        if operation:
            attributes["db.operation.name"] = operation
        # The current context is the request's (copied into the unit of work's thread).
        span = self.tracer.start_span(
            f"{operation} {self.system}".strip(), kind=SpanKind.CLIENT, attributes=attributes
        )
        setattr(context, _SPAN, span)

    @staticmethod
    def _after(
        _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        span = getattr(context, _SPAN, None)
        if span is not None:
            delattr(context, _SPAN)
            span.end()

    @staticmethod
    def _error(exception_context: Any) -> None:
        span = getattr(exception_context.execution_context, _SPAN, None)
        if span is None:
            return
        delattr(exception_context.execution_context, _SPAN)
        error = exception_context.original_exception
        span.record_exception(error)
        span.set_status(StatusCode.ERROR, type(error).__name__)
        span.end()
