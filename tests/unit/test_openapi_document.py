"""The OpenAPI document says every status each operation can answer, with one error schema,
the same for every setting, and links the operations on an item (api/openapi.py)."""

from __future__ import annotations

from typing import Annotated, Any

import jsonschema
import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from heliox.api.answers import (
    ERROR_ANSWERS,
    ErrorAnswer,
    RouteFacts,
    answers_for,
    depends_on,
)
from heliox.api.auth import Require
from heliox.api.deps import DB
from heliox.app import create_app
from heliox.core.config import Settings
from tests.helpers import client_for, make_settings
from tests.servers import free_port

ERROR_REF = {"$ref": "#/components/schemas/Error"}
# The reviewed table: what each operation answers besides success, and why (api/answers.py).
AUTH = {"401", "403", "429"}  # every /api/v1 operation: api/auth.py
EXPECTED = {
    ("get", "/health"): {"200", "413", "500"},
    ("get", "/health/db"): {"200", "413", "500", "503"},
    ("get", "/"): {"200", "413", "500"},
    ("post", "/api/v1/items"): {"201", "400", "413", "422", "500", "503"} | AUTH,
    ("get", "/api/v1/items"): {"200", "413", "422", "500", "503"} | AUTH,
    ("get", "/api/v1/items/{item_id}"): {"200", "404", "413", "422", "500", "503"} | AUTH,
    ("patch", "/api/v1/items/{item_id}"): {"200", "400", "404", "413", "422", "500", "503"} | AUTH,
    ("delete", "/api/v1/items/{item_id}"): {"204", "404", "413", "422", "500", "503"} | AUTH,
    ("post", "/api/v1/keys"): {"201", "400", "413", "422", "500", "503"} | AUTH,
    ("get", "/api/v1/keys"): {"200", "413", "422", "500", "503"} | AUTH,
    ("get", "/api/v1/keys/{key_id}"): {"200", "404", "413", "422", "500", "503"} | AUTH,
    ("delete", "/api/v1/keys/{key_id}"): {"204", "404", "413", "422", "500", "503"} | AUTH,
}


def document(settings: Settings | None = None) -> dict[str, Any]:
    return create_app(settings or make_settings()).openapi()


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m, p): op for p, item in doc["paths"].items() for m, op in item.items()}


def test_every_operation_documents_every_status_it_can_answer() -> None:
    found = {key: set(op["responses"]) for key, op in operations(document()).items()}
    assert found == EXPECTED


def test_every_error_answer_has_the_error_body_and_the_request_id() -> None:
    doc = document()
    for key, op in operations(doc).items():
        for status, response in op["responses"].items():
            assert response["headers"]["X-Request-ID"], (key, status)
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == ERROR_REF
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], (key, status)
    assert not {"HTTPValidationError", "ValidationError"} & doc["components"]["schemas"].keys()
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message", "request_id"]
    assert error["additionalProperties"] is False


def test_success_schemas_are_exact() -> None:
    ops = operations(document())

    def schema(key: tuple[str, str], status: str) -> Any:
        return ops[key]["responses"][status]["content"]["application/json"]["schema"]

    assert schema(("get", "/health"), "200") == {"$ref": "#/components/schemas/Liveness"}
    assert schema(("get", "/health/db"), "200") == {"$ref": "#/components/schemas/Readiness"}
    assert schema(("get", "/"), "200") == {"$ref": "#/components/schemas/ServiceInfo"}
    assert schema(("post", "/api/v1/items"), "201") == {"$ref": "#/components/schemas/ItemRead"}
    assert "content" not in ops[("delete", "/api/v1/items/{item_id}")]["responses"]["204"]
    cache = ops[("get", "/api/v1/items/{item_id}")]["responses"]["200"]["headers"]["X-Cache"]
    assert cache["schema"]["enum"] == ["hit", "miss"]


def test_a_new_route_is_documented_by_what_it_is() -> None:
    # Nobody lists statuses for these: the rules read the path, parameters and dependencies.
    app = create_app(make_settings())

    @app.get("/api/v1/things/{thing_id}", dependencies=[Depends(Require())])
    async def get_thing(thing_id: int, db: DB) -> dict[str, int]:
        return {}

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {}

    ops = operations(app.openapi())
    thing = ops[("get", "/api/v1/things/{thing_id}")]
    assert set(thing["responses"]) == {
        "200", "401", "403", "404", "413", "422", "429", "500", "503"
    }  # fmt: skip
    assert thing["security"] == [{"ApiKey": []}]
    assert set(ops[("get", "/ping")]["responses"]) == {"200", "413", "500"}
    assert "security" not in ops[("get", "/ping")]


def require_api_key() -> None:
    """Stands for a later issue's API-key check (module level: annotations are strings)."""


def test_a_new_status_is_one_entry() -> None:
    # How 401 will arrive with API keys: one ErrorAnswer naming the dependency that raises it.
    app = FastAPI()

    @app.get("/api/v1/secret")
    async def secret(
        _key: Annotated[None, Depends(require_api_key)], q: Annotated[int, Query()] = 0
    ) -> None: ...

    [route] = [r for r in app.routes if getattr(r, "path", "") == "/api/v1/secret"]
    facts = RouteFacts.of("/api/v1/secret", route.dependant, route.body_field)
    with_keys = (*ERROR_ANSWERS, ErrorAnswer(401, "No valid API key.", depends_on(require_api_key)))
    assert set(answers_for(facts, with_keys)) - set(answers_for(facts)) == {401}


@pytest.mark.parametrize(
    "changes",
    [
        {"env": "production", "database_url": "postgresql://u@127.0.0.1:1/db"},
        {"docs_enabled": False},
        {"cors_enabled": True, "cors_origins": ["https://app.example"]},
        {"rate_limit_enabled": False},
    ],
    ids=["production", "docs-off", "cors-on", "rate-limit-off"],
)
def test_the_document_does_not_depend_on_the_settings(changes: dict[str, Any]) -> None:
    assert document(make_settings(**changes)) == document()


def test_created_items_link_to_the_operations_on_them() -> None:
    ops = operations(document())
    ids = {op["operationId"] for op in ops.values()}
    created = ops[("post", "/api/v1/items")]["responses"]["201"]["links"]
    assert set(created) == {"get_item", "update_item", "delete_item"}
    for link in created.values():
        assert link["parameters"] == {"item_id": "$response.body#/id"}
    deleted = ops[("delete", "/api/v1/items/{item_id}")]["responses"]["204"]["links"]
    assert deleted["get_item"]["parameters"] == {"item_id": "$request.path.item_id"}
    for op in ops.values():
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                assert link["operationId"] in ids


class Thing(BaseModel):
    id: int


def test_a_new_resource_of_the_same_shape_is_linked() -> None:
    app = create_app(make_settings())

    @app.post("/api/v1/things", status_code=201)
    async def create_thing() -> Thing:
        return Thing(id=1)

    @app.get("/api/v1/things/{thing_id}")
    async def get_thing(thing_id: int) -> Thing:
        return Thing(id=thing_id)

    ops = operations(app.openapi())
    links = ops[("post", "/api/v1/things")]["responses"]["201"]["links"]
    assert links == {
        "get_thing": {"operationId": "get_thing", "parameters": {"thing_id": "$response.body#/id"}}
    }


def _error_schema_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(document()["components"]["schemas"]["Error"])


def test_real_error_bodies_match_the_error_schema(client: TestClient, sqlite_url: str) -> None:
    validator = _error_schema_validator()
    responses = [
        client.get("/api/v1/items/999"),
        client.put("/api/v1/items"),
        client.post("/api/v1/items", json={"name": ""}),
        client.post(
            "/api/v1/items",
            content=b'{"name": "\xff"}',
            headers={"Content-Type": "application/json"},
        ),
        client.get("/api/v1/items", params={"limit": 0}),
    ]
    statuses = [response.status_code for response in responses]
    assert statuses == [404, 405, 422, 400, 422]
    for response in responses:
        validator.validate(response.json())
    small = make_settings(database_url=sqlite_url, max_body_size=10)
    with client_for(small) as small_client:
        too_large = small_client.post("/api/v1/items", json={"name": "x" * 20})
    assert too_large.status_code == 413
    validator.validate(too_large.json())


def test_the_readiness_503_matches_the_error_schema() -> None:
    url = f"postgresql://heliox:pw@127.0.0.1:{free_port()}/heliox"  # nothing listens there
    with client_for(make_settings(database_url=url, health_db_timeout=5)) as client:
        response = client.get("/health/db")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    _error_schema_validator().validate(response.json())
