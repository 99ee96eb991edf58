"""The error body ``{"error", "message", "request_id", "details"?}`` and the handlers that send it.

Every error status goes through :func:`error_response`: HTTP exceptions (404, 405, ...),
validation errors (422), values the database refuses (``DataError``: 422), database outages
(503) and, via the middleware, unhandled exceptions (500, no traceback unless ENV=development).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Annotated, Any, NotRequired

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import ConfigDict, Field, with_config
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from typing_extensions import TypedDict  # pydantic reads TypedDicts only from here on 3.11

from heliox.core.allow import allowed_methods
from heliox.core.log_format import request_id_var
from heliox.core.requestid import SANE_PATTERN

logger = logging.getLogger("heliox.errors")

ERROR_TYPES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


# DESIGN.md's error body; the OpenAPI document's `Error` schema is made from this type, and its
# docstring is that schema's description.
@with_config(ConfigDict(extra="forbid", title="Error"))
class ErrorBody(TypedDict):
    """The body of every error answer (4xx, 5xx)."""

    error: Annotated[
        str,
        Field(pattern="^[a-z][a-z0-9_]*$", description="Stable snake_case name of the error"),
    ]
    message: str
    request_id: Annotated[
        str, Field(pattern=f"^{SANE_PATTERN}$", description="Also in the X-Request-ID header")
    ]
    details: NotRequired[dict[str, Any]]


class DatabaseUnavailable(Exception):
    """The database did not answer in time or refused the connection."""


class PayloadTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body exceeds the limit of {limit} bytes")


def error_type(status: int) -> str:
    known = ERROR_TYPES.get(status)
    if known is not None:
        return known
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def error_body(status: int, message: str, details: dict[str, Any] | None = None) -> ErrorBody:
    body: ErrorBody = {
        "error": error_type(status),
        "message": message,
        "request_id": request_id_var.get(),
    }
    if details:
        body["details"] = details
    return body


def error_bytes(status: int, message: str, details: dict[str, Any] | None = None) -> bytes:
    return json.dumps(error_body(status, message, details), default=str).encode()


def error_response(
    status: int,
    message: str,
    details: dict[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        error_bytes(status, message, details),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ClientDisconnect):
        # FastAPI reports a client that left while its body was read as a 400 ("error parsing
        # the body"): not the request's fault, and nobody to answer. The middleware records it.
        raise exc.__cause__
    detail = exc.detail
    details: dict[str, Any] | None = getattr(exc, "details", None)  # api/auth.py's ApiError
    if isinstance(detail, str):
        message = detail
    else:
        message = HTTPStatus(exc.status_code).phrase
        details = {"detail": jsonable_encoder(detail)}
    return error_response(exc.status_code, message, details, exc.headers)


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    """405 with the path's full ``Allow``; OPTIONS on a known path is answered, not refused.

    OPTIONS asks which methods a resource supports (RFC 9110, 9.3.7): 204 with ``Allow`` answers
    it. CORS preflights never get here: CORSMiddleware, when on, answers them before routing.
    """
    allow = {"Allow": ", ".join(allowed_methods(request.app.routes, request.scope))}
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=allow)
    return error_response(405, HTTPStatus.METHOD_NOT_ALLOWED.phrase, None, allow)


def _clean_validation_error(error: dict[str, Any]) -> dict[str, Any]:
    # The raw input can be large or sensitive; the location and message say enough.
    return {key: error[key] for key in ("type", "loc", "msg") if key in error}


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean_validation_error(dict(e)) for e in exc.errors()]
    return error_response(422, "Request validation failed", {"errors": jsonable_encoder(errors)})


async def _data_error(request: Request, exc: Exception) -> Response:
    # A value the schemas let through but the database refuses (bad encoding, out of range):
    # the request's fault, not ours. The driver's message may quote the value: logged only.
    cause = getattr(exc, "orig", None) or exc
    logger.warning(
        "database refused a value",
        extra={"error_type": type(cause).__name__, "path": request.url.path},
    )
    return error_response(
        422, "The database refused a value in the request", {"reason": "invalid_value"}
    )


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    reason = type(exc).__name__
    logger.warning("database unavailable", extra={"error_type": reason, "path": request.url.path})
    return error_response(
        503, "Database unavailable, try again shortly", {"reason": reason}, {"Retry-After": "1"}
    )


DATABASE_OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    DatabaseUnavailable,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(405, _method_not_allowed)  # by status: before the class handler
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sa_exc.DataError, _data_error)
    for exc_type in DATABASE_OUTAGE_ERRORS:
        app.add_exception_handler(exc_type, _database_unavailable)
