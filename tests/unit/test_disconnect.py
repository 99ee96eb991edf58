"""A request whose client went away is recorded as 499, not as a server error, and not answered.

Raw ASGI calls, so the test plays the server: its ``receive()`` reports ``http.disconnect``
while the handler waits, and, as a server does for a request nobody waits for any more, it may
cancel the request. Two ways a request ends that way: cancelled (``asyncio.CancelledError``), or
the app reads the disconnect (Starlette's ``ClientDisconnect``; FastAPI turns one met while
reading the body into a 400, which is not the client's fault either).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import Request
from prometheus_client import REGISTRY
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from heliox.app import create_app
from heliox.core import metrics
from heliox.core.config import Settings
from heliox.core.disconnect import client_disconnected
from heliox.core.middleware import HelioxMiddleware
from heliox.core.resources import Resources

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _requests(method: str, route: str, status: int) -> float:
    metrics.flush()
    labels = {"method": method, "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("heliox_http_requests_total", labels) or 0.0


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


class _Client:
    """The server's side of one request: a body sent in part, then the client goes away."""

    def __init__(self, body_parts: list[bytes] | None = None) -> None:
        self.parts = list(body_parts or [])
        self.gone = asyncio.Event()
        self.waiting = asyncio.Event()  # the app asked for more than the client sent
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        if self.parts:
            return {"type": "http.request", "body": self.parts.pop(0), "more_body": True}
        self.waiting.set()
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.name == "heliox.access"]


def _errors(caplog: pytest.LogCaptureFixture) -> list[Any]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_client_gone_while_the_app_reads_the_body(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """POST /api/v1/items: half the body, then the client leaves while the handler waits."""
    app = create_app(settings)
    before = {s: _requests("POST", "/api/v1/items", s) for s in (400, 499, 500)}

    async def scenario() -> _Client:
        resources: Resources = app.state.resources
        await resources.start()
        try:
            client = _Client([b'{"name": "ha'])
            headers = [(b"content-type", b"application/json"), (b"content-length", b"40")]
            call = asyncio.create_task(app(_scope("POST", "/api/v1/items", headers),
                                           client.receive, client.send))  # fmt: skip
            await client.waiting.wait()
            client.gone.set()
            await asyncio.wait_for(call, 5)
            return client
        finally:
            await resources.stop()

    client = asyncio.run(scenario())
    assert client.sent == [], "nobody is there to read an answer"
    assert _requests("POST", "/api/v1/items", 499) == before[499] + 1
    assert _requests("POST", "/api/v1/items", 400) == before[400]
    assert _requests("POST", "/api/v1/items", 500) == before[500]
    (line,) = _access_lines(caplog)
    assert (line.status, line.path) == (499, "/api/v1/items")
    assert _errors(caplog) == []


def _middleware(settings: Settings, inner: ASGIApp) -> HelioxMiddleware:
    return HelioxMiddleware(inner, resources=Resources(settings))


async def _handler_waits_until_cancelled(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.Event().wait()  # a slow database, a slow upstream: never answers in time


async def _handler_reads_the_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()  # e.g. Request.body(), Request.is_disconnected()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect


def test_cancelled_request_is_a_499_and_the_cancellation_goes_on(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = _middleware(settings, _handler_waits_until_cancelled)
    before = {s: _requests("GET", metrics.UNMATCHED_ROUTE, s) for s in (499, 500)}

    async def scenario() -> tuple[_Client, asyncio.Task[None]]:
        client = _Client()
        call = asyncio.create_task(middleware(_scope("GET", "/slow"), client.receive, client.send))
        await asyncio.sleep(0.01)  # the handler waits
        client.gone.set()  # receive() now reports http.disconnect, and the server cancels
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return client, call

    client, call = asyncio.run(scenario())
    assert call.cancelled()  # not swallowed: the server's cancellation completes
    assert client.sent == [], "no error body for a cancelled request"
    assert _requests("GET", metrics.UNMATCHED_ROUTE, 499) == before[499] + 1
    assert _requests("GET", metrics.UNMATCHED_ROUTE, 500) == before[500]
    (line,) = _access_lines(caplog)
    assert line.status == 499
    assert _errors(caplog) == []


def test_cancelled_while_the_client_still_waits_stays_a_500(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn cancels a request still running past its graceful shutdown timeout and answers
    it 500 itself: that client did not leave, and the record says what it got."""
    middleware = _middleware(settings, _handler_waits_until_cancelled)
    before = {s: _requests("GET", metrics.UNMATCHED_ROUTE, s) for s in (499, 500)}

    async def scenario() -> tuple[_Client, asyncio.Task[None]]:
        client = _Client()
        call = asyncio.create_task(middleware(_scope("GET", "/slow"), client.receive, client.send))
        await asyncio.sleep(0.01)
        call.cancel()  # the client is still connected
        with pytest.raises(asyncio.CancelledError):
            await call
        return client, call

    client, call = asyncio.run(scenario())
    assert call.cancelled()
    assert client.sent == []  # the server answers, not this layer
    assert _requests("GET", metrics.UNMATCHED_ROUTE, 500) == before[500] + 1
    assert _requests("GET", metrics.UNMATCHED_ROUTE, 499) == before[499]
    (line,) = _access_lines(caplog)
    assert line.status == 500


def test_client_disconnected_answers_without_waiting() -> None:
    async def scenario() -> list[bool]:
        async def gone() -> Message:
            return {"type": "http.disconnect"}

        async def body() -> Message:
            return {"type": "http.request", "body": b"x", "more_body": True}

        still_there = asyncio.Event()

        async def waits() -> Message:
            await still_there.wait()
            return {"type": "http.disconnect"}

        async def broken() -> Message:
            raise RuntimeError("receive after the response")

        answers = [client_disconnected(r) for r in (gone, body, waits, broken)]
        await asyncio.sleep(0)
        still_there.set()  # nothing was left waiting on it
        await asyncio.sleep(0)
        return answers

    assert asyncio.run(scenario()) == [True, False, False, False]


def test_disconnect_read_by_the_app_is_a_499(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    middleware = _middleware(settings, _handler_reads_the_disconnect)
    before = {s: _requests("GET", metrics.UNMATCHED_ROUTE, s) for s in (499, 500)}

    async def scenario() -> _Client:
        client = _Client()
        call = asyncio.create_task(middleware(_scope("GET", "/slow"), client.receive, client.send))
        await client.waiting.wait()  # the handler waits on the client
        client.gone.set()
        await asyncio.wait_for(call, 5)  # ends normally: nothing for the server to do
        return client

    client = asyncio.run(scenario())
    assert client.sent == []
    assert _requests("GET", metrics.UNMATCHED_ROUTE, 499) == before[499] + 1
    assert _requests("GET", metrics.UNMATCHED_ROUTE, 500) == before[500]
    (line,) = _access_lines(caplog)
    assert line.status == 499
    assert _errors(caplog) == []


def test_a_route_reading_its_own_body_when_the_client_leaves(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that reads the request itself meets Starlette's ClientDisconnect unwrapped."""
    app = create_app(settings)

    @app.post("/unit/raw-body")
    async def raw_body(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    async def scenario() -> _Client:
        client = _Client([b"partial"])
        headers = [(b"content-length", b"100")]
        call = asyncio.create_task(app(_scope("POST", "/unit/raw-body", headers),
                                       client.receive, client.send))  # fmt: skip
        await client.waiting.wait()
        client.gone.set()
        await asyncio.wait_for(call, 5)
        return client

    client = asyncio.run(scenario())
    assert client.sent == []
    assert _requests("POST", "/unit/raw-body", 499) == 1
    assert _requests("POST", "/unit/raw-body", 500) == 0
    assert [line.status for line in _access_lines(caplog)] == [499]
    assert _errors(caplog) == []
