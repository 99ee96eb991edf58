"""Tracing: when it is on, what it refuses, that off costs no import, and the spans it makes.

The spans are collected in memory here (the exporter swapped in ``heliox.core.otel``); the
integration tier sends them over OTLP to a real receiver, with PostgreSQL and Redis children.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from heliox.app import create_app
from heliox.core import otel
from heliox.core.config import ConfigError, Settings, load_settings
from heliox.core.tracing import tracing_wanted
from tests.helpers import API_KEY_HEADER, create_key, make_settings

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


def _traceparent(sampled: bool = True) -> dict[str, str]:
    return {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-{'01' if sampled else '00'}"}


# -- when it is on -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "environ", "on"),
    [
        (None, {}, False),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": " "}, False),
        (True, {}, True),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        (True, {"OTEL_SDK_DISABLED": "true"}, False),
        (
            None,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"},
            False,
        ),
    ],
)
def test_tracing_is_on_only_when_configured(
    setting: bool | None, environ: dict[str, str], on: bool
) -> None:
    assert tracing_wanted(make_settings(tracing_enabled=setting), environ) is on


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER: unknown sampler"),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10%"},
            "OTEL_TRACES_SAMPLER_ARG: a ratio from 0 to 1",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "OTEL_TRACES_SAMPLER_ARG: a ratio from 0 to 1",
        ),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: one of"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "only http/protobuf is supported"),
    ],
)
def test_tracing_variables_the_sdk_would_ignore_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], line: str
) -> None:
    for name, value in {**environ, "TRACING_ENABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert [problem for problem in refused.value.lines if line in problem], refused.value.lines
    # With tracing off they are nobody's business.
    monkeypatch.setenv("TRACING_ENABLED", "false")
    assert load_settings().tracing_enabled is False


def test_good_tracing_variables_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert load_settings().tracing_enabled is None  # on by the endpoint


# -- off is free -------------------------------------------------------------------------------

_OFF_PROBE = """
import json, sys
from fastapi.testclient import TestClient
from heliox.app import create_app
from heliox.core.config import Settings
app = create_app(Settings(database_url=sys.argv[1]))
with TestClient(app, headers={"X-API-Key": sys.argv[2]}) as client:
    statuses = [client.get(p).status_code for p in ("/health", "/api/v1/items", "/metrics")]
    statuses.append(client.post("/api/v1/items", json={"name": "x"}).status_code)
    tracer = app.state.resources.tracer
ours = ("heliox.core.otel", "opentelemetry.sdk.trace", "opentelemetry.instrumentation",
    "opentelemetry.exporter")
loaded = sorted(m for m in sys.modules if m.startswith(ours))
print(json.dumps({"statuses": statuses, "tracer": repr(tracer), "loaded": loaded}))
"""


def test_tracing_off_imports_no_tracing_code_on_the_request_path(sqlite_url: str) -> None:
    """A fresh interpreter serving requests with tracing off: our OpenTelemetry modules, the
    SDK's tracing, its exporters and instrumentations are never imported. (FastAPI imports the
    OpenTelemetry API, and redis-py the SDK's metrics, on their own: not ours to avoid.)"""
    done = subprocess.run(
        [sys.executable, "-c", _OFF_PROBE, sqlite_url, create_key(sqlite_url)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200, 200, 200, 201]
    assert result["tracer"] == "None"
    assert result["loaded"] == []


# -- on: the spans -----------------------------------------------------------------------------


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    monkeypatch.setattr(otel, "_exporter", lambda: exporter)
    return exporter


@pytest.fixture
def traced(settings: Settings, exported: InMemorySpanExporter) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"tracing_enabled": True}))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    key = create_key(settings.database_url or "")
    with TestClient(app, raise_server_exceptions=False, headers={API_KEY_HEADER: key}) as client:
        yield client


def _spans(exported: InMemorySpanExporter, client: TestClient) -> list[ReadableSpan]:
    """Every span, once the app has shut down (which sends the last batch)."""
    client.__exit__(None, None, None)
    return list(exported.get_finished_spans())


def _hex(number: int, digits: int) -> str:
    return format(number, f"0{digits}x")


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_write_is_a_request_span_with_database_children_under_the_incoming_trace(
    traced: TestClient, exported: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    response = traced.post("/api/v1/items", json={"name": "traced"}, headers=_traceparent())
    assert response.status_code == 201
    logged = capsys.readouterr().err
    spans = _spans(exported, traced)

    [request] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert request.name == "POST /api/v1/items"
    assert _hex(request.context.trace_id, 32) == TRACE_ID  # the incoming trace is kept
    assert request.parent is not None
    assert _hex(request.parent.span_id, 16) == PARENT_ID
    attributes = _attributes(request)
    assert attributes["http.route"] == "/api/v1/items"
    assert attributes["http.response.status_code"] == 201
    assert attributes["http.request.method"] == "POST"
    assert attributes["heliox.request_id"] == response.headers["x-request-id"]

    statements = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert any(s.name == "INSERT sqlite" for s in statements), [s.name for s in spans]
    for child in statements:
        assert child.context.trace_id == request.context.trace_id
        assert child.parent is not None
        assert child.parent.span_id == request.context.span_id
        assert _attributes(child)["db.system.name"] == "sqlite"
        assert "traced" not in str(_attributes(child))  # values are never in a span

    access = [line for line in logged.splitlines() if "logger=heliox.access" in line]
    assert access
    assert all(f"trace_id={TRACE_ID}" in line for line in access), access


def test_a_new_trace_starts_without_traceparent_and_logs_name_it(
    traced: TestClient, exported: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert traced.get("/api/v1/items/424242").status_code == 404
    logged = capsys.readouterr().err
    [request] = [s for s in _spans(exported, traced) if s.kind is SpanKind.SERVER]
    assert request.parent is None
    assert request.name == "GET /api/v1/items/{item_id}"
    assert request.status.status_code is StatusCode.UNSET  # a 4xx is the client's
    trace_id = _hex(request.context.trace_id, 32)
    assert re.search(rf"logger=heliox.access .*trace_id={trace_id}", logged), logged


def test_an_unsampled_parent_records_nothing_and_logs_no_trace_id(
    traced: TestClient, exported: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    assert traced.post("/api/v1/items", json={"name": "x"}, headers=_traceparent(False)).is_success
    logged = capsys.readouterr().err
    assert _spans(exported, traced) == []
    assert "logger=heliox.access" in logged
    assert "trace_id=" not in logged


def test_probes_and_scrapes_start_no_trace(
    traced: TestClient, exported: InMemorySpanExporter
) -> None:
    """Excluded paths get no span, and the readiness check's SELECT 1 below them (a span with
    no parent) is dropped rather than made a trace of its own."""
    for path in ("/health", "/health/db", "/metrics"):
        assert traced.get(path).status_code == 200
    assert _spans(exported, traced) == []


def test_a_server_error_is_an_error_span_with_the_exception(
    traced: TestClient, exported: InMemorySpanExporter
) -> None:
    assert traced.get("/boom").status_code == 500
    [request] = [s for s in _spans(exported, traced) if s.kind is SpanKind.SERVER]
    assert request.status.status_code is StatusCode.ERROR
    assert [e.name for e in request.events] == ["exception"]
    assert "kaboom" in str(request.events[0].attributes)


def test_made_up_methods_do_not_name_spans(
    traced: TestClient, exported: InMemorySpanExporter
) -> None:
    traced.request("FROBNICATE", "/api/v1/items")
    [request] = [s for s in _spans(exported, traced) if s.kind is SpanKind.SERVER]
    assert request.name == "_OTHER /api/v1/items"
    assert _attributes(request)["http.request.method"] == "_OTHER"


def test_the_sampler_ratio_and_the_service_name_come_from_the_standard_variables(
    settings: Settings, exported: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "heliox-eu")
    app = create_app(settings.model_copy(update={"tracing_enabled": True}))
    with TestClient(app) as client:
        tracing = app.state.resources._tracing
        assert tracing.provider.resource.attributes["service.name"] == "heliox-eu"
        assert "TraceIdRatioBased{0.0}" in tracing.provider.sampler.get_description()
        client.get("/api/v1/items")  # ratio 0: not sampled
        client.get("/api/v1/items", headers=_traceparent())  # a sampled parent is followed
    [request] = [s for s in exported.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert _hex(request.context.trace_id, 32) == TRACE_ID


def test_default_service_name_and_environment(
    settings: Settings, exported: InMemorySpanExporter
) -> None:
    app = create_app(settings.model_copy(update={"tracing_enabled": True}))
    with TestClient(app):
        resource = app.state.resources._tracing.provider.resource.attributes
        assert resource["service.name"] == "heliox"
        assert resource["deployment.environment.name"] == "development"
    assert app.state.resources.tracer is None  # shut down with the app
