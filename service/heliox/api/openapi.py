"""The OpenAPI document: FastAPI's, completed from the code.

Built once from the app object, on first use (``app.openapi()``; ``/openapi.json`` serves it when
DOCS_ENABLED, and nothing else reads it, so no request path pays for it). FastAPI writes each
operation's parameters, body and success answer. This adds every error status that
api/answers.py gives the operation's route, all with the one ``Error`` body schema, the headers
every answer carries, and the links between the operations on a resource (api/links.py).
The reviewed copy is docs/openapi.json: ``make openapi`` rewrites it, a unit test compares.

``python -m heliox.api.openapi`` prints the document.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import TypeAdapter

from heliox.api.answers import (
    RETRY_AFTER,
    WWW_AUTHENTICATE,
    ErrorAnswer,
    RouteFacts,
    answers_for,
)
from heliox.api.auth import API_KEY_HEADER, authenticate
from heliox.api.links import add_links
from heliox.core.errors import ErrorBody
from heliox.core.requestid import SANE_PATTERN

ERROR_SCHEMA = "Error"
REQUEST_ID = "X-Request-ID"
_SCHEMA_REF = "#/components/schemas/"
_HEADER_REF = "#/components/headers/"
# FastAPI's own 422 body: Error replaces it on every operation.
_FASTAPI_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError")

HEADERS: dict[str, dict[str, Any]] = {
    REQUEST_ID: {
        "description": "The request's ID: the X-Request-ID sent when it is sane, else a new UUID4.",
        "required": True,
        "schema": {"type": "string", "pattern": f"^{SANE_PATTERN}$"},
    },
    RETRY_AFTER: {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    WWW_AUTHENTICATE: {
        "description": 'The challenge (RFC 6750): `Bearer realm="heliox"`, with '
        '`error="invalid_token"` when a credential was sent and refused.',
        "required": True,
        "schema": {"type": "string"},
    },
}
API_KEY_SCHEME = "ApiKey"
OIDC_SCHEME = "OIDC"


def security_schemes(oidc: bool) -> dict[str, dict[str, Any]]:
    """What /docs' Authorize button offers: the API key header, and OIDC tokens when
    configured (the one part of the document that follows a setting, OIDC_ISSUER)."""
    schemes: dict[str, dict[str, Any]] = {
        API_KEY_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": API_KEY_HEADER,
            "description": "An API key (`heliox-admin keys create`); also accepted as "
            "`Authorization: Bearer <key>`.",
        }
    }
    if oidc:
        schemes[OIDC_SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token from the OIDC issuer (OIDC_ISSUER, OIDC_AUDIENCE).",
        }
    return schemes


def operation_id(route: APIRoute) -> str:
    """The handler's name (``create_item``): what generated clients name their methods."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi  # FastAPI's, which keeps its result in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            complete(generate(), app)
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], app: FastAPI) -> None:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas[ERROR_SCHEMA] = TypeAdapter(ErrorBody).json_schema(ref_template=_SCHEMA_REF + "{model}")
    components["headers"] = HEADERS
    schemes = security_schemes(app.state.resources.settings.oidc_enabled)
    components["securitySchemes"] = schemes
    for context in iter_route_contexts(app.routes):
        path, methods = context.path_format, context.methods
        documented = isinstance(context.original_route, APIRoute) and context.include_in_schema
        if not documented or path is None or not methods:
            continue
        facts = RouteFacts.of(path, context.dependant, context.body_field)
        answers = answers_for(facts)
        for method in methods:
            operation = document["paths"][path][method.lower()]
            if authenticate in facts.dependencies:
                operation["security"] = [{name: []} for name in schemes]
            responses: dict[str, Any] = operation["responses"]
            for status, causes in answers.items():
                responses[str(status)] = _error_response(causes)
            for response in responses.values():
                response.setdefault("headers", {})[REQUEST_ID] = {"$ref": _HEADER_REF + REQUEST_ID}
            operation["responses"] = dict(sorted(responses.items()))
    for name in _FASTAPI_ERROR_SCHEMAS:  # in order: the first one refers to the second
        if f'"{_SCHEMA_REF}{name}"' not in json.dumps(document):
            schemas.pop(name, None)
    add_links(document)


def _error_response(causes: list[ErrorAnswer]) -> dict[str, Any]:
    # A header is documented (as required) only when every cause of the status sends it.
    always = set.intersection(*(set(cause.headers) for cause in causes))
    headers = {name: {"$ref": _HEADER_REF + name} for name in sorted(always)}
    return {
        "description": " ".join(cause.description for cause in causes),
        "headers": headers,
        "content": {"application/json": {"schema": {"$ref": _SCHEMA_REF + ERROR_SCHEMA}}},
    }


def render(document: dict[str, Any]) -> str:
    """The snapshot's text: stable, reviewable, one key per line."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    from heliox.app import create_app
    from heliox.core.config import Settings

    # The document does not depend on the settings (a unit test holds it so); these keep a
    # developer's environment (ENV=production without a database, say) out of the way.
    settings = Settings(env="development", database_url="sqlite://", docs_enabled=True)
    print(render(create_app(settings).openapi()), end="")
