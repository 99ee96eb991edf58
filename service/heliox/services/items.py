"""Items: reads served from the Redis cache when they can be, writes that invalidate it.

Reads return the JSON bytes to send and whether they came from the cache: a hit is the cached
bytes as they are (no model, no re-serialisation), a miss is read in one unit of work and
cached under the generation the read saw (core/cache.py). Every write bumps the namespace's
generation, so single items and list pages are invalidated together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from pydantic import BaseModel
from sqlalchemy import Connection

from heliox.core.cache import Cache
from heliox.core.db import Database
from heliox.repositories import items as repo
from heliox.schemas.item import ItemCreate, ItemRead, ItemUpdate

NAMESPACE = "items"


class Body(NamedTuple):
    """A read's answer: JSON bytes, and whether the cache had them."""

    json: bytes
    cached: bool


class ItemService:
    __slots__ = ("cache", "db")

    def __init__(self, db: Database, cache: Cache) -> None:
        self.db = db
        self.cache = cache

    async def read(self, item_id: int) -> Body | None:
        """The item's JSON, or None when there is no such item."""
        return await self._through_cache(f"item:{item_id}", lambda c: repo.get(c, item_id))

    async def page(self, offset: int, limit: int) -> Body:
        body = await self._through_cache(
            f"page:{offset}:{limit}", lambda c: repo.page(c, offset, limit)
        )
        assert body is not None  # a page always exists, empty or not
        return body

    async def _through_cache(
        self, key: str, load: Callable[[Connection], BaseModel | None]
    ) -> Body | None:
        """The cached bytes of ``key``, else ``load``'s model read in one unit of work and cached
        under the generation the cache read saw; None when ``load`` finds nothing."""
        cached, full_key = await self.cache.get(NAMESPACE, key)
        if cached is not None:
            return Body(cached, cached=True)
        found = await self.db.read(load)
        if found is None:
            return None
        body = found.model_dump_json().encode()
        await self.cache.set(full_key, body)
        return Body(body, cached=False)

    async def create(self, data: ItemCreate) -> ItemRead:
        item = await self.db.run(lambda s: repo.create(s, data))
        await self.cache.invalidate(NAMESPACE)
        return item

    async def update(self, item_id: int, data: ItemUpdate) -> ItemRead | None:
        item = await self.db.run(lambda s: repo.update(s, item_id, data))
        if item is not None:
            await self.cache.invalidate(NAMESPACE)
        return item

    async def delete(self, item_id: int) -> bool:
        deleted = await self.db.run(lambda s: repo.delete(s, item_id))
        if deleted:
            await self.cache.invalidate(NAMESPACE)
        return deleted
