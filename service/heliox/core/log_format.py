"""Log lines' text: ``timestamp=... level=... logger=... message=... request_id=...`` plus extras.

With tracing on, a line written while a sampled span is active also carries ``trace_id=...``
(the 32 hex digits a tracing backend searches by).

One formatter serves our loggers and uvicorn's and gunicorn's (gunicorn.conf.py points its
``logconfig_dict`` at :func:`formatter_from_env`), so every line of a request carries its
request ID. ``LOG_FORMAT=json`` gives one JSON object per line instead. Passwords inside URLs
and ``password=`` pairs are masked in every line. Where lines go is core/logging.py. This module
imports only the standard library: the gunicorn master loads it.
"""

from __future__ import annotations

import json
import logging
import os
import re
from contextvars import ContextVar
from datetime import UTC, datetime
from itertools import islice
from typing import Any, NamedTuple

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# The trace ID of the request's span while tracing is on and the span is sampled (set by
# core/tracing.py, which this module must not import: the gunicorn master loads it).
trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "trace_id", "color_message", "taskName"}
)
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)([^@\s]+)@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|[^\s'\"]+)", re.IGNORECASE)
_NEEDS_QUOTES = re.compile(r'[\s="\\]')


def redact(text: str) -> str:
    """Mask passwords in URLs (``scheme://user:***@host``) and in ``password=...`` pairs."""
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1***@", text)
    if "assword" in text or "ASSWORD" in text:
        text = _KV_PASSWORD.sub(r"\1***", text)
    return text


def _kv_value(value: Any) -> str:
    kind = type(value)
    if kind is int or kind is float:  # durations, statuses: never quoted (and common)
        return str(value)
    text = value if kind is str else str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


# The formatted second of the last line: every line within a second shares it.
_last_second: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds, as datetime.isoformat gives it, in a third the time."""
    global _last_second  # noqa: PLW0603 (a one-entry cache; a race only recomputes it)
    second = int(created)
    micros = round((created - second) * 1_000_000)  # rounded as datetime rounds it
    if micros == 1_000_000:
        second, micros = second + 1, 0
    cached_second, text = _last_second
    if second != cached_second:
        text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (second, text)
    return f"{text}.{micros // 1000:03d}+00:00"


# A record's own attributes come first in its __dict__ (LogRecord.__init__), the extras after
# them (makeRecord): skipping that many keys finds the extras without testing every key.
_FIRST_EXTRA = len(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


def _request_id(record: logging.LogRecord) -> str:
    explicit = record.__dict__.get("request_id")
    return explicit if isinstance(explicit, str) else request_id_var.get()


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    rest = islice(record.__dict__.items(), _FIRST_EXTRA, None)
    return {k: v for k, v in rest if k not in _STANDARD_ATTRS}


def access_extras(
    method: str, path: str, status: int, duration_ms: float, client: str
) -> dict[str, Any]:
    """The access line's own fields, in their order on the line: one definition for the line
    made without a record (``LineFormatter.access``) and the record's ``extra``."""
    return {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "client": client,
    }


class Fields(NamedTuple):
    """What a line says, from a record or (the access line) without one."""

    created: float
    level: str
    logger: str
    message: str
    request_id: str
    extras: dict[str, Any]
    exc_text: str | None = None


class LineFormatter(logging.Formatter):
    """A line from its fields: :meth:`line` is the one place a format is defined, used for
    every record and, without a record, for the access line (core/access_log.py)."""

    def line(self, fields: Fields) -> str:
        raise NotImplementedError

    def access(
        self,
        created: float,
        *,
        logger: str,
        request_id: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        client: str,
    ) -> str:
        """The access line: what :meth:`line` makes of its fields (a format may make the same
        text faster, as KVFormatter does)."""
        extras = access_extras(method, path, status, duration_ms, client)
        message = f"{method} {path} {status}"
        return self.line(Fields(created, "INFO", logger, message, request_id, extras))

    def format(self, record: logging.LogRecord) -> str:
        return self.line(
            Fields(
                record.created,
                record.levelname,
                record.name,
                record.getMessage(),
                _request_id(record),
                _extras(record),
                self.formatException(record.exc_info) if record.exc_info else None,
            )
        )


class KVFormatter(LineFormatter):
    """``key=value`` lines; values with spaces, quotes or ``=`` are double-quoted and escaped."""

    def line(self, fields: Fields) -> str:
        created, level, logger, message, request_id, extras, exc_text = fields
        # One f-string and one comprehension: this runs once per request (the access line).
        head = (
            f"timestamp={_timestamp(created)} level={level} logger={logger} "
            f"message={_kv_value(message)} request_id={_kv_value(request_id)}"
        )
        trace_id = trace_id_var.get()
        if trace_id is not None:
            head = f"{head} trace_id={trace_id}"
        parts = [head, *[f"{key}={_kv_value(value)}" for key, value in extras.items()]]
        if exc_text is not None:
            parts.append(f"exc_info={_kv_value(exc_text)}")
        return redact(" ".join(parts))

    def access(
        self,
        created: float,
        *,
        logger: str,
        request_id: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        client: str,
    ) -> str:
        """:meth:`line`'s text in one f-string when no value needs quoting (the usual request):
        half the time of building the fields and formatting them one by one."""
        if (
            not (method and path and request_id and client)
            or _NEEDS_QUOTES.search(f"{method}{path}{request_id}{client}") is not None
        ):
            return super().access(
                created,
                logger=logger,
                request_id=request_id,
                method=method,
                path=path,
                status=status,
                duration_ms=duration_ms,
                client=client,
            )
        trace_id = trace_id_var.get()
        trace = "" if trace_id is None else f" trace_id={trace_id}"
        return redact(
            f"timestamp={_timestamp(created)} level=INFO logger={logger} "
            f'message="{method} {path} {status}" request_id={request_id}{trace} '
            f"method={method} path={path} status={status} duration_ms={duration_ms} "
            f"client={client}"
        )


class JSONFormatter(LineFormatter):
    """One JSON object per line with the same keys as the kv format."""

    def line(self, fields: Fields) -> str:
        created, level, logger, message, request_id, extras, exc_text = fields
        payload: dict[str, Any] = {
            "timestamp": _timestamp(created),
            "level": level,
            "logger": logger,
            "message": message,
            "request_id": request_id,
        }
        trace_id = trace_id_var.get()
        if trace_id is not None:
            payload["trace_id"] = trace_id
        payload.update(extras)
        if exc_text is not None:
            payload["exc_info"] = exc_text
        return redact(json.dumps(payload, default=str, ensure_ascii=False))


def make_formatter(log_format: str) -> LineFormatter:
    return JSONFormatter() if log_format == "json" else KVFormatter()


def formatter_from_env() -> LineFormatter:
    """Factory for ``logging.config.dictConfig`` (``"()"`` key): honours LOG_FORMAT."""
    return make_formatter(os.environ.get("LOG_FORMAT", "kv").strip().lower())
