"""405 answers list every method of the path in ``Allow``; OPTIONS is answered 204 with it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers import assert_error_body, client_for, make_settings

ITEMS = "/api/v1/items"


def allow(response: object) -> list[str]:
    value = response.headers["allow"]  # type: ignore[attr-defined]
    return [method.strip() for method in value.split(",")]


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("PUT", ITEMS, ["GET", "OPTIONS", "POST"]),
        ("DELETE", ITEMS, ["GET", "OPTIONS", "POST"]),
        ("POST", f"{ITEMS}/7", ["DELETE", "GET", "OPTIONS", "PATCH"]),
        ("PUT", "/health", ["GET", "OPTIONS"]),
        ("POST", "/", ["GET", "OPTIONS"]),
    ],
)
def test_405_allows_every_method_of_the_path(
    client: TestClient, method: str, path: str, expected: list[str]
) -> None:
    # Starlette's router advertised only the first matching route's methods (POST for ITEMS).
    response = client.request(method, path)
    assert_error_body(response, 405, "method_not_allowed")
    assert allow(response) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (ITEMS, ["GET", "OPTIONS", "POST"]),
        (f"{ITEMS}/7", ["DELETE", "GET", "OPTIONS", "PATCH"]),
        ("/health", ["GET", "OPTIONS"]),
    ],
)
def test_options_is_204_with_allow(client: TestClient, path: str, expected: list[str]) -> None:
    response = client.options(path)
    assert response.status_code == 204
    assert response.content == b""
    assert allow(response) == expected
    assert response.headers["x-request-id"]


def test_options_on_an_unknown_path_is_404(client: TestClient) -> None:
    assert_error_body(client.options("/nope"), 404, "not_found")


def test_cors_preflight_is_still_answered_by_cors(sqlite_url: str) -> None:
    settings = make_settings(
        database_url=sqlite_url, cors_enabled=True, cors_origins=["https://app.example"]
    )
    with client_for(settings) as client:
        preflight = client.options(
            ITEMS,
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
            },
        )
        plain = client.options(ITEMS)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert plain.status_code == 204
    assert allow(plain) == ["GET", "OPTIONS", "POST"]
