"""Every error status a route can answer, and when: the one list the OpenAPI document reads.

Each entry says which code answers it and a rule over what the route is (its path, parameters,
body and dependencies), so a new route is documented by what it is, not by a list kept beside
it. A new status is one entry, e.g. 401: ``ErrorAnswer(401, ..., depends_on(authenticate))``.
405 is not here: it answers a method no operation has (``Allow`` lists the ones that exist).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from starlette.routing import compile_path

from heliox.api.auth import authenticate
from heliox.api.deps import USES_DATABASE, get_db_health

RETRY_AFTER = "Retry-After"
WWW_AUTHENTICATE = "WWW-Authenticate"


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """What the rules read of a route."""

    path: str
    path_parameters: frozenset[str]
    takes_input: bool
    takes_body: bool
    dependencies: frozenset[Callable[..., Any]]

    @classmethod
    def of(cls, path: str, dependant: Dependant, body_field: object | None) -> RouteFacts:
        calls: set[Callable[..., Any]] = set()
        _collect_calls(dependant, calls)
        return cls(
            path=path,
            path_parameters=frozenset(compile_path(path)[2]),
            # FastAPI's own rule for its 422: any parameter, at any depth, or a body.
            takes_input=bool(get_flat_params(dependant)) or body_field is not None,
            takes_body=body_field is not None,
            dependencies=frozenset(calls),
        )


def _collect_calls(dependant: Dependant, into: set[Callable[..., Any]]) -> None:
    for sub in dependant.dependencies:
        if sub.call is not None:
            into.add(sub.call)
            # A dependency that calls others itself says so (api/auth.py Require).
            into.update(getattr(sub.call, "performs", ()))
        _collect_calls(sub, into)


Rule = Callable[[RouteFacts], bool]


def every_route(_route: RouteFacts) -> bool:
    return True


def takes_input(route: RouteFacts) -> bool:
    return route.takes_input


def takes_a_body(route: RouteFacts) -> bool:
    return route.takes_body


def names_a_resource(route: RouteFacts) -> bool:
    return bool(route.path_parameters)


def depends_on(*calls: Callable[..., Any]) -> Rule:
    wanted = frozenset(calls)

    def rule(route: RouteFacts) -> bool:
        return not wanted.isdisjoint(route.dependencies)

    return rule


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    description: str
    applies: Rule
    headers: tuple[str, ...] = ()  # response headers it always carries


ERROR_ANSWERS: tuple[ErrorAnswer, ...] = (
    # FastAPI's body reader: bytes it cannot decode as text (not UTF-8).
    ErrorAnswer(400, "The body cannot be read as JSON text.", takes_a_body),
    # api/auth.py: no credential, or one that is unknown, wrong, revoked or expired.
    ErrorAnswer(
        401,
        "No valid credential (an API key in X-API-Key, or a bearer token); `WWW-Authenticate` "
        "says so.",
        depends_on(authenticate),
        (WWW_AUTHENTICATE,),
    ),
    # api/auth.py Require: the caller's role is below what the operation needs.
    ErrorAnswer(
        403,
        "The credential is valid but its role does not allow this operation (reader: reads; "
        "writer: reads and writes; admin: also key management).",
        depends_on(authenticate),
    ),
    # The handlers: a path parameter names a resource, and it may not exist.
    ErrorAnswer(404, "No resource has this identifier.", names_a_resource),
    # HelioxMiddleware, before routing: Content-Length, or a chunked body as it arrives.
    ErrorAnswer(413, "The request body exceeds MAX_BODY_SIZE.", every_route),
    # core/errors.py: RequestValidationError, JSON that does not parse included.
    ErrorAnswer(
        422,
        "A parameter or the body is invalid (`details.errors`: type, loc, msg).",
        takes_input,
    ),
    # core/errors.py: sqlalchemy DataError.
    ErrorAnswer(
        422,
        "The database refused a value (`details.reason`: invalid_value).",
        depends_on(*USES_DATABASE),
    ),
    # api/auth.py's rate limit (on when Redis is configured and RATE_LIMIT_ENABLED).
    ErrorAnswer(
        429,
        "Too many requests from this caller in the window, or too many failed credentials from "
        "this client address (`details`: limit, window_seconds).",
        depends_on(authenticate),
        (RETRY_AFTER,),
    ),
    # HelioxMiddleware: an exception no handler took (details only in development).
    ErrorAnswer(500, "Unexpected server error.", every_route),
    # core/errors.py's outage handler, and the readiness check itself.
    ErrorAnswer(
        503,
        "The database is unavailable; try again shortly.",
        depends_on(*USES_DATABASE, get_db_health),
        (RETRY_AFTER,),
    ),
    # api/auth.py: Redis down and RATE_LIMIT_FAIL_OPEN=false; the OIDC issuer's keys unreachable.
    ErrorAnswer(
        503,
        "The rate limiter (only with RATE_LIMIT_FAIL_OPEN=false) or the identity provider is "
        "unavailable.",
        depends_on(authenticate),
        (RETRY_AFTER,),
    ),
)


def answers_for(
    route: RouteFacts, catalogue: tuple[ErrorAnswer, ...] = ERROR_ANSWERS
) -> dict[int, list[ErrorAnswer]]:
    """The error statuses this route can answer, each with the entries that cause it."""
    found: dict[int, list[ErrorAnswer]] = {}
    for answer in catalogue:
        if answer.applies(route):
            found.setdefault(answer.status, []).append(answer)
    return dict(sorted(found.items()))
