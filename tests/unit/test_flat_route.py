"""FlatRoute (api/flat.py): the flat routes answer exactly as FastAPI's own handler would.

Every request of the matrix below is sent twice to the same app: once served by the direct
handler, once by FastAPI's (a non-empty ``app.dependency_overrides`` sends every request there).
Status, body and headers must agree, request IDs and dates aside.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import fastapi.routing
import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.routing import APIRoute, APIRouter
from fastapi.testclient import TestClient
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from heliox.api.flat import FlatRoute, flat_steps, match_static_paths_exactly
from heliox.app import create_app
from heliox.core.config import Settings
from tests.helpers import create_key

_VARYING = {"x-request-id", "date"}


def _unrelated() -> None:
    """Overridden to make FastAPI serve every request (FlatRoute defers to it then)."""


def _answer(client: TestClient, method: str, path: str, key: str | None) -> tuple[Any, ...]:
    headers = {"X-API-Key": key} if key is not None else {}
    response = client.request(method, path, headers=headers)
    kept = sorted((k, v) for k, v in response.headers.items() if k not in _VARYING)
    body = response.content.replace(response.headers.get("x-request-id", "").encode(), b"<id>")
    return response.status_code, body, kept


REQUESTS = [
    ("GET", "/health"),
    ("GET", "/api/v1/items/1"),
    ("GET", "/api/v1/items/999"),
    ("GET", "/api/v1/items/0"),
    ("GET", "/api/v1/items/abc"),
    ("GET", "/api/v1/items/99999999999"),
    ("GET", "/api/v1/items"),
    ("GET", "/api/v1/items?offset=1&limit=2"),
    ("GET", "/api/v1/items?offset=-1&limit=1000"),
    ("GET", "/api/v1/items?limit=abc"),
    ("GET", "/api/v1/items?limit=1&limit=2"),
    ("HEAD", "/api/v1/items/1"),
    ("DELETE", "/api/v1/items/abc"),
    ("DELETE", "/api/v1/items/999"),
]


@pytest.mark.parametrize("role", ["admin", "reader", None, "wrong"])
def test_flat_routes_answer_as_fastapi_does(settings: Settings, role: str | None) -> None:
    assert settings.database_url is not None
    key = {"admin": None, "reader": None, None: None, "wrong": "hx_nottheone_" + "x" * 43}[role]
    if role in ("admin", "reader"):
        key = create_key(settings.database_url, role)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        created = client.post(
            "/api/v1/items",
            json={"name": "one"},
            headers={"X-API-Key": create_key(settings.database_url, "writer")},
        )
        assert created.status_code == 201
        flat = [_answer(client, method, path, key) for method, path in REQUESTS]
        app.dependency_overrides[_unrelated] = lambda: None
        general = [_answer(client, method, path, key) for method, path in REQUESTS]
    for request, ours, theirs in zip(REQUESTS, flat, general, strict=True):
        assert ours == theirs, request
    # The matrix reaches every kind of answer: found, not found, invalid, refused.
    expected = {"admin": {200, 404, 422}, "reader": {200, 403, 404, 422}}.get(role or "", {401})
    assert {status for status, _, _ in flat} >= expected


def test_the_data_routes_and_probes_are_flat(settings: Settings) -> None:
    """Their speed depends on it (docs/ARCHITECTURE.md, "Performance")."""
    app = create_app(settings)
    flat = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and flat_steps(route) is not None
        for method in route.methods
    }
    assert {
        ("GET", "/health"),
        ("GET", "/api/v1/items/{item_id}"),
        ("GET", "/api/v1/items"),
        ("DELETE", "/api/v1/items/{item_id}"),
    } <= flat


def test_a_flat_route_does_not_solve_dependencies_the_general_way(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.database_url is not None
    key = create_key(settings.database_url, "reader")

    async def unreachable(**_: Any) -> Any:
        raise AssertionError("FastAPI's solver ran")

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", unreachable)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/api/v1/items/1", headers={"X-API-Key": key}).status_code == 404
        # GET / returns a dict: FastAPI's handler, whose solver fails here (HelioxMiddleware's 500).
        assert client.get("/").status_code == 500


async def _request_dependency(request: Request) -> str:
    return request.url.path


async def _yielding() -> AsyncIterator[str]:
    yield "x"


def _sync_dependency(request: Request) -> str:
    return "sync"


async def _nested(value: Annotated[str, Depends(_request_dependency)]) -> str:
    return value


def _route(app: FastAPI, path: str) -> APIRoute:
    (route,) = [r for r in app.routes if isinstance(r, APIRoute) and r.path == path]
    return route


def test_what_is_not_flat_keeps_fastapis_handler() -> None:
    app = FastAPI()
    app.router.route_class = FlatRoute

    @app.get("/flat/{n}")
    async def flat(
        n: int, found: Annotated[str, Depends(_request_dependency)], q: int = Query(1)
    ) -> Response:
        return Response(f"{n} {found} {q}")

    @app.get("/returns-a-dict")
    async def returns_a_dict() -> dict[str, int]:
        return {"a": 1}

    @app.get("/yield")
    async def with_yield(value: Annotated[str, Depends(_yielding)]) -> Response:
        return Response(value)

    @app.get("/sync-dependency")
    async def with_sync(value: Annotated[str, Depends(_sync_dependency)]) -> Response:
        return Response(value)

    @app.get("/nested")
    async def nested(value: Annotated[str, Depends(_nested)]) -> Response:
        return Response(value)

    @app.get("/twice", dependencies=[Depends(_request_dependency)])
    async def twice(value: Annotated[str, Depends(_request_dependency)]) -> Response:
        return Response(value)

    @app.get("/header")
    async def header(x_thing: Annotated[str | None, fastapi.Header()] = None) -> Response:
        return Response(x_thing or "")

    @app.post("/body")
    async def body(data: dict[str, int]) -> Response:
        return Response(str(data))

    assert flat_steps(_route(app, "/flat/{n}")) is not None
    for path in (
        "/returns-a-dict",
        "/yield",
        "/sync-dependency",
        "/nested",
        "/twice",
        "/header",
        "/body",
    ):
        assert flat_steps(_route(app, path)) is None, path
    with TestClient(app) as client:
        assert client.get("/flat/3?q=4").text == "3 /flat/3 4"
        assert client.get("/flat/x").status_code == 422
        assert client.get("/yield").text == "x"
        assert client.get("/twice").text == "/twice"
        assert client.post("/body", json={"a": 1}).text == "{'a': 1}"


_PATHS = [
    "/health",
    "/health/",
    "/health/db",
    "/healthz",
    "/",
    "",
    "/metrics",
    "/api/v1/items",
    "/api/v1/items/",
    "/api/v1/items/5",
    "/prefix/health",
    "/prefix/api/v1/items",
    "/prefix",
]


def _scope(path: str, root_path: str = "", method: str = "GET") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": root_path}


@pytest.mark.parametrize("root_path", ["", "/prefix"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_static_route_matches_what_fastapi_matches(
    settings: Settings, root_path: str, method: str
) -> None:
    """The app's routes without parameters compare the path instead of running FastAPI's
    matching, and match the same requests; the one difference is a trailing newline, which
    Starlette's regex (``$``) accepted."""
    app = create_app(settings)
    exact = [r for r in app.router.routes if isinstance(r, FlatRoute) and r.exact_path]
    assert {r.path for r in exact} >= {"/health", "/health/db", "/", "/api/v1/items"}
    for route in exact:
        for path in [*_PATHS, f"{route.path}\n"]:
            scope = _scope(path, root_path, method)
            ours, _ = route.matches(dict(scope))
            fastapis, _ = APIRoute.matches(route, dict(scope))
            if path == f"{route.path}\n" and not root_path:
                assert ours == Match.NONE
                assert fastapis != Match.NONE
            else:
                assert ours == fastapis, (route.path, path, root_path, method)


def test_a_newline_after_a_static_path_is_not_that_path(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health%0A").status_code == 404


def test_routes_of_an_included_router_keep_fastapis_matching() -> None:
    """An included router's route is matched with the include's prefix (FastAPI's route
    context): its own path does not say what it matches, so it is never compared."""
    inner = APIRouter(route_class=FlatRoute)

    @inner.get("/inner")
    async def inner_route() -> Response:
        return Response("inner")

    app = FastAPI()
    app.router.route_class = FlatRoute

    @app.get("/outer")
    async def outer_route() -> Response:
        return Response("outer")

    app.include_router(inner, prefix="/sub")
    match_static_paths_exactly(app.router)
    assert _route(app, "/outer").exact_path == "/outer"
    assert inner.routes[0].exact_path is None  # type: ignore[attr-defined]
    with TestClient(app) as client:
        assert client.get("/outer").text == "outer"
        assert client.get("/sub/inner").text == "inner"
        assert client.get("/inner").status_code == 404
