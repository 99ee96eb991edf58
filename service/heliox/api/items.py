"""/api/v1/items: the seed's example resource, in the database, reads cached in Redis
(services/items.py). The routes map its answers to HTTP."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, status
from starlette.responses import Response

from heliox.api.auth import CallerDep, Require
from heliox.api.deps import ItemsDep
from heliox.core.audit import audit
from heliox.schemas.item import ItemCreate, ItemPage, ItemRead, ItemUpdate
from heliox.services.items import Body

PREFIX = "/api/v1/items"

ItemId = Annotated[int, Path(ge=1, le=2**31 - 1)]
_NOT_FOUND = "Item not found"
_JSON = "application/json"


# Reads say where they came from; the document says so too.
_CACHE_HEADER: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            "X-Cache": {
                "description": "hit: served from the Redis cache; miss: read from the database.",
                "required": True,
                "schema": {"type": "string", "enum": ["hit", "miss"]},
            }
        }
    }
}


_HIT, _MISS = (b"x-cache", b"hit"), (b"x-cache", b"miss")
_JSON_TYPE = (b"content-type", _JSON.encode())


class _ReadResponse(Response):
    """A read's JSON as it is, and X-Cache; its three headers built directly (Starlette's
    general header building is a measurable part of a cached read)."""

    def __init__(self, body: Body) -> None:
        self.status_code = 200
        self.background = None
        self.body = body.json
        self.raw_headers = [
            (b"content-length", str(len(body.json)).encode()),
            _JSON_TYPE,
            _HIT if body.cached else _MISS,
        ]


def _read(body: Body) -> Response:
    return _ReadResponse(body)


async def create_item(data: ItemCreate, items: ItemsDep, caller: CallerDep) -> Response:
    item = await items.create(data)
    audit(caller, "item.create", f"items/{item.id}")
    return Response(item.model_dump_json(), status_code=201, media_type=_JSON)


async def list_items(
    items: ItemsDep,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    return _read(await items.page(offset, limit))


async def get_item(item_id: ItemId, items: ItemsDep) -> Response:
    body = await items.read(item_id)
    if body is None:
        raise HTTPException(404, _NOT_FOUND)
    return _read(body)


async def update_item(
    item_id: ItemId, data: ItemUpdate, items: ItemsDep, caller: CallerDep
) -> Response:
    item = await items.update(item_id, data)
    if item is None:
        raise HTTPException(404, _NOT_FOUND)
    audit(caller, "item.update", f"items/{item_id}")
    return Response(item.model_dump_json(), media_type=_JSON)


async def delete_item(item_id: ItemId, items: ItemsDep, caller: CallerDep) -> Response:
    if not await items.delete(item_id):
        raise HTTPException(404, _NOT_FOUND)
    audit(caller, "item.delete", f"items/{item_id}")
    return Response(status_code=204)


def add_routes(app: FastAPI) -> None:
    """On the app itself, like the probes (api/health.py): FastAPI matches the routes of an
    included router twice, in its own routing level, which cost every item request ~15 us."""
    # Readers may read, writers write (api/auth.py Require), on every route of the resource.
    common: dict[str, Any] = {"tags": ["items"], "dependencies": [Depends(Require())]}
    item = f"{PREFIX}/{{item_id}}"
    app.post(PREFIX, status_code=status.HTTP_201_CREATED, response_model=ItemRead, **common)(
        create_item
    )
    app.get(PREFIX, response_model=ItemPage, responses=_CACHE_HEADER, **common)(list_items)
    app.get(item, response_model=ItemRead, responses=_CACHE_HEADER, **common)(get_item)
    app.patch(item, response_model=ItemRead, **common)(update_item)
    app.delete(item, status_code=status.HTTP_204_NO_CONTENT, **common)(delete_item)
