"""Real clients leaving mid-request, under gunicorn: recorded as 499 (client closed request).

Not a server error and not the request's fault, in the access line and the metrics. A request
cancelled while its client still waits (uvicorn past its graceful shutdown timeout) is a 500,
which is what uvicorn answers it.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
import urllib.request

import psycopg
import pytest

from heliox.core.metrics import FLUSH_INTERVAL_SECONDS
from tests.servers import TEST_API_KEY, GunicornServer


def _send(server: GunicornServer, method: str, path: str, rid: str, body: bytes) -> socket.socket:
    """A new connection with the request's head sent; the caller sends the body (or part)."""
    connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    connection.sendall(
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {TEST_API_KEY}\r\nX-Request-ID: {rid}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    return connection


def _access_line(log: str, rid: str) -> str:
    lines = [line for line in log.splitlines() if f"request_id={rid} " in line]
    assert len(lines) == 1, lines
    return lines[0]


def _wait_for_line(server: GunicornServer, rid: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while f"request_id={rid} " not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {"ENV": "production", "DATABASE_URL": database_url, "RATE_LIMIT_ENABLED": "false"}


def test_client_gone_while_sending_the_body(env: dict[str, str]) -> None:
    """Half a body, then the client leaves: was a 400 ("error parsing the body")."""
    with GunicornServer(env, workers=2) as server:
        body = json.dumps({"name": "never finished"}).encode()
        client = _send(server, "POST", "/api/v1/items", "gone-body", body)
        client.sendall(body[:5])
        time.sleep(0.5)  # the handler waits for the rest of the body
        client.close()
        _wait_for_line(server, "gone-body")
        time.sleep(FLUSH_INTERVAL_SECONDS + 0.5)
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        server.stop()
        log = server.log()
    line = _access_line(log, "gone-body")
    assert re.search(r"method=POST path=/api/v1/items status=499 ", line), line
    series = 'heliox_http_requests_total{method="POST",route="/api/v1/items",status="499"}'
    assert f"{series} 1.0" in text
    assert 'route="/api/v1/items",status="400"' not in text
    assert "level=ERROR" not in log


def test_request_cancelled_at_shutdown(env: dict[str, str], database_url: str) -> None:
    """Two PATCHes wait on a row the test holds locked; one client leaves; the worker stops and
    uvicorn cancels both past its graceful timeout. The one whose client left was a 500."""
    env = {**env, "GRACEFUL_TIMEOUT": "3", "DB_STATEMENT_TIMEOUT_MS": "0"}
    with GunicornServer(env, workers=1) as server:
        body = b'{"name": "hot"}'
        created = _send(server, "POST", "/api/v1/items", "create", body)
        created.sendall(body)
        assert created.recv(65536).startswith(b"HTTP/1.1 201")
        created.close()
        with psycopg.connect(database_url) as locker:
            locker.execute("SELECT 1 FROM items WHERE id = 1 FOR UPDATE")
            change = b'{"name": "changed"}'
            leaves = _send(server, "PATCH", "/api/v1/items/1", "leaves", change)
            stays = _send(server, "PATCH", "/api/v1/items/1", "stays", change)
            leaves.sendall(change)
            stays.sendall(change)
            time.sleep(1)  # both wait on the lock, inside the worker
            leaves.close()
            time.sleep(0.3)
            server.signal(signal.SIGTERM)
            answer = stays.recv(65536)  # after uvicorn's graceful timeout (2 s here)
            stays.close()
            assert server.wait(timeout=20) == 0
            locker.rollback()
        log = server.log()
    assert answer.startswith(b"HTTP/1.1 500"), answer  # uvicorn's own answer to a cancel
    assert "status=499 " in _access_line(log, "leaves")
    assert "status=500 " in _access_line(log, "stays")
