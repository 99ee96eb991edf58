"""The Redis-backed rate limit: shared by replicas, 429 with Retry-After, configurable."""

from __future__ import annotations

import pytest

from tests.helpers import client_for, make_settings
from tests.servers import RedisServer


def _settings(database_url: str, redis_url: str, **extra: object) -> object:
    return make_settings(
        database_url=database_url, redis_url=redis_url, rate_limit_requests=3,
        rate_limit_window_seconds=30, **extra,
    )  # fmt: skip


def test_429_with_retry_after_and_error_body(database_url: str, redis_url: str) -> None:
    with client_for(_settings(database_url, redis_url)) as client:  # type: ignore[arg-type]
        statuses = [client.get("/api/v1/items").status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = client.get("/api/v1/items", headers={"x-request-id": "rl-1"})
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 30
        assert limited.json() == {
            "error": "rate_limited",
            "message": "Too many requests: at most 3 per 30s",
            "request_id": "rl-1",
            "details": {"limit": 3, "window_seconds": 30},
        }
        # Probes and metrics are never limited.
        assert client.get("/health").status_code == 200
        assert client.get("/health/db").status_code == 200


def test_429_is_readable_by_an_allowed_browser_origin(database_url: str, redis_url: str) -> None:
    settings = _settings(
        database_url, redis_url, cors_enabled=True, cors_origins=["https://app.example"]
    )
    origin = {"origin": "https://app.example"}
    with client_for(settings) as client:  # type: ignore[arg-type]
        for _ in range(3):
            assert client.get("/api/v1/items", headers=origin).status_code == 200
        limited = client.get("/api/v1/items", headers=origin)
        assert limited.status_code == 429
        assert limited.headers["access-control-allow-origin"] == "https://app.example"
        assert "Retry-After" in limited.headers["access-control-expose-headers"]
        other = client.get("/api/v1/items", headers={"origin": "https://evil.example"})
        assert other.status_code == 429
        assert "access-control-allow-origin" not in other.headers


def test_the_limit_is_shared_by_replicas(database_url: str, redis_url: str) -> None:
    settings = _settings(database_url, redis_url)
    with client_for(settings) as replica_a, client_for(settings) as replica_b:  # type: ignore[arg-type]
        assert replica_a.get("/api/v1/items").status_code == 200
        assert replica_b.get("/api/v1/items").status_code == 200
        assert replica_a.get("/api/v1/items").status_code == 200
        assert replica_b.get("/api/v1/items").status_code == 429


def test_off_means_off(database_url: str, redis_url: str) -> None:
    with client_for(_settings(database_url, redis_url, rate_limit_enabled=False)) as client:  # type: ignore[arg-type]
        assert {client.get("/api/v1/items").status_code for _ in range(10)} == {200}


@pytest.mark.parametrize(("fail_open", "expected"), [(True, 200), (False, 503)])
def test_redis_down(
    database_url: str, redis_url: str, redis_server: RedisServer, fail_open: bool, expected: int
) -> None:
    settings = _settings(database_url, redis_url, rate_limit_fail_open=fail_open)
    with client_for(settings) as client:  # type: ignore[arg-type]
        redis_server.stop()
        try:
            response = client.get("/api/v1/items")
            assert response.status_code == expected
            if expected == 503:
                assert response.json()["error"] == "service_unavailable"
                assert response.headers["retry-after"] == "1"
        finally:
            redis_server.start()
