"""Tracing end to end: gunicorn on PostgreSQL and Redis exports over OTLP to a real receiver.

The span tree of a write (request span, then PostgreSQL statement and Redis command spans
under it), the incoming W3C trace kept, and the trace ID in the service's log lines of that
request, including warnings written while Redis is down.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.otlp import OtlpReceiver, ReceivedSpan
from tests.servers import AUTH_HEADER, GunicornServer, RedisServer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as otlp:
        yield otlp


def _env(database_url: str, redis_url: str, receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        # The standard variables alone turn tracing on.
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within a tenth of a second
    }


def _request(
    url: str, method: str = "GET", body: dict[str, object] | None = None, **headers: str
) -> tuple[int, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=AUTH_HEADER | headers)
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return response.status, {k.lower(): v for k, v in response.headers.items()}


def _request_span(spans: list[ReceivedSpan], request_id: str) -> ReceivedSpan | None:
    found = [
        s
        for s in spans
        if s.kind == "SERVER" and s.attributes.get("heliox.request_id") == request_id
    ]
    return found[0] if found else None


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_span_id == parent.span_id]


def _is_db(span: ReceivedSpan) -> bool:
    return span.attributes.get("db.system.name") == "postgresql"


def _is_redis(span: ReceivedSpan) -> bool:
    return "redis" in (span.attributes.get("db.system"), span.attributes.get("db.system.name"))


def _lines_of(server: GunicornServer, request_id: str) -> list[str]:
    return [line for line in server.log().splitlines() if f"request_id={request_id}" in line]


def test_a_write_is_a_span_tree_into_postgresql_and_redis_under_the_incoming_trace(
    database_url: str, redis_url: str, receiver: OtlpReceiver
) -> None:
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    with GunicornServer(_env(database_url, redis_url, receiver), workers=2) as server:
        status, headers = _request(
            f"{server.url}/api/v1/items",
            "POST",
            {"name": "traced write"},
            traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01",
            **{"X-Request-ID": request_id},
        )
        assert status == 201
        assert headers["x-request-id"] == request_id

        def tree_arrived(spans: list[ReceivedSpan]) -> bool:
            request = _request_span(spans, request_id)
            return request is not None and any(map(_is_db, _children(spans, request)))

        spans = receiver.wait_for(tree_arrived)
        logged = _lines_of(server, request_id)

    request = _request_span(spans, request_id)
    assert request is not None
    # The incoming trace is kept: same trace ID, the caller's span is the parent.
    assert request.trace_id == TRACE_ID
    assert request.parent_span_id == PARENT_ID
    assert request.name == "POST /api/v1/items"
    assert request.attributes["http.route"] == "/api/v1/items"
    assert request.attributes["http.response.status_code"] == 201
    assert request.resource["service.name"] == "heliox"
    assert request.resource["deployment.environment.name"] == "production"

    children = _children(spans, request)
    statements = [s for s in children if _is_db(s)]
    commands = [s for s in children if _is_redis(s)]
    assert [s.name for s in statements if s.name.startswith("INSERT")], [s.name for s in children]
    # The rate limit's counter and the cache's invalidation (both Lua scripts).
    assert len([s for s in commands if s.name == "EVALSHA"]) >= 2, [s.name for s in children]
    for child in statements + commands:
        assert child.trace_id == TRACE_ID
        assert child.kind == "CLIENT"
    database = database_url.rsplit("/", 1)[1]
    assert all(s.attributes["db.namespace"] == database for s in statements)
    assert all("traced write" not in str(s.attributes) for s in statements)  # no values

    assert receiver.rejected == []
    assert logged, "no log line of the request"
    assert all(f"trace_id={TRACE_ID}" in line for line in logged), logged


def test_warnings_during_a_request_carry_its_trace_id(
    database_url: str, receiver: OtlpReceiver
) -> None:
    """Redis stopped under a write: the warnings written while the write's span is current
    name its (new) trace, as the access line does."""
    with RedisServer() as redis:
        env = _env(database_url, redis.url, receiver)
        with GunicornServer({**env, "RATE_LIMIT_ENABLED": "false"}, workers=1) as server:
            _request(f"{server.url}/api/v1/items", "POST", {"name": "before"})
            redis.stop()
            request_id = f"down-{uuid.uuid4().hex[:12]}"
            status, _ = _request(
                f"{server.url}/api/v1/items",
                "POST",
                {"name": "while redis is down"},
                **{"X-Request-ID": request_id},
            )
            assert status == 201
            spans = receiver.wait_for(lambda s: _request_span(s, request_id) is not None)
            logged = _lines_of(server, request_id)

    request = _request_span(spans, request_id)
    assert request is not None
    assert request.parent_span_id == ""  # no traceparent: a trace of its own
    warnings = [line for line in logged if "level=WARNING" in line]
    assert any("cache invalidation failed" in line for line in warnings), logged
    assert all(f"trace_id={request.trace_id}" in line for line in logged), logged
    # The failed Redis command is in the tree too, as an error.
    failed = [s for s in _children(spans, request) if _is_redis(s) and s.status == "ERROR"]
    assert failed, [(s.name, s.status) for s in _children(spans, request)]


def test_the_receiver_refuses_what_is_not_otlp(receiver: OtlpReceiver) -> None:
    """The receiver is strict, so the tests above could fail on a malformed export."""
    request = urllib.request.Request(
        f"{receiver.url}/v1/traces", data=b"\xff\x00not protobuf", method="POST"
    )
    with urllib.request.urlopen(request, timeout=5):
        pass
    assert receiver.rejected
    assert receiver.snapshot() == []
    assert re.match(r"\w+Error", receiver.rejected[0])
