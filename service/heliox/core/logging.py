"""Where log lines go: one handler on stderr for every logger (ours, uvicorn's, gunicorn's,
alembic's), formatted by core/log_format.py; access lines of one loop turn leave in one write.
This module imports only the standard library and log_format: the gunicorn master loads it.
"""

from __future__ import annotations

import asyncio  # (the gunicorn master has it already: its worker class imports it)
import logging
import sys
from typing import Any

from heliox.core.log_format import LineFormatter, make_formatter


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (redirected or captured streams).

    Lines written with :meth:`write_line` (the access line, one per request) from an event loop
    wait for the end of the loop's turn and leave together, in one write: under load a turn
    finishes several requests (about 12 lines a write at the bench's load, instead of a system
    call each). Every record and every flush writes the waiting lines first, so the order of lines
    is the order they were logged in; a process killed outright loses at most one turn's.
    """

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self._waiting:  # (Handler.handle holds the lock)
            self._write_waiting()
        self.stream = sys.stderr
        super().emit(record)

    def write_line(self, text: str) -> None:
        """Write a line formatted without a record (core/access_log.py), at the end of the
        event loop's turn when there is one."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self.acquire()
        try:
            if loop is None:
                self._waiting.append(text)
                self._write_waiting()
                return
            if not self._waiting:
                loop.call_soon(self.flush)
            self._waiting.append(text)
        finally:
            self.release()

    def flush(self) -> None:
        self.acquire()
        try:
            if self._waiting:
                self._write_waiting()
            super().flush()
        finally:
            self.release()

    def _write_waiting(self) -> None:
        """Write the waiting lines (the lock held)."""
        lines, self._waiting = self._waiting, []
        try:
            stream = self.stream = sys.stderr
            terminator = self.terminator
            stream.write(terminator.join(lines) + terminator)
            stream.flush()
        except Exception:  # as emit: a logging failure never fails the request
            self.handleError(logging.makeLogRecord({"msg": lines[0]}))


def sole_handler(logger: logging.Logger, level: int) -> tuple[_StderrHandler, LineFormatter] | None:
    """The handler of :func:`configure_logging` and its formatter when a record of ``logger`` at
    ``level`` would reach it and nothing else (no handler or filter on the way, the root's only
    handler ours and unfiltered), else None. Then the formatter's ``line()`` gives the line the
    record would have given."""
    if logger.handlers or logger.filters or not logger.propagate:
        return None
    parent = logger.parent
    while parent is not None and parent.parent is not None:  # up to the root
        if parent.handlers or not parent.propagate:
            return None  # (a parent's filters do not apply to records propagated to it)
        parent = parent.parent
    handlers = logging.root.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if type(handler) is not _StderrHandler or handler.filters or handler.level > level:
        return None
    formatter = handler.formatter
    return (handler, formatter) if isinstance(formatter, LineFormatter) else None


# Third-party loggers that must write through our handler instead of their own.
_ADOPTED = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "alembic")
_HANDLER_NAME = "heliox"


def configure_logging(level: str = "INFO", log_format: str = "kv") -> None:
    """Install one stderr handler on the root logger; idempotent."""
    handler = _StderrHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(make_formatter(log_format))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    # Replace default handlers (e.g. a bare basicConfig), keep pytest's capture handlers.
    for old in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _ADOPTED:
        adopted = logging.getLogger(name)
        adopted.handlers.clear()
        adopted.propagate = True
        adopted.setLevel(logging.NOTSET)
    # Our middleware writes the access line (with duration and request ID).
    logging.getLogger("uvicorn.access").disabled = True
