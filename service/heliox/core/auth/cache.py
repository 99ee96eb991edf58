"""A small in-process cache with a bounded size and a time to live, and one load at a time per
key: what lets a key's check skip the database on almost every request while a revocation still
reaches every worker within the TTL.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Least recently used entries go first once ``size`` is reached; an entry older than
    ``ttl`` seconds is loaded again (so a change in the database is seen within ``ttl``)."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: K) -> tuple[bool, V | None]:
        """(found, value) without loading; an expired entry is not found."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        stored_at, value = entry
        if self._clock() - stored_at >= self.ttl:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Store ``value``; a shorter ``ttl`` than the cache's makes it expire sooner."""
        stored_at = self._clock()
        if ttl is not None and ttl < self.ttl:
            stored_at -= self.ttl - ttl
        self._entries[key] = (stored_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def drop(self, key: K) -> None:
        self._entries.pop(key, None)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or ``load()``'s, shared by concurrent callers of the same key (one
        database read for a burst, not one per request)."""
        found, value = self.peek(key)
        if found:
            return value  # type: ignore[return-value]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._loading.pop(key, None)
        if self.ttl > 0:
            self.put(key, value)
        future.set_result(value)
        return value
