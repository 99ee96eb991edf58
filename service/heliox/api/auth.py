"""The auth dependencies every /api/v1 route carries: who is calling (401, 429) and whether
their role allows this operation (403).

A dependency, not a step of HelioxMiddleware: it runs only on the routes that declare it, so
/health, /health/db, / and /metrics do no auth work at all; its refusals go through the same
exception handlers as every other error (error body, request ID, CORS); and the OpenAPI document
reads it (api/answers.py documents 401, 403 and 429 on the routes that depend on
``authenticate``; api/openapi.py adds the security schemes).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.exceptions import HTTPException

from heliox.core.auth.gate import Gate, Outcome, Verdict
from heliox.core.auth.roles import Caller, Role

API_KEY_HEADER = "X-API-Key"
_API_KEY = API_KEY_HEADER.lower().encode()
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# RFC 6750: a bearer challenge; API keys are accepted as bearer values too.
CHALLENGE = 'Bearer realm="heliox"'
_INVALID = {"WWW-Authenticate": f'{CHALLENGE}, error="invalid_token"'}


class ApiError(HTTPException):
    """An HTTP error with the error body's ``details`` (core/errors.py sends them)."""

    def __init__(
        self,
        status: int,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers)
        self.details = details


def credential_of(request: Request) -> str | None:
    """X-API-Key, else the value of ``Authorization: Bearer``."""
    bearer: str | None = None
    for name, value in request.scope["headers"]:
        if name == _API_KEY:
            return value.decode("latin-1").strip() or None
        if name == b"authorization":
            scheme, _, rest = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and rest.strip():
                bearer = rest.strip()
    return bearer


def bearer_matches(request: Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (constant-time)."""
    expected = f"Bearer {token}".encode()
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            return hmac.compare_digest(value.strip(), expected)
    return False


# Where the caller is kept for the rest of the request: Require authenticates, and a route that
# also takes CallerDep gets the same caller without a second check.
CALLER_SCOPE_KEY = "heliox.caller"


async def authenticate(request: Request) -> Caller:
    known: Caller | None = request.scope.get(CALLER_SCOPE_KEY)
    if known is not None:
        return known
    gate: Gate = request.app.state.resources.gate
    client = request.scope.get("client")
    verdict = await gate.admit(credential_of(request), client[0] if client else "unknown")
    if verdict.outcome is Outcome.ok:
        assert verdict.caller is not None
        request.scope[CALLER_SCOPE_KEY] = verdict.caller
        return verdict.caller
    raise _refusal(verdict)


_UNAUTHORIZED = {
    Outcome.missing: (
        f"Missing credential: send an API key in {API_KEY_HEADER} "
        "or a token in Authorization: Bearer",
        {"WWW-Authenticate": CHALLENGE},
    ),
    Outcome.invalid: ("Invalid credential", _INVALID),
    Outcome.expired: ("The credential has expired", _INVALID),
}


def _refusal(verdict: Verdict) -> ApiError:
    outcome = verdict.outcome
    if outcome in _UNAUTHORIZED:
        message, headers = _UNAUTHORIZED[outcome]
        return ApiError(401, message, headers=headers)
    retry = {"Retry-After": str(verdict.retry_after)}
    limits = {"limit": verdict.limit, "window_seconds": verdict.window}
    if outcome is Outcome.blocked:
        message = "Too many failed credentials from this address; try again later"
        return ApiError(429, message, limits, retry)
    if outcome is Outcome.limited:
        message = f"Too many requests: at most {verdict.limit} per {verdict.window}s"
        return ApiError(429, message, limits, retry)
    if outcome is Outcome.issuer_down:
        return ApiError(503, "The identity provider is unavailable, try again shortly", None, retry)
    return ApiError(503, "Rate limiter unavailable, try again shortly", None, {"Retry-After": "1"})


CallerDep = Annotated[Caller, Depends(authenticate)]


class Require:
    """A router's dependency: the caller's role must allow the operation. Reads (GET) need
    ``reader``, anything else ``writer``, and never less than ``minimum`` (``admin`` for key
    management), so a new write route is protected without a line of its own.

    It calls ``authenticate`` itself rather than declaring it a sub-dependency: FastAPI solves
    each dependency at a cost of about 17 us a request, on every /api/v1 call."""

    # What the OpenAPI rules read (api/answers.py): a route that requires a role authenticates.
    performs = (authenticate,)

    def __init__(self, minimum: Role = Role.reader) -> None:
        self.minimum = minimum

    async def __call__(self, request: Request) -> Caller:
        caller = await authenticate(request)
        needed = Role.reader if request.method in _SAFE_METHODS else Role.writer
        if self.minimum.rank > needed.rank:
            needed = self.minimum
        if not caller.allows(needed):
            have = caller.role.value if caller.role else "no role"
            raise ApiError(
                403,
                f"This operation needs the {needed.value} role (the credential has {have})",
                {"needed": needed.value, "role": caller.role.value if caller.role else None},
            )
        return caller
