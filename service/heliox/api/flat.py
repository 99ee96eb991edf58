"""FlatRoute: FastAPI's route, with a direct handler for the routes whose dependencies are flat.

FastAPI solves a route's dependencies with one general algorithm (sub-dependencies, caching,
scopes, ``yield``, overrides, telemetry), at a cost of about 17 us per dependency and 25 us per
path parameter on every request: on a cached item read that is a third of the service's time.
Most of our routes need none of its generality: their dependencies are ``async def dep(request)``
and their parameters are path and query scalars. For such a route this class builds a handler
that does the same steps in the same order, as straight-line code:

1. each dependency, in declaration order (the route's ``dependencies`` first), awaited with the
   request; what it raises goes to the app's exception handlers as before;
2. the path and query parameters: a present scalar is validated by its own field (what FastAPI
   calls for it); anything else (a missing or invalid value, a list, a model) by FastAPI's own
   function (``request_params_to_args``), so values, defaults and error entries are FastAPI's;
3. any error: ``RequestValidationError`` (422, core/errors.py), as FastAPI raises it;
4. the endpoint, awaited with the values; it must return a ``Response``, sent as it is.

Everything else is FastAPI's, unchanged: matching, the OpenAPI document (built from the same
``dependant``), the ASGI wrapper and its exception handling. A route that does not fit (a body,
a header parameter, a ``yield`` dependency, a sub-dependency, a repeated dependency, an endpoint
not annotated to return a ``Response``) gets FastAPI's handler, and so does every request while
``app.dependency_overrides`` is not empty (tests override dependencies with any signature).
tests/unit/test_flat_route.py holds the two handlers to the same answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, get_type_hints

from fastapi._compat import ModelField
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class _Step:
    """One dependency: what to call, whether it takes the request, where its value goes."""

    __slots__ = ("call", "name", "takes_request")

    def __init__(self, dependant: Dependant) -> None:
        assert dependant.call is not None
        self.call: Callable[..., Awaitable[Any]] = dependant.call
        self.name = dependant.name
        self.takes_request = dependant.request_param_name is not None


def _is_async(call: Callable[..., Any]) -> bool:
    if inspect.isasyncgenfunction(call) or inspect.isgeneratorfunction(call):
        return False
    if inspect.iscoroutinefunction(call):
        return True
    method = getattr(call, "__call__", None)  # noqa: B004 (an instance with async __call__)
    return not inspect.isfunction(call) and inspect.iscoroutinefunction(method)


def _injects_only_the_request(dependant: Dependant) -> bool:
    """No header or cookie parameter and nothing FastAPI makes for it (websocket, connection,
    response, background tasks, security scopes): at most the request."""
    return (
        not dependant.header_params
        and not dependant.cookie_params
        and dependant.websocket_param_name is None
        and dependant.http_connection_param_name is None
        and dependant.response_param_name is None
        and dependant.background_tasks_param_name is None
        and dependant.security_scopes_param_name is None
    )


def _is_flat_dependency(dependant: Dependant) -> bool:
    """``async def dep(request)`` (or no parameter at all), nothing FastAPI must inject."""
    return (
        dependant.call is not None
        and _is_async(dependant.call)
        and _injects_only_the_request(dependant)
        and not dependant.dependencies
        and not dependant.path_params
        and not dependant.query_params
        and not dependant.body_params
        and not dependant.own_oauth_scopes
    )


class _Param:
    """A path or query parameter of a scalar type with one name: read and validated directly."""

    __slots__ = ("alias", "field", "loc", "name")

    def __init__(self, field: ModelField) -> None:
        self.field = field
        self.name = field.name
        self.alias = field.alias
        self.loc = (field.field_info.in_.value, field.alias)  # type: ignore[attr-defined]


_SCALARS = (int, float, str, bool)


def _direct_params(fields: list[ModelField]) -> list[_Param] | None:
    """The fields as directly read parameters, or None if one is not a plain scalar (those go
    through FastAPI's function: lists, models, aliases with choices)."""
    if not all(
        field.field_info.annotation in _SCALARS and field.field_info.validation_alias is None
        for field in fields
    ):
        return None
    return [_Param(field) for field in fields]


def _read_params(params: list[_Param], source: Mapping[str, Any], values: dict[str, Any]) -> bool:
    """Each parameter's validated value into ``values``; False as soon as one is missing or
    invalid (FastAPI's function then answers for all of them, errors and defaults included)."""
    for param in params:
        raw = source.get(param.alias)
        if raw is None:
            return False
        value, errors = param.field.validate(raw, values, loc=param.loc)
        if errors:
            return False
        values[param.name] = value
    return True


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    try:
        returned = get_type_hints(endpoint).get("return")
    except (NameError, TypeError):
        return False
    return isinstance(returned, type) and issubclass(returned, Response)


def flat_steps(route: APIRoute) -> list[_Step] | None:
    """The route's dependencies as steps, or None when FastAPI's handler must serve it."""
    dependant = route.dependant
    endpoint = dependant.call
    if (
        endpoint is None
        or not inspect.iscoroutinefunction(endpoint)
        or not _returns_response(endpoint)
        or route.body_field is not None
        or not _injects_only_the_request(dependant)
    ):
        return None
    subs = dependant.dependencies
    if not all(_is_flat_dependency(sub) for sub in subs):
        return None
    calls = [sub.call for sub in subs]
    if len({id(call) for call in calls}) != len(calls):
        return None  # FastAPI calls a repeated dependency once: keep its handler for that
    return [_Step(sub) for sub in subs]


class FlatRoute(APIRoute):
    """An APIRoute that serves flat routes with :func:`flat_handler` (see the module's doc)."""

    # The path a request must have to match, for a route without parameters on the app's own
    # router (set by match_static_paths_exactly); None: FastAPI's matching.
    exact_path: str | None = None

    def get_route_handler(self) -> Handler:
        general = super().get_route_handler()
        steps = flat_steps(self)
        if steps is None:
            return general
        return flat_handler(self, steps, general)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """A request for another path is no match, said without FastAPI's route context lookup
        and Starlette's regex: the router tries its routes in order, and each one tried before
        the route that matches costs about a microsecond."""
        exact = self.exact_path
        if (
            exact is not None
            and scope["type"] == "http"
            and scope["path"] != exact
            and not scope.get("root_path")
        ):
            return Match.NONE, {}
        return super().matches(scope)


def match_static_paths_exactly(router: APIRouter) -> None:
    """Match the router's own FlatRoutes without path parameters by comparing the path.

    Only the router's own: a route of an included router is matched through FastAPI's route
    context, with the include's prefix, so its path alone does not say what it matches. The
    comparison is what Starlette's anchored regex of a static path does, except that the regex's
    ``$`` also accepts one trailing newline (``/health%0A``), which is now a 404 like any other
    unknown path. With a ``root_path``, FastAPI's matching decides.
    """
    for route in router.routes:
        if isinstance(route, FlatRoute) and not route.param_convertors:
            route.exact_path = route.path


def flat_handler(route: APIRoute, steps: list[_Step], general: Handler) -> Handler:
    dependant = route.dependant
    endpoint: Callable[..., Awaitable[Response]] = dependant.call  # type: ignore[assignment]
    path_params, query_params = dependant.path_params, dependant.query_params
    direct_path, direct_query = _direct_params(path_params), _direct_params(query_params)
    request_name = dependant.request_param_name
    overrides_provider = route.dependency_overrides_provider

    async def handle(request: Request) -> Response:
        if overrides_provider is not None and overrides_provider.dependency_overrides:
            return await general(request)
        values: dict[str, Any] = {}
        for step in steps:
            value = await (step.call(request) if step.takes_request else step.call())
            if step.name is not None:
                values[step.name] = value
        errors: list[Any] = []
        if path_params and (
            direct_path is None or not _read_params(direct_path, request.path_params, values)
        ):
            found, errors = request_params_to_args(path_params, request.path_params)
            values.update(found)
        if query_params:
            query = request.query_params
            if direct_query is None or not _read_params(direct_query, query, values):
                found, more = request_params_to_args(query_params, query)
                values.update(found)
                errors += more
        if errors:
            raise RequestValidationError(errors, body=None)
        if request_name is not None:
            values[request_name] = request
        response = await endpoint(**values)
        if not isinstance(response, Response):
            raise TypeError(f"{endpoint.__qualname__} must return a Response (FlatRoute)")
        return response

    return handle
