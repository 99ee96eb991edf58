"""The service as the image runs it: gunicorn, uvicorn workers, real PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from heliox.core.metrics import FLUSH_INTERVAL_SECONDS
from tests.servers import AUTH_HEADER, TEST_API_KEY, GunicornServer, PostgresServer


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={**AUTH_HEADER, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _post_json(url: str, payload: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json", **AUTH_HEADER},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


def _env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RATE_LIMIT_ENABLED": "false",
        **extra,
    }


def _count(metrics: str, route: str, status: str) -> float:
    pattern = (
        r'heliox_http_requests_total\{method="GET",route="' + re.escape(route)
        + r'",status="' + status + r'"\} (\S+)'
    )  # fmt: skip
    match = re.search(pattern, metrics)
    return float(match.group(1)) if match else 0.0


def test_metrics_add_up_across_workers(database_url: str, redis_url: str) -> None:
    with GunicornServer(_env(database_url, redis_url), workers=2) as server:
        metrics_dir = Path(server.env["PROMETHEUS_MULTIPROC_DIR"])

        def writers() -> set[str]:
            return {p.name.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}

        # New connection per request; keep going until both workers have served some.
        requests = 0
        while requests < 40 or len(writers()) < 2:
            assert requests < 2000, "one worker took every connection"
            assert _get(f"{server.url}/api/v1/items/{requests + 1}")[0] == 404
            requests += 1
        # Whichever worker answers the scrape, the count is the sum over all workers, once
        # each has flushed its batch (at most FLUSH_INTERVAL_SECONDS later).
        time.sleep(FLUSH_INTERVAL_SECONDS + 0.5)
        for _ in range(6):
            text = _get(f"{server.url}/metrics")[1].decode()
            assert _count(text, "/api/v1/items/{item_id}", "404") == requests
        assert re.search(r"^heliox_db_pool_size 10\.0$", text, re.M), "5 per worker, 2 workers"

        # A worker dies: its counts stay, gunicorn replaces it, child_exit marks it dead.
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while victim in server.worker_pids() or len(server.worker_pids()) < 2:
            assert time.monotonic() < deadline, "worker not replaced"
            time.sleep(0.1)
        server_ready = time.monotonic() + 10
        while _get(f"{server.url}/health")[0] != 200:
            assert time.monotonic() < server_ready
        text = _get(f"{server.url}/metrics")[1].decode()
        assert _count(text, "/api/v1/items/{item_id}", "404") == requests
        assert not list(metrics_dir.glob(f"gauge_livesum_{victim}.db"))


def test_sigterm_drains_in_flight_requests(
    database_url: str, redis_url: str, postgres_server: PostgresServer
) -> None:
    env = _env(database_url, redis_url, GRACEFUL_TIMEOUT="10")
    with GunicornServer(env, workers=1) as server:
        body = json.dumps({"name": "in flight"}).encode()
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        slow.sendall(
            b"POST /api/v1/items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + b"X-API-Key: "
            + TEST_API_KEY.encode()
            + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:5]
        )
        time.sleep(0.5)  # the request is in the worker, its body half sent
        server.signal(signal.SIGTERM)
        time.sleep(1.0)

        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()

        slow.sendall(body[5:])
        response = slow.recv(65536).decode()
        slow.close()
        assert response.startswith("HTTP/1.1 201"), response
        started = time.monotonic()
        assert server.wait(timeout=15) == 0
        assert time.monotonic() - started < 10

        log = server.log()
        assert 'message="database engine disposed"' in log
        assert 'message="redis client closed"' in log
        rows = postgres_server.execute(
            "SELECT count(*) FROM items WHERE name = 'in flight'",
            dbname=database_url.rsplit("/", 1)[1],
        )
        assert rows == [(1,)]


def test_every_line_in_our_format_without_passwords(
    database_url: str, redis_url: str, postgres_server: PostgresServer
) -> None:
    with GunicornServer(_env(database_url, redis_url), workers=2) as server:
        _get(f"{server.url}/api/v1/items", headers={"X-Request-ID": "trace-abc"})
        _get(f"{server.url}/nope", headers={"X-Request-ID": "trace-404"})
        _post_json(f"{server.url}/api/v1/items", {"name": "logged"})
        server.stop()
        lines = [line for line in server.log().splitlines() if line.strip()]
    assert len(lines) > 8
    kv = re.compile(
        r"^timestamp=\S+ level=[A-Z]+ logger=\S+ message=(\S+|\"([^\"\\]|\\.)*\") request_id=\S+"
    )
    strays = [line for line in lines if not kv.match(line)]
    assert not strays, strays
    loggers = {re.search(r" logger=(\S+)", line).group(1) for line in lines}  # type: ignore[union-attr]
    assert {"gunicorn.error", "uvicorn.error", "heliox.access", "heliox.lifespan"} <= loggers
    access = [line for line in lines if "request_id=trace-abc" in line]
    assert len(access) == 1
    assert re.search(r"method=GET path=/api/v1/items status=200 duration_ms=[\d.]+", access[0])
    assert any("request_id=trace-404" in line and "status=404" in line for line in lines)
    assert postgres_server.password not in "\n".join(lines)
    assert "heliox:***@127.0.0.1" in "\n".join(lines)  # the URL is logged, masked


def test_json_log_format(database_url: str, redis_url: str) -> None:
    with GunicornServer(_env(database_url, redis_url, LOG_FORMAT="json"), workers=1) as server:
        _get(f"{server.url}/api/v1/items", headers={"X-Request-ID": "json-1"})
        server.stop()
        records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert all(
        {"timestamp", "level", "logger", "message", "request_id"} <= r.keys() for r in records
    )
    access = [r for r in records if r["request_id"] == "json-1"]
    assert access[0]["status"] == 200
    assert access[0]["path"] == "/api/v1/items"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ENV": "production"}, "heliox: configuration error: DATABASE_URL is not set"),
        (
            {"ENV": "staging", "DATABASE_URL": "sqlite:///x.db"},
            "heliox: configuration error: DATABASE_URL must be a PostgreSQL URL when ENV=staging",
        ),
        # Used to fail inside gunicorn's log setup: "Error: Unable to configure logger".
        ({"LOG_LEVEL": "verbose"}, "heliox: configuration error: LOG_LEVEL: Input should be"),
        (
            {"ENV": "production", "DATABASE_URL": "postgresql://u:s3cr3t@db:54x2/heliox"},
            "heliox: configuration error: DATABASE_URL: the port is not a number",
        ),
    ],
)
def test_refuses_to_start_with_one_clear_line(env: dict[str, str], expected: str) -> None:
    server = GunicornServer({**env, "DATABASE_URL": env.get("DATABASE_URL", "")}, workers=1)
    try:
        process = server.spawn()
        assert process.wait(timeout=30) == 1
        lines = [line for line in server.log().splitlines() if line.strip()]
        assert [line for line in lines if "configuration error" in line] == [
            line for line in lines if line.startswith(expected)
        ]
        assert any(line.startswith(expected) for line in lines), lines
        assert "Traceback" not in server.log()
        assert "Booting worker" not in server.log()
        assert "s3cr3t" not in server.log()
    finally:
        server.close()
