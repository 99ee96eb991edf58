"""The app on SQLite: endpoints, error bodies for every error status, headers, logs, metrics."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import exc as sa_exc

from heliox.app import create_app
from heliox.core.config import Settings
from heliox.core.ratelimit import Decision
from tests.helpers import API_KEY_HEADER, assert_error_body, client_for, create_key, make_settings
from tests.servers import free_port


def test_health_touches_nothing(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_db_and_info(client: TestClient) -> None:
    assert client.get("/health/db").json() == {
        "status": "ok",
        "database": "connected",
        "message": "Database connection successful",
    }
    assert client.get("/").json() == {
        "name": "heliox",
        "version": "0.1.0",
        "environment": "development",
    }


@pytest.mark.parametrize("env", ["production", "staging", "development"])
def test_health_db_503_names_the_database_only_in_development(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens there: psycopg's error names the host and port.
    url = f"postgresql://heliox:pw@127.0.0.1:{free_port()}/heliox"
    settings = make_settings(env=env, database_url=url, health_db_timeout=5)
    with client_for(settings) as client:
        capsys.readouterr()
        response = client.get("/health/db", headers={"x-request-id": "probe-1"})
    body = assert_error_body(response, 503, "service_unavailable")
    assert body["details"] == {"database": "disconnected"}
    port = url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    err = capsys.readouterr().err
    if env == "development":
        assert "127.0.0.1" in str(body["message"])
        assert port in str(body["message"])
        return
    assert body["message"] == "Database unavailable"
    assert "127.0.0.1" not in response.text
    assert port not in response.text
    [logged] = [line for line in err.splitlines() if "database check failed" in line]
    assert "level=WARNING" in logged
    assert "request_id=probe-1" in logged
    assert port in logged  # the detail is in the server's log


def test_items_crud_and_pagination(client: TestClient) -> None:
    created = [client.post("/api/v1/items", json={"name": f"item {i}"}) for i in range(5)]
    assert all(r.status_code == 201 for r in created)
    first = created[0].json()
    assert first["name"] == "item 0"
    assert first["description"] is None
    assert first["created_at"].endswith("Z") or first["created_at"].endswith("+00:00")

    page = client.get("/api/v1/items", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 5
    assert (page["offset"], page["limit"]) == (1, 2)
    assert [item["name"] for item in page["items"]] == ["item 1", "item 2"]

    item_id = first["id"]
    patched = client.patch(f"/api/v1/items/{item_id}", json={"description": "d"})
    assert patched.status_code == 200
    assert patched.json()["description"] == "d"
    assert patched.json()["name"] == "item 0"
    assert client.get(f"/api/v1/items/{item_id}").json()["description"] == "d"

    assert client.delete(f"/api/v1/items/{item_id}").status_code == 204
    assert_error_body(client.get(f"/api/v1/items/{item_id}"), 404, "not_found")
    assert_error_body(client.delete(f"/api/v1/items/{item_id}"), 404, "not_found")
    assert client.get("/api/v1/items").json()["total"] == 4


def test_404_unknown_path(client: TestClient) -> None:
    body = assert_error_body(client.get("/nope"), 404, "not_found")
    assert body["message"] == "Not Found"


def test_405_keeps_allow_header(client: TestClient) -> None:
    response = client.put("/health")
    assert_error_body(response, 405, "method_not_allowed")
    assert "GET" in response.headers["allow"]


def test_422_lists_errors_without_echoing_input(client: TestClient) -> None:
    response = client.post(
        "/api/v1/items", json={"name": "", "description": "secret-input", "x": 1}
    )
    body = assert_error_body(response, 422, "validation_error")
    errors = body["details"]["errors"]  # type: ignore[index]
    assert {tuple(e["loc"]) for e in errors} == {("body", "name"), ("body", "x")}
    assert "secret-input" not in response.text


def test_422_on_query_and_path(client: TestClient) -> None:
    assert_error_body(client.get("/api/v1/items", params={"limit": 1000}), 422, "validation_error")
    assert_error_body(client.get("/api/v1/items/0"), 422, "validation_error")
    assert_error_body(client.patch("/api/v1/items/1", json={"name": None}), 422, "validation_error")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/items", {"name": "a\u0000b"}),
        ("POST", "/api/v1/items", {"name": "a", "description": "x\u0000"}),
        ("PATCH", "/api/v1/items/1", {"name": "\u0000"}),
        ("PATCH", "/api/v1/items/1", {"description": "\u0000 y"}),
    ],
    ids=["create-name", "create-description", "update-name", "update-description"],
)
def test_nul_characters_are_a_422(
    client: TestClient, method: str, path: str, body: dict[str, str]
) -> None:
    # SQLite would store them; PostgreSQL cannot, so the API refuses them everywhere.
    client.post("/api/v1/items", json={"name": "first"})
    response = client.request(method, path, json=body)
    details = assert_error_body(response, 422, "validation_error")["details"]
    [error] = details["errors"]  # type: ignore[index]
    assert error["loc"][:1] == ["body"]
    assert "NUL" in error["msg"]
    assert client.get("/api/v1/items").json()["items"][0]["name"] == "first"


def test_data_error_from_the_database_is_a_422(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings.model_copy(update={"env": "production"}))

    @app.get("/refused")
    async def refused() -> None:
        raise sa_exc.DataError("INSERT ...", {}, ValueError("cannot store 'secret-value'"))

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/refused")
    body = assert_error_body(response, 422, "validation_error")
    assert body["details"] == {"reason": "invalid_value"}
    assert "secret-value" not in response.text
    assert "database refused a value" in capsys.readouterr().err


def test_413_by_content_length(settings: Settings) -> None:
    with client_for(settings.model_copy(update={"max_body_size": 100})) as client:
        response = client.post("/api/v1/items", content=b"{" + b" " * 200 + b"}")
        body = assert_error_body(response, 413, "payload_too_large")
        assert "100 bytes" in str(body["message"])
        assert client.get("/api/v1/items").json()["total"] == 0


def test_413_for_chunked_body_without_content_length(settings: Settings) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 50
        yield b'"}'

    with client_for(settings.model_copy(update={"max_body_size": 100})) as client:
        response = client.post(
            "/api/v1/items", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_error_body(response, 413, "payload_too_large")
        small = client.post(
            "/api/v1/items", content=iter([b'{"name":', b' "ok"}']),
            headers={"content-type": "application/json"},
        )  # fmt: skip
        assert small.status_code == 201, small.text


def _boom_client(settings: Settings) -> TestClient:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom details")

    return TestClient(app, raise_server_exceptions=False)


def test_500_in_production_hides_the_exception(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with _boom_client(settings.model_copy(update={"env": "production"})) as client:
        response = client.get("/boom", headers={"x-request-id": "trace-500"})
    body = assert_error_body(response, 500, "internal_error")
    assert body == {
        "error": "internal_error",
        "message": "Internal server error",
        "request_id": "trace-500",
    }
    assert "kaboom" not in response.text
    err = capsys.readouterr().err
    logged = [line for line in err.splitlines() if "unhandled error" in line]
    assert len(logged) == 1
    assert "request_id=trace-500" in logged[0]
    assert "RuntimeError: kaboom details" in logged[0]  # the traceback is in the log, not the body


def test_500_in_development_names_the_exception(settings: Settings) -> None:
    with _boom_client(settings) as client:
        body = assert_error_body(client.get("/boom"), 500, "internal_error")
    assert body["details"] == {"exception": "RuntimeError: kaboom details"}


def test_request_id_kept_or_made(client: TestClient) -> None:
    assert (
        client.get("/health", headers={"x-request-id": "abc-1"}).headers["x-request-id"] == "abc-1"
    )
    made = client.get("/health", headers={"x-request-id": b"bad id\xc3\xa9"}).headers[
        "x-request-id"
    ]
    assert uuid.UUID(made).version == 4


def test_security_headers(client: TestClient) -> None:
    headers = client.get("/api/v1/items").headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "referrer-policy" not in headers  # document-only headers go on the docs pages
    assert "strict-transport-security" not in headers  # development
    assert "server" not in headers
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers  # Swagger UI needs its scripts
    assert docs.headers["x-content-type-options"] == "nosniff"
    assert docs.headers["referrer-policy"] == "no-referrer"
    assert docs.headers["cross-origin-opener-policy"] == "same-origin"


def test_hsts_outside_development(settings: Settings) -> None:
    with client_for(settings.model_copy(update={"env": "production"})) as client:
        assert client.get("/health").headers["strict-transport-security"].startswith("max-age=")


def test_api_docs_follow_env_unless_docs_enabled_is_set(sqlite_url: str) -> None:
    """/docs, /redoc and /openapi.json: on in development, off in staging and production (a
    map of every route and body is a gift to an attacker), DOCS_ENABLED overriding either."""
    table = [
        ("development", None, True),
        ("development", False, False),
        ("staging", None, False),
        ("staging", True, True),
        ("production", None, False),
        ("production", True, True),
        ("production", False, False),
    ]
    for env, docs_enabled, served in table:
        values = {} if docs_enabled is None else {"docs_enabled": docs_enabled}
        settings = make_settings(env=env, database_url=sqlite_url, **values)
        with client_for(settings) as client:
            for path in ("/docs", "/redoc", "/openapi.json"):
                response = client.get(path)
                where = (env, docs_enabled, path, response.status_code)
                if served:
                    assert response.status_code == 200, where
                else:
                    assert response.status_code == 404, where
                    assert_error_body(response, 404, "not_found")


def test_cors_off_by_default(client: TestClient) -> None:
    response = client.get("/health", headers={"origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_from_settings(settings: Settings) -> None:
    cors = settings.model_copy(
        update={"cors_enabled": True, "cors_origins": ["https://app.example"]}
    )
    with client_for(cors) as client:
        allowed = client.get("/health", headers={"origin": "https://app.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        preflight = client.options(
            "/api/v1/items",
            headers={"origin": "https://app.example", "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 200
        assert "x-request-id" in preflight.headers
        other = client.get("/health", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


class _Refusing:
    """A rate limiter that refuses everything (the unit tier has no Redis)."""

    limit, window = 1, 60

    def __init__(self, unavailable: bool = False) -> None:
        self.unavailable = unavailable

    async def hit(
        self, identity: str, limit: int | None = None, guard: str | None = None
    ) -> Decision:
        return Decision(allowed=False, retry_after=7, unavailable=self.unavailable)

    async def blocked(self, address: str) -> bool:
        return False


@pytest.mark.parametrize("origins", [["https://app.example"], ["*"]], ids=["listed", "any"])
def test_errors_answered_by_the_middleware_carry_cors_headers(
    settings: Settings, origins: list[str]
) -> None:
    cors = settings.model_copy(
        update={"cors_enabled": True, "cors_origins": origins, "max_body_size": 100}
    )
    app = create_app(cors)

    @app.get("/api/v1/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    origin = {
        "origin": "https://app.example",
        API_KEY_HEADER: create_key(str(settings.database_url)),
    }
    expected_origin = "*" if origins == ["*"] else "https://app.example"
    with TestClient(app, raise_server_exceptions=False) as client:
        responses = {
            "413": client.post("/api/v1/items", content=b"x" * 200, headers=origin),
            "500": client.get("/api/v1/boom", headers=origin),
        }
        # The rate limit's answers (api/auth.py) pass CORSMiddleware, like every routed error.
        gate = app.state.resources.gate
        gate.limiter = _Refusing()
        responses["429"] = client.get("/api/v1/items", headers=origin)
        gate.limiter = _Refusing(unavailable=True)
        responses["503"] = client.get("/api/v1/items", headers=origin)
        gate.limiter = None
    for status, response in responses.items():
        assert response.status_code == int(status), response.text
        assert response.headers["access-control-allow-origin"] == expected_origin, status
        exposed = response.headers["access-control-expose-headers"]
        assert {"X-Request-ID", "Retry-After"} <= set(exposed.split(", ")), status
        if origins != ["*"]:
            assert "Origin" in response.headers["vary"], status
        assert "access-control-allow-credentials" not in response.headers  # not configured
    assert responses["429"].headers["retry-after"] == "7"


def test_middleware_errors_get_no_cors_headers_for_other_origins(settings: Settings) -> None:
    cors = settings.model_copy(
        update={"cors_enabled": True, "cors_origins": ["https://app.example"], "max_body_size": 10}
    )
    with client_for(cors) as client:
        for headers in ({"origin": "https://evil.example"}, {}):
            response = client.post("/api/v1/items", content=b"x" * 20, headers=headers)
            assert response.status_code == 413
            assert "access-control-allow-origin" not in response.headers
    # CORS off: never, whatever the Origin.
    with client_for(settings.model_copy(update={"max_body_size": 10})) as client:
        response = client.post(
            "/api/v1/items", content=b"x" * 20, headers={"origin": "https://app.example"}
        )
        assert "access-control-allow-origin" not in response.headers


def test_access_log_line(capsys: pytest.CaptureFixture[str], client: TestClient) -> None:
    # capsys first: the log handler binds the stderr that is current when the app is made.
    capsys.readouterr()
    client.get("/api/v1/items/12345", headers={"x-request-id": "log-check-1"})
    client.get("/health")  # quiet path, succeeds: not logged
    lines = [
        line for line in capsys.readouterr().err.splitlines() if "logger=heliox.access" in line
    ]
    assert len(lines) == 1
    line = lines[0]
    assert re.search(
        r'message="GET /api/v1/items/12345 404" request_id=log-check-1 method=GET '
        r"path=/api/v1/items/12345 status=404 duration_ms=\d+(\.\d+)? client=\S+",
        line,
    ), line


def test_quiet_path_is_logged_when_it_fails(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with client_for(settings.model_copy(update={"access_log_quiet_paths": ["/nope"]})) as client:
        capsys.readouterr()
        client.get("/nope")
    assert 'message="GET /nope 404"' in capsys.readouterr().err


def test_metrics_by_route_template_and_status(client: TestClient) -> None:
    for item_id in (101, 102, 103):
        client.get(f"/api/v1/items/{item_id}")
    text = client.get("/metrics").text
    labels = r'method="GET",route="/api/v1/items/\{item_id\}",status="404"'
    series = re.search(r"heliox_http_requests_total\{" + labels + r"\} (\S+)", text)
    assert series, text[:2000]
    assert float(series.group(1)) >= 3
    assert "/api/v1/items/101" not in text  # raw paths never become labels
    inf_bucket = re.search(
        r'heliox_http_request_duration_seconds_bucket\{le="\+Inf",' + labels + r"\} (\S+)", text
    )
    assert inf_bucket, text[:2000]
    assert float(inf_bucket.group(1)) >= 3
    assert re.search(r"^heliox_db_pool_size \d", text, re.M)
    assert re.search(r"^heliox_db_pool_checked_out \d", text, re.M)


def test_unmatched_paths_share_one_label(client: TestClient) -> None:
    client.get("/random/abc")
    client.get("/random/def")
    text = client.get("/metrics").text
    assert 'route="<unmatched>",status="404"' in text
    assert "/random/abc" not in text
