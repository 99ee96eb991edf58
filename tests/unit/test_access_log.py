"""The access line written without a record is the line the record would have given, and it is
a record whenever anything but our handler could see it (core/access_log.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from heliox.core import access_log
from heliox.core.access_log import access_line
from heliox.core.log_format import (
    Fields,
    JSONFormatter,
    KVFormatter,
    LineFormatter,
    request_id_var,
    trace_id_var,
)
from heliox.core.logging import configure_logging, sole_handler

_ACCESS = logging.getLogger("heliox.access")
_CALL = ("GET", "/api/v1/items/7", 200, 0.0123456, "10.0.0.9")


@contextlib.contextmanager
def _service_logging(log_format: str = "kv", level: str = "INFO") -> Iterator[None]:
    """Logging as the service configures it (to sys.stderr, which capsys reads), without
    pytest's capture handler on the root meanwhile: a second handler makes the line a record."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers = []
    configure_logging(level, log_format)
    try:
        yield
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])


def _line(capsys: pytest.CaptureFixture[str], log_format: str, call: Any, *, record: bool) -> str:
    capsys.readouterr()
    extra = logging.NullHandler()
    if record:
        _ACCESS.addHandler(extra)  # anything on the way: the line is a record again
    try:
        with _service_logging(log_format):
            access_line(*call)
    finally:
        _ACCESS.removeHandler(extra)
    return capsys.readouterr().err


@pytest.mark.parametrize("log_format", ["kv", "json"])
@pytest.mark.parametrize(
    "call",
    [
        _CALL,
        ("DELETE", '/api/v1/items/a "b"=c', 404, 0.5, "-"),
        ("GET", "/x/postgresql://u:secret@db/x", 500, 1.0, "::1"),
    ],
)
def test_the_direct_line_is_the_records_line(
    capsys: pytest.CaptureFixture[str], log_format: str, call: tuple[Any, ...]
) -> None:
    request_token = request_id_var.set("rid-1")
    trace_token = trace_id_var.set("0af7651916cd43dd8448eb211c80319c")
    try:
        direct = _line(capsys, log_format, call, record=False)
        record = _line(capsys, log_format, call, record=True)
    finally:
        trace_id_var.reset(trace_token)
        request_id_var.reset(request_token)
    assert direct.count("\n") == record.count("\n") == 1
    # Same text but for the milliseconds of the timestamp (two calls, two clocks).
    assert direct.split("00:00", 1)[1] == record.split("00:00", 1)[1]
    assert "secret" not in direct


_TEXT = st.text(st.sampled_from('aZ09/-_.:%@ ="\\\n\t\u00e9'), max_size=12)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    formatter=st.sampled_from([KVFormatter(), JSONFormatter()]),
    request_id=_TEXT,
    method=_TEXT,
    path=_TEXT,
    status=st.integers(100, 599),
    duration_ms=st.floats(0, 1e6, allow_nan=False),
    client=_TEXT,
    trace_id=st.none() | st.just("0af7651916cd43dd8448eb211c80319c"),
)
def test_a_formats_access_line_is_its_line_of_the_same_fields(
    formatter: LineFormatter,
    request_id: str,
    method: str,
    path: str,
    status: int,
    duration_ms: float,
    client: str,
    trace_id: str | None,
) -> None:
    """KVFormatter's one-f-string access line says exactly what its general line says, quoting
    and masking included (values with spaces, quotes, ``=``, backslashes, empty ones)."""
    created = 1_764_000_000.123
    extras = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": duration_ms,
        "client": client,
    }
    fields = Fields(
        created, "INFO", "heliox.access", f"{method} {path} {status}", request_id, extras
    )
    token = trace_id_var.set(trace_id)
    try:
        fast = formatter.access(
            created,
            logger="heliox.access",
            request_id=request_id,
            method=method,
            path=path,
            status=status,
            duration_ms=duration_ms,
            client=client,
        )
        assert fast == formatter.line(fields)
    finally:
        trace_id_var.reset(token)


def test_the_line_goes_straight_to_our_handler_only_when_it_is_the_only_one() -> None:
    spoilers = (
        lambda: _ACCESS.addHandler(logging.NullHandler()),
        lambda: _ACCESS.addFilter(logging.Filter("other")),
        lambda: setattr(_ACCESS, "propagate", False),
        lambda: logging.getLogger("heliox").addHandler(logging.NullHandler()),
        lambda: logging.getLogger().addHandler(logging.NullHandler()),
        lambda: logging.getLogger().handlers[0].addFilter(logging.Filter("other")),
        lambda: logging.getLogger().handlers[0].setLevel(logging.WARNING),
    )
    with _service_logging():
        assert sole_handler(_ACCESS, logging.INFO) is not None
        for spoil in spoilers:
            spoil()
            try:
                assert sole_handler(_ACCESS, logging.INFO) is None
            finally:
                for logger in (_ACCESS, logging.getLogger("heliox")):
                    logger.handlers.clear()
                    logger.filters.clear()
                _ACCESS.propagate = True
                logging.getLogger().handlers = []
                configure_logging("INFO", "kv")


def test_a_capture_handler_gets_the_record(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="heliox.access"):
        access_line(*_CALL)
    (record,) = caplog.records
    assert record.getMessage() == "GET /api/v1/items/7 200"
    assert record.__dict__["duration_ms"] == 12.346


def test_no_line_below_the_loggers_level(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with _service_logging(level="WARNING"):
        access_line(*_CALL)
    assert capsys.readouterr().err == ""
    assert access_log.access_logger is _ACCESS


class _CountingStream:
    """A stderr that records each write."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_lines_of_one_loop_turn_leave_in_one_write_and_before_any_later_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _CountingStream()
    monkeypatch.setattr(sys, "stderr", stream)

    async def scenario() -> None:
        with _service_logging():
            handler, _ = sole_handler(_ACCESS, logging.INFO) or (None, None)
            assert handler is not None
            for n in range(3):
                handler.write_line(f"line {n}")
            assert stream.writes == []  # waiting for the end of the turn
            await asyncio.sleep(0)
            assert stream.writes == ["line 0\nline 1\nline 2\n"]
            handler.write_line("line 3")
            logging.getLogger("heliox.test").warning("a record")
            assert stream.writes[1] == "line 3\n"  # the waiting line first
            assert "a record" in stream.writes[2]
            handler.write_line("line 4")
            handler.flush()  # as logging.shutdown at exit
            assert stream.writes[3] == "line 4\n"

    asyncio.run(scenario())
    assert len(stream.writes) == 4  # nothing left to write at the turn's end


def test_without_an_event_loop_a_line_is_written_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _CountingStream()
    monkeypatch.setattr(sys, "stderr", stream)
    with _service_logging():
        access_line(*_CALL)
        assert len(stream.writes) == 1
        assert "logger=heliox.access" in stream.writes[0]
