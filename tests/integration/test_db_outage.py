"""PostgreSQL stopped, frozen, or unreachable: 503 with the error body in bounded time, and
recovery without a restart. These tests own a private server (they break it on purpose)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.helpers import client_for, make_settings
from tests.server_fixtures import TEMPLATE_DB, require_servers, run_migrate
from tests.servers import PostgresServer, TcpProxy


@pytest.fixture(scope="module")
def fragile_postgres() -> Iterator[PostgresServer]:
    require_servers()
    with PostgresServer() as server:
        url = server.create_database(TEMPLATE_DB)
        assert run_migrate(url, "upgrade").returncode == 0
        yield server


@pytest.fixture
def fragile_db(fragile_postgres: PostgresServer) -> Iterator[str]:
    name = f"o_{uuid.uuid4().hex[:10]}"
    fragile_postgres.create_database(name, template=TEMPLATE_DB)
    yield name
    fragile_postgres.thaw()
    if fragile_postgres.postmaster_pid is None:
        fragile_postgres.start()
    fragile_postgres.drop_database(name)


def _settings(url: str, **extra: object) -> object:
    return make_settings(
        database_url=url, db_connect_timeout=2, db_request_timeout=3, health_db_timeout=1.5,
        health_db_cache_seconds=1.0, db_pool_timeout=2, **extra,
    )  # fmt: skip


def _timed(
    client: TestClient, method: str, path: str, **kwargs: object
) -> tuple[int, dict[str, object], float]:
    started = time.monotonic()
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    body = response.json() if response.content else {}
    return response.status_code, body, elapsed


def _assert_503(status: int, body: dict[str, object], elapsed: float, bound: float) -> None:
    assert status == 503, body
    assert body["error"] == "service_unavailable"
    assert body["request_id"]
    assert elapsed < bound, f"took {elapsed:.1f}s, bound {bound}s"


def _wait_until_ok(client: TestClient, path: str, timeout: float = 15) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if client.get(path).status_code == 200:
            return time.monotonic() - started
        time.sleep(0.2)
    pytest.fail(f"{path} did not recover within {timeout}s")


def test_stopped_postgres(fragile_postgres: PostgresServer, fragile_db: str) -> None:
    with client_for(_settings(fragile_postgres.url(fragile_db))) as client:  # type: ignore[arg-type]
        item_id = client.post("/api/v1/items", json={"name": "a"}).json()["id"]
        assert client.get("/health/db").status_code == 200
        fragile_postgres.stop("fast")

        time.sleep(1.1)  # let the cached readiness result expire
        for method, path, kwargs in (
            ("GET", f"/api/v1/items/{item_id}", {}),
            ("GET", "/api/v1/items", {}),
            ("POST", "/api/v1/items", {"json": {"name": "b"}}),
            ("GET", "/health/db", {}),
        ):
            _assert_503(*_timed(client, method, path, **kwargs), bound=5)
        assert client.get("/health").status_code == 200  # liveness never touches the DB

        fragile_postgres.start()
        _wait_until_ok(client, f"/api/v1/items/{item_id}")
        assert client.get("/health/db").status_code in (200, 503)  # may still be cached
        _wait_until_ok(client, "/health/db", timeout=3)


def test_frozen_postgres(fragile_postgres: PostgresServer, fragile_db: str) -> None:
    """Every process SIGSTOPped: sockets stay open and nothing answers, ever."""
    with client_for(_settings(fragile_postgres.url(fragile_db))) as client:  # type: ignore[arg-type]
        item_id = client.post("/api/v1/items", json={"name": "a"}).json()["id"]
        fragile_postgres.freeze()
        try:
            time.sleep(1.1)
            _assert_503(*_timed(client, "GET", f"/api/v1/items/{item_id}"), bound=5)
            _assert_503(*_timed(client, "GET", "/health/db"), bound=3)
            # Cached: the next probes within a second do not start another check.
            status, _, elapsed = _timed(client, "GET", "/health/db")
            assert (status, elapsed < 0.5) == (503, True)
            assert client.get("/health").status_code == 200
        finally:
            fragile_postgres.thaw()
        _wait_until_ok(client, f"/api/v1/items/{item_id}")
        _wait_until_ok(client, "/health/db")


def test_unreachable_postgres(fragile_postgres: PostgresServer, fragile_db: str) -> None:
    """The network path drops everything: new connections hang, open ones stall."""
    with TcpProxy(fragile_postgres.port) as proxy:
        url = fragile_postgres.url(fragile_db, port=proxy.port)
        with client_for(_settings(url)) as client:  # type: ignore[arg-type]
            item_id = client.post("/api/v1/items", json={"name": "a"}).json()["id"]
            proxy.blackhole()
            try:
                time.sleep(1.1)
                _assert_503(*_timed(client, "GET", f"/api/v1/items/{item_id}"), bound=5)
                _assert_503(*_timed(client, "GET", "/health/db"), bound=3)
                # Later requests: the stalled pooled connection is gone or stuck; new ones
                # time out connecting. Still bounded.
                _assert_503(*_timed(client, "GET", "/api/v1/items"), bound=5)
            finally:
                proxy.restore()
            _wait_until_ok(client, f"/api/v1/items/{item_id}")
            _wait_until_ok(client, "/health/db")
