"""Bad input against the running service: hand-written hostile requests, below what an OpenAPI
document can describe (raw bytes, broken framing, hostile headers and paths). No 5xx, ever; every
error the app answers carries DESIGN.md's body and the request's ID. schemathesis, over the whole
document, is test_contract.py."""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from bench.reliability.harness import contract_service
from bench.reliability.loaddriver import error_shape_ok
from tests.servers import TEST_API_KEY, GunicornServer

MAX_BODY = 4096  # a small MAX_BODY_SIZE makes the 413 cases cheap
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(scope="module")
def service(
    postgres_server: Any, migrated_template: str, redis_server: Any
) -> Iterator[GunicornServer]:
    with contract_service(
        postgres_server, migrated_template, redis_server.url, "fuzz_items", MAX_BODY
    ) as server:
        yield server


def check_error(status: int, headers: Any, body: bytes, sent_id: str | None = None) -> None:
    """An app error response: the body's shape, and the request ID echoed in header and body."""
    assert status < 500, (status, body[:300])
    header_id = headers.get("x-request-id")
    assert header_id, f"{status} without X-Request-ID: {body[:200]!r}"
    if status >= 400:
        ok, _ = error_shape_ok(body)
        assert ok, f"{status} body is not the error shape: {body[:300]!r}"
        assert json.loads(body)["request_id"] == header_id
    if sent_id is not None:
        assert header_id == sent_id


def raw(
    port: int, request: bytes, *, read_timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; parse one HTTP/1.1 response (Content-Length or close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        # The server may answer and close before the whole body is sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        length = int(headers.get("content-length", "-1"))
        while length >= 0 and len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, headers, body


def request(
    method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    # As an admin client (GunicornServer's key): these probe what lies below authentication.
    lines = [f"{method} {target} HTTP/1.1", "Host: reliability", "Connection: close"]
    lines.append(f"X-API-Key: {TEST_API_KEY}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and not any(
        k.lower() in ("content-length", "transfer-encoding") for k in headers or {}
    ):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def expect_error(
    server: GunicornServer, req: bytes, status: int | set[int], error: str | None = None
) -> dict[str, Any]:
    got, headers, body = raw(server.port, req)
    wanted = {status} if isinstance(status, int) else status
    assert got in wanted, (got, body[:300])
    check_error(got, headers, body)
    data: dict[str, Any] = json.loads(body)
    if error is not None:
        assert data["error"] == error
    return data


JSON = {"Content-Type": "application/json"}


def test_body_over_the_limit(service: GunicornServer) -> None:
    big = b'{"name": "' + b"x" * (MAX_BODY + 10) + b'"}'
    data = expect_error(service, request("POST", "/api/v1/items", JSON, big), 413,
                        "payload_too_large")  # fmt: skip
    assert str(MAX_BODY) in data["message"]
    # Declared size alone: refused before the body is read.
    declared = request("POST", "/api/v1/items", {**JSON, "Content-Length": str(10**9)})
    expect_error(service, declared, 413, "payload_too_large")
    # Chunked, no length: counted as it arrives.
    chunks = b"".join(b"%x\r\n%s\r\n" % (1000, b"y" * 1000) for _ in range(MAX_BODY // 1000 + 2))
    chunked = request(
        "POST", "/api/v1/items", {**JSON, "Transfer-Encoding": "chunked"}, chunks + b"0\r\n\r\n"
    )
    expect_error(service, chunked, 413, "payload_too_large")


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"name": }', b"[1, 2", b"\xff\xfe\x00", b"null", b"[]", b'"name"', b"{}",
     b'{"name": "x", "extra": 1}', b'{"name": ""}', b'{"name": "' + b"n" * 201 + b'"}',
     b'{"name": ' + b"[" * 2000 + b"]" * 2000 + b"}", b"1e999999", b'{"name": "\\ud800"}'],
    ids=["open-brace", "missing-value", "open-array", "binary", "null", "array", "string",
         "empty-object", "extra-field", "empty-name", "long-name", "deep-nesting", "huge-number",
         "lone-surrogate"],
)  # fmt: skip
def test_malformed_json(service: GunicornServer, body: bytes) -> None:
    # 400 when the bytes are not JSON text at all (FastAPI cannot decode them), else 422.
    data = expect_error(service, request("POST", "/api/v1/items", JSON, body), {400, 422})
    assert data["error"] in ("bad_request", "validation_error")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/xml", "", "application/json; charset=utf-32"],
)  # fmt: skip
def test_wrong_content_type(service: GunicornServer, content_type: str) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    got, response_headers, body = raw(
        service.port, request("POST", "/api/v1/items", headers, b'{"name": "typed"}')
    )
    # FastAPI reads a JSON body only when the type says JSON; otherwise the body is missing.
    assert got in (201, 415, 422), (got, body[:300])
    check_error(got, response_headers, body)
    if content_type != "application/json; charset=utf-32":
        assert got != 201, "a non-JSON content type was parsed as JSON"


@pytest.mark.parametrize(
    "value",
    ["has space", "<script>alert(1)</script>", "x" * 129, "x" * 8000, "../../etc/passwd",
     "quote\"d", "semi;colon", "ünïcödé", "%0d%0aSet-Cookie:%20a=b", "-", "a" * 128],
    ids=["space", "script", "129-chars", "8000-chars", "traversal", "quote", "semicolon",
         "non-ascii", "encoded-crlf", "dash", "128-chars"],
)  # fmt: skip
def test_hostile_request_ids(service: GunicornServer, value: str) -> None:
    raw_value = value.encode("utf-8").decode("latin-1")
    got, headers, body = raw(
        service.port, request("GET", "/api/v1/items/999999", {"X-Request-ID": raw_value})
    )
    assert got == 404, (got, body[:200])
    check_error(got, headers, body)
    echoed = headers["x-request-id"]
    if value == "a" * 128:
        assert echoed == value  # sane and at the length limit: kept
    else:
        assert UUID4.match(echoed), f"unsafe ID echoed: {echoed[:80]!r}"
    log = service.log()
    assert raw_value not in log or value in ("-", "a" * 128)


@pytest.mark.parametrize(
    "target",
    ["/api/v1/items/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
     "/api/v1/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/api/v1/items/..%2f..%2f",
     "/docs/../../etc/passwd", "//etc/passwd", "/api/v1/items/%00", "/api/v1/items/1%00",
     "/static/..%5c..%5cwindows%5cwin.ini", "/api/v1/items/" + "9" * 40],
)  # fmt: skip
def test_path_traversal(service: GunicornServer, target: str) -> None:
    got, headers, body = raw(service.port, request("GET", target))
    assert got in (404, 405, 422), (target, got, body[:200])
    check_error(got, headers, body)
    assert b"root:" not in body
    assert b"[fonts]" not in body


@pytest.mark.parametrize("length", [1_000, 8_000, 60_000])
def test_very_long_paths(service: GunicornServer, length: int) -> None:
    got, headers, body = raw(service.port, request("GET", "/api/v1/" + "a" * length))
    assert got < 500
    if "x-request-id" in headers:  # the app answered (not the HTTP parser in front of it)
        check_error(got, headers, body)
        assert got == 404
    else:
        assert got in (400, 414, 431), got


@pytest.mark.parametrize(
    "query",
    ["limit=1000000", "limit=101", "limit=0", "limit=-1", "offset=-1", "limit=abc",
     "offset=99999999999999999999999", "offset=" + "9" * 5000, "limit=1e3", "limit=100&limit=0"],
)  # fmt: skip
def test_huge_and_wrong_page_sizes(service: GunicornServer, query: str) -> None:
    data = expect_error(service, request("GET", f"/api/v1/items?{query}"), 422, "validation_error")
    assert data["details"]["errors"], data


def test_largest_page_is_bounded(service: GunicornServer) -> None:
    got, _, body = raw(service.port, request("GET", "/api/v1/items?limit=100&offset=0"))
    assert got == 200
    assert len(json.loads(body)["items"]) <= 100
    got, _, body = raw(service.port, request("GET", f"/api/v1/items?offset={2**31 - 1}"))
    assert got == 200
    assert json.loads(body)["items"] == []


@pytest.mark.parametrize(
    ("method", "target", "status"),
    [("BREW", "/health", {400, 405}), ("DELETE", "/health", 405), ("PUT", "/api/v1/items", 405),
     ("TRACE", "/api/v1/items", 405), ("PATCH", "/api/v1/items/1", 422)],
)  # fmt: skip
def test_odd_methods(
    service: GunicornServer, method: str, target: str, status: int | set[int]
) -> None:
    got, headers, body = raw(service.port, request(method, target, JSON, b"[]"))
    wanted = {status} if isinstance(status, int) else status
    assert got in wanted, (method, target, got, body[:200])
    if "x-request-id" in headers:
        check_error(got, headers, body)


def test_oversized_headers(service: GunicornServer) -> None:
    many = {f"X-Filler-{i}": "v" * 50 for i in range(200)}
    got, _, _ = raw(service.port, request("GET", "/health", many))
    assert got in (200, 400, 431), got
    huge = {"X-Huge": "h" * 100_000}
    got, _, _ = raw(service.port, request("GET", "/health", huge))
    assert got in (200, 400, 431), got
