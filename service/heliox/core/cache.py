"""Read-through JSON cache in Redis with generation-based invalidation.

Keys carry a namespace generation (``heliox:<ns>:g<N>:<key>``); a write bumps the generation,
so every cached read of that namespace (single items and list pages alike) is invalidated at
once, and a reader that raced a write can only have filled a key nobody reads any more.
Every method degrades to "no cache" when Redis is unavailable.
"""

from __future__ import annotations

import logging

from heliox.core.redis import RedisClient, RedisUnavailable

logger = logging.getLogger("heliox.cache")


class Cache:
    def __init__(self, client: RedisClient | None, ttl_seconds: int) -> None:
        self.client = client
        self.ttl = ttl_seconds

    async def _generation(self, namespace: str) -> bytes:
        assert self.client is not None
        value = await self.client.run(lambda r: r.get(f"heliox:{namespace}:gen"))
        return value if isinstance(value, bytes) else b"0"

    async def get(self, namespace: str, key: str) -> tuple[bytes | None, str | None]:
        """The cached value (or None) and the full key to fill it under (None: no cache)."""
        if self.client is None:
            return None, None
        try:
            generation = (await self._generation(namespace)).decode()
            full_key = f"heliox:{namespace}:g{generation}:{key}"
            value = await self.client.run(lambda r: r.get(full_key))
        except RedisUnavailable:
            return None, None
        return (value if isinstance(value, bytes) else None), full_key

    async def set(self, full_key: str | None, value: bytes) -> None:
        if self.client is None or full_key is None:
            return
        try:
            await self.client.run(lambda r: r.set(full_key, value, ex=self.ttl))
        except RedisUnavailable:
            return

    async def invalidate(self, namespace: str) -> None:
        if self.client is None:
            return
        try:
            await self.client.run(lambda r: r.incr(f"heliox:{namespace}:gen"))
        except RedisUnavailable:
            # Entries written before the outage expire after the TTL.
            logger.warning("cache invalidation skipped: redis unavailable", extra={"ns": namespace})
