"""The one pure-ASGI middleware every HTTP request passes through.

Request ID, the request's trace span, security headers, body size limit, the 500 error body
for unhandled exceptions (with CORS headers for an allowed Origin on the errors answered here),
499 for a request whose client went away, metrics and the access log live in a single layer:
each extra ASGI layer costs a few percent of throughput, and this path is what /health is
benchmarked on. Each concern's logic is in its own module (requestid, tracing and otel, cors,
disconnect, metrics, errors); this class only sequences them. Authentication and the rate limit
are not here: they depend on who is calling, which the /api routes' dependency finds out
(api/auth.py), so probes pay nothing.
"""

from __future__ import annotations

import asyncio
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heliox.core import metrics
from heliox.core.access_log import access_line
from heliox.core.cors import ErrorCors
from heliox.core.disconnect import CLIENT_CLOSED_REQUEST, client_disconnected
from heliox.core.errors import PayloadTooLarge, error_bytes
from heliox.core.log_format import request_id_var
from heliox.core.requestid import pick_request_id

if TYPE_CHECKING:
    from heliox.core.resources import Resources

logger = logging.getLogger("heliox.errors")

_DOCS_PREFIXES = ("/docs", "/redoc", "/openapi.json")


def _security_headers(
    production_like: bool,
) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """Headers for API responses and for the interactive docs (HTML that needs its scripts).

    API responses carry the OWASP REST set; Referrer-Policy and Cross-Origin-Opener-Policy
    only act on documents, so only the docs pages get them (every header is work on every
    response, and /health is benchmarked).
    """
    base = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]
    if production_like:
        base.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    api = [*base, (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")]
    docs = [
        *base,
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
    ]
    return api, docs


class HelioxMiddleware:
    def __init__(
        self, app: ASGIApp, resources: Resources, cors: dict[str, Any] | None = None
    ) -> None:
        self.app = app
        self.resources = resources
        self.cors = ErrorCors(cors) if cors is not None else None
        settings = resources.settings
        self.max_body = settings.max_body_size
        self.access_log = settings.access_log
        self.quiet_paths = frozenset(settings.access_log_quiet_paths)
        self.api_headers, self.docs_headers = _security_headers(not settings.is_development)
        self.show_exceptions = settings.is_development

    # One flat function on purpose: it runs for every request, and calls cost throughput.
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0912, PLR0915
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        incoming_id: bytes | None = None
        content_length: bytes | None = None
        origin: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming_id = value
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"origin":
                origin = value
        request_id = pick_request_id(incoming_id)
        token = request_id_var.set(request_id)
        # Tracing: off unless configured (then the span is current until the access line).
        tracer = self.resources.tracer
        span = tracer.begin(scope, request_id) if tracer is not None else None
        path: str = scope["path"]
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = message.get("headers")
                headers = list(headers) if headers else []
                headers += (
                    self.docs_headers if path.startswith(_DOCS_PREFIXES) else self.api_headers
                )
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            if content_length is not None and not self._length_ok(content_length):
                await _send_error(
                    send_with_headers,
                    413,
                    PayloadTooLarge(self.max_body).detail,
                    extra=self._cors_headers(origin),
                )
            else:
                await self.app(
                    scope,
                    self._limited(receive) if chunked else receive,
                    send_with_headers,
                )
        except PayloadTooLarge as exc:
            if started:
                raise
            await _send_error(send_with_headers, 413, exc.detail, extra=self._cors_headers(origin))
        except asyncio.CancelledError:
            if not started and client_disconnected(receive):
                status = CLIENT_CLOSED_REQUEST
            raise  # the cancellation must go on (500 stays for one the client still waits on)
        except ClientDisconnect:
            # The app read the client's disconnect (errors.py unwraps the 400 FastAPI makes of
            # one met while reading the body): nobody to answer.
            if not started:
                status = CLIENT_CLOSED_REQUEST
        except Exception as exc:
            if span is not None:
                span.failed(exc)
            if started:
                logger.exception("unhandled error after the response started")
                raise
            logger.exception("unhandled error", extra={"path": path})
            details = (
                {"exception": f"{type(exc).__name__}: {exc}"} if self.show_exceptions else None
            )
            await _send_error(
                send_with_headers,
                500,
                "Internal server error",
                details,
                extra=self._cors_headers(origin),
            )
        finally:
            route = getattr(scope.get("route"), "path", None)
            self._record(scope, path, route, status, perf_counter() - start)
            if span is not None:
                span.end(route, status)
            request_id_var.reset(token)

    def _cors_headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]] | None:
        return self.cors.headers(origin) if self.cors is not None else None

    def _record(
        self, scope: Scope, path: str, route: str | None, status: int, elapsed: float
    ) -> None:
        metrics.observe(scope["method"], route or metrics.UNMATCHED_ROUTE, status, elapsed)
        if self.access_log and (status >= 400 or path not in self.quiet_paths):
            client = scope.get("client")
            access_line(scope["method"], path, status, elapsed, client[0] if client else "-")

    def _length_ok(self, raw: bytes) -> bool:
        try:
            return int(raw) <= self.max_body
        except ValueError:
            return False

    def _limited(self, receive: Receive) -> Receive:
        """Count the bytes of a body sent without Content-Length (chunked)."""
        received = 0
        limit = self.max_body

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        return limited_receive


async def _send_error(
    send: Send,
    status: int,
    message: str,
    details: dict[str, Any] | None = None,
    retry_after: int | None = None,
    *,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = error_bytes(status, message, details)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
