"""Links between the operations on one resource (OpenAPI ``links``), derived from the paths.

The REST shape these routes follow: POST on a collection creates an item and answers 201 with
it, ``id`` included; the operations on ``{collection}/{parameter}`` act on that item. So the 201
links to each of them with ``parameter = $response.body#/id``, and each of them links to the
others with its own ``$request.path.parameter``: create, then read, update, delete, read again,
the workflows a client follows and schemathesis' stateful phase walks. A new resource of the
same shape is linked without a line here.
"""

from __future__ import annotations

import re
from typing import Any

_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_SCHEMA_REF = "#/components/schemas/"
_ONE_PARAMETER = re.compile(r"\{(\w+)\}")


def add_links(document: dict[str, Any]) -> None:
    paths: dict[str, dict[str, Any]] = document["paths"]
    for collection, collection_operations in paths.items():
        created = collection_operations.get("post", {}).get("responses", {}).get("201")
        if created is None or not _body_has_id(document, created):
            continue
        for item_path, path_item in paths.items():
            parameter = _item_parameter(collection, item_path)
            if parameter is None:
                continue
            operations = {m: op for m, op in path_item.items() if m in _METHODS}
            created.setdefault("links", {}).update(
                _links(operations.values(), parameter, "$response.body#/id")
            )
            for method, operation in operations.items():
                others = [op for m, op in operations.items() if m != method]
                _success(operation).setdefault("links", {}).update(
                    _links(others, parameter, f"$request.path.{parameter}")
                )


def _item_parameter(collection: str, path: str) -> str | None:
    """``item_id`` for ``/items/{item_id}`` under ``/items``; None for any other path."""
    prefix = collection.rstrip("/") + "/"
    if not path.startswith(prefix):
        return None
    match = _ONE_PARAMETER.fullmatch(path[len(prefix) :])
    return match.group(1) if match else None


def _links(operations: Any, parameter: str, value: str) -> dict[str, Any]:
    return {
        op["operationId"]: {"operationId": op["operationId"], "parameters": {parameter: value}}
        for op in operations
    }


def _body_has_id(document: dict[str, Any], response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref.startswith(_SCHEMA_REF):
        schema = document["components"]["schemas"][ref.removeprefix(_SCHEMA_REF)]
    return "id" in schema.get("properties", {})


def _success(operation: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, dict[str, Any]] = operation["responses"]
    return responses[min(status for status in responses if status.startswith("2"))]
