"""The Redis-backed rate limit: per caller (key or token subject, a limit per role), failed
credentials per client address, shared by replicas, 429 with Retry-After, configurable."""

from __future__ import annotations

import pytest

from tests.helpers import API_KEY_HEADER, assert_error_body, client_for, create_key, make_settings
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
        # The same key on both replicas: one budget.
        replica_b.headers[API_KEY_HEADER] = replica_a.headers[API_KEY_HEADER]
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


def test_each_key_has_its_own_budget(database_url: str, redis_url: str) -> None:
    other = {API_KEY_HEADER: create_key(database_url, "reader")}
    with client_for(_settings(database_url, redis_url)) as client:  # type: ignore[arg-type]
        assert [client.get("/api/v1/items").status_code for _ in range(4)] == [200] * 3 + [429]
        # Same address, another key: not limited by the first key's requests.
        assert [client.get("/api/v1/items", headers=other).status_code for _ in range(3)] == [
            200
        ] * 3


def test_the_limit_is_set_per_role(database_url: str, redis_url: str) -> None:
    reader = {API_KEY_HEADER: create_key(database_url, "reader")}
    writer = {API_KEY_HEADER: create_key(database_url, "writer")}
    settings = _settings(
        database_url, redis_url, rate_limit_reader_requests=1, rate_limit_writer_requests=5
    )
    with client_for(settings, role=None) as client:  # type: ignore[arg-type]
        assert [client.get("/api/v1/items", headers=reader).status_code for _ in range(2)] == [
            200,
            429,
        ]
        limited = client.get("/api/v1/items", headers=reader)
        assert limited.json()["details"] == {"limit": 1, "window_seconds": 30}
        assert {client.get("/api/v1/items", headers=writer).status_code for _ in range(5)} == {200}


def test_failed_credentials_lock_the_address_out_valid_keys_included(
    database_url: str, redis_url: str
) -> None:
    valid = {API_KEY_HEADER: create_key(database_url, "reader")}
    settings = _settings(database_url, redis_url, rate_limit_auth_failures=4)
    with client_for(settings, role=None) as client:  # type: ignore[arg-type]
        guesses = [
            client.get("/api/v1/items", headers={API_KEY_HEADER: f"hx_guess{i:07d}_{'G' * 43}"})
            for i in range(6)
        ]
        assert [r.status_code for r in guesses] == [401] * 4 + [429] * 2
        body = assert_error_body(guesses[-1], 429, "rate_limited")
        assert body["message"] == "Too many failed credentials from this address; try again later"
        assert body["details"] == {"limit": 4, "window_seconds": 30}
        assert 1 <= int(guesses[-1].headers["retry-after"]) <= 30
        # A right guess now is refused like a wrong one: guessing cannot go on at full speed.
        assert client.get("/api/v1/items", headers=valid).status_code == 429
        assert client.get("/api/v1/items").status_code == 429  # no credential: a failure too
        assert client.get("/health").status_code == 200


def test_the_failure_budget_is_per_address(database_url: str, redis_url: str) -> None:
    valid = {API_KEY_HEADER: create_key(database_url, "reader")}
    settings = _settings(database_url, redis_url, rate_limit_auth_failures=2)
    with (
        client_for(settings, role=None) as guesser,
        client_for(  # type: ignore[arg-type]
            settings,  # type: ignore[arg-type]
            role=None,
            client=("192.0.2.7", 5000),
        ) as elsewhere,
    ):
        for _ in range(3):
            guesser.get("/api/v1/items", headers={API_KEY_HEADER: "hx_wrongwrong00_" + "W" * 43})
        assert guesser.get("/api/v1/items", headers=valid).status_code == 429
        assert elsewhere.get("/api/v1/items", headers=valid).status_code == 200
