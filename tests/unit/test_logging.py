"""Log line formats, request IDs in lines, password masking, adopted third-party loggers."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

import pytest

from heliox.core.access_log import access_line
from heliox.core.log_format import (
    JSONFormatter,
    KVFormatter,
    _timestamp,
    redact,
    request_id_var,
)
from heliox.core.logging import configure_logging

KV_LINE = re.compile(
    r"^timestamp=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 level=(\w+) logger=(\S+) "
    r"message=(\S+|\"[^\"]*\") request_id=(\S+)"
)


def _record(
    msg: str, *args: object, exc: BaseException | None = None, **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord("heliox.test", logging.INFO, __file__, 1, msg, args, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.__dict__.update(extra)
    return record


def test_kv_line_has_the_contract_fields_in_order() -> None:
    token = request_id_var.set("abc-123")
    try:
        line = KVFormatter().format(_record("hello %s", "world", user_id=7))
    finally:
        request_id_var.reset(token)
    match = KV_LINE.match(line)
    assert match, line
    assert match.groups() == ("INFO", "heliox.test", '"hello world"', "abc-123")
    assert line.endswith(" user_id=7")


def test_kv_outside_a_request_has_a_placeholder_id() -> None:
    assert " request_id=- " in KVFormatter().format(_record("x")) + " "


def test_kv_quotes_and_escapes_values() -> None:
    line = KVFormatter().format(_record('say "hi"', path="/a b", empty=""))
    assert 'message="say \\"hi\\""' in line
    assert 'path="/a b"' in line
    assert 'empty=""' in line


def test_kv_exception_stays_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError as caught:
        line = KVFormatter().format(_record("failed", exc=caught))
    assert "\n" not in line
    assert 'exc_info="Traceback (most recent call last):\\n' in line
    assert "ValueError: boom" in line


def test_json_line_has_the_same_keys() -> None:
    token = request_id_var.set("rid-1")
    try:
        payload = json.loads(JSONFormatter().format(_record("hi", status=200)))
    finally:
        request_id_var.reset(token)
    assert payload["level"] == "INFO"
    assert payload["logger"] == "heliox.test"
    assert payload["message"] == "hi"
    assert payload["request_id"] == "rid-1"
    assert payload["status"] == 200
    assert payload["timestamp"].endswith("+00:00")


@pytest.mark.parametrize("formatter", [KVFormatter(), JSONFormatter()])
def test_passwords_never_reach_a_line(formatter: logging.Formatter) -> None:
    url = "postgresql+psycopg://heliox:hunter2@db:5432/heliox"
    try:
        raise RuntimeError(f"cannot connect to {url}")
    except RuntimeError as caught:
        line = formatter.format(
            _record("using %s", url, exc=caught, dsn="host=db password=hunter2")
        )
    assert "hunter2" not in line
    assert "heliox:***@db" in line


def test_redact_leaves_plain_text_alone() -> None:
    assert redact("GET /api/v1/items 200") == "GET /api/v1/items 200"
    assert redact("redis://cache:6379/0") == "redis://cache:6379/0"


def test_configure_logging_adopts_server_loggers(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "kv")
    for name in ("uvicorn.error", "gunicorn.error", "alembic"):
        logging.getLogger(name).info("from %s", name)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("timestamp=")]
    assert [KV_LINE.match(line).group(2) for line in lines] == [  # type: ignore[union-attr]
        "uvicorn.error",
        "gunicorn.error",
        "alembic",
    ]
    assert logging.getLogger("uvicorn.access").disabled


def test_configure_logging_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "kv")
    configure_logging("INFO", "json")
    logging.getLogger("heliox.test").info("once")
    lines = [line for line in capsys.readouterr().err.splitlines() if "once" in line]
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "once"


def test_access_line_carries_the_request_fields(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="heliox.access"):
        access_line("GET", "/api/v1/items/7", 200, 0.0123456, "10.0.0.9")
    (record,) = caplog.records
    assert record.name == "heliox.access"
    assert record.getMessage() == "GET /api/v1/items/7 200"
    line = KVFormatter().format(record)
    assert line.endswith(
        "method=GET path=/api/v1/items/7 status=200 duration_ms=12.346 client=10.0.0.9"
    ), line


def test_access_line_follows_the_logger_level(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="heliox.access"):
        access_line("GET", "/", 200, 0.001, "-")
    assert caplog.records == []


def test_kv_numbers_and_values_after_the_record_attributes() -> None:
    """Extras are found after the record's own attributes, numbers are written bare."""
    line = KVFormatter().format(_record("x", status=404, ratio=0.5, note="a b"))
    assert line.endswith(' status=404 ratio=0.5 note="a b"'), line


@pytest.mark.parametrize(
    "created", [0.0, 0.0004, 0.9999996, 1.9999999, 1_699_999_999.9999995, 1_764_700_000.123456]
)
def test_timestamps_are_isoformat_in_utc_with_milliseconds(created: float) -> None:
    """The per-second cache gives what datetime gives, at the edges of a second too."""
    for then in (created, created + 0.25, created):  # a new second, and back to a cached one
        expected = datetime.fromtimestamp(then, tz=UTC).isoformat(timespec="milliseconds")
        assert _timestamp(then) == expected
