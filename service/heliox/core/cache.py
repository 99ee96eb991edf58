"""Read-through JSON cache in Redis with generation-based invalidation.

Keys carry a namespace generation (``heliox:<ns>:g<N>:<key>``); a write bumps the generation,
so every cached read of that namespace (single items and list pages alike) is invalidated at
once, and a reader that raced a write can only have filled a key nobody reads any more.
Every method degrades to "no cache" when Redis is unavailable.

A generation never repeats, even when Redis loses its key (an eviction, a user's Redis with an
``allkeys-*`` policy): a missing generation starts again from the Redis server's clock in
microseconds, above every value it held before (those started from an earlier reading of that
clock and grew by one per write, far fewer than one a microsecond), so no entry cached under an
old generation is read again. Reads and writes start it in one Lua script each, atomically, so
concurrent workers and replicas agree on one value; the clock is the server's, so theirs need
not agree.

A write's bump is always attempted, even while the breaker is open (a skipped bump would let
readers serve the pre-write value for up to the TTL once Redis is back). When it fails, the
namespace is marked *pending* in this process: its reads bypass the cache (no read, no fill)
until a later bump succeeds, which readers and :meth:`Cache.flush_pending` (run each second by
the app) retry. Other processes did not see the failed write; see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import random

from heliox.core import metrics
from heliox.core.redis import RedisClient, RedisUnavailable

logger = logging.getLogger("heliox.cache")

# The server's clock (TIME: seconds, microseconds) as one integer string, built as text: Lua
# numbers are doubles and Redis would format a large one in exponent notation.
_CLOCK = """
local now = redis.call('TIME')
local start = now[1] .. string.format('%06d', tonumber(now[2]))
"""
# A write: one more than the current generation, or a fresh start if the key is gone.
_BUMP = (
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCR', KEYS[1]) end
"""
    + _CLOCK
    + """
redis.call('SET', KEYS[1], start)
return start
"""
)
# A read in one round trip: the generation (started if missing, as above) and the value cached
# under it, whose key the script builds from it (a key it could not name in KEYS beforehand,
# which a standalone Redis allows; Redis Cluster would need the namespace as a hash tag).
_READ = (
    """
local gen = redis.call('GET', KEYS[1])
if not gen then
"""
    + _CLOCK
    + """
  redis.call('SET', KEYS[1], start)
  gen = start
end
return {gen, redis.call('GET', ARGV[1] .. gen .. ARGV[2])}
"""
)


def generation_key(namespace: str) -> str:
    # No TTL: it must outlive every entry cached under it (the chart's Redis evicts only keys
    # with a TTL, volatile-lru; on any other policy the fresh start above keeps it safe).
    return f"heliox:{namespace}:gen"


class Cache:
    def __init__(self, client: RedisClient | None, ttl_seconds: int) -> None:
        self.client = client
        self.ttl = ttl_seconds
        # Namespaces written to while their generation could not be bumped, with a count of
        # such failures: only a bump sent after the latest of them covers every write.
        self.pending: dict[str, int] = {}
        self._key_names: dict[str, tuple[str, str]] = {}
        if client is not None:
            self._bump_script = client.redis.register_script(_BUMP)
            self._read_script = client.redis.register_script(_READ)

    def _names(self, namespace: str) -> tuple[str, str]:
        """The namespace's generation key and entry prefix (made once: a read needs them)."""
        names = self._key_names.get(namespace)
        if names is None:
            names = self._key_names[namespace] = (
                generation_key(namespace),
                f"heliox:{namespace}:g",
            )
        return names

    async def _bump(self, namespace: str, *, force: bool) -> bool:
        """Bump the generation; a success clears the pending mark if no write failed meanwhile."""
        assert self.client is not None
        failures = self.pending.get(namespace)
        key = generation_key(namespace)
        try:
            await self.client.run(lambda _r: self._bump_script(keys=[key]), force=force)
        except RedisUnavailable:
            return False
        # A write whose own bump failed while this one was in flight may have committed after
        # this bump was sent: its mark stays for the next bump.
        if failures is not None and self.pending.get(namespace) == failures:
            del self.pending[namespace]
            logger.info("pending cache invalidation applied", extra={"ns": namespace})
        return True

    async def get(self, namespace: str, key: str) -> tuple[bytes | None, str | None]:
        """The cached value (or None) and the full key to fill it under (None: no cache)."""
        if self.client is None:
            return None, None
        # A write here could not invalidate: bypass the cache until a bump succeeds (the
        # breaker decides when to try again, so reads pay no timeouts while Redis is down).
        if namespace in self.pending:
            await self._bump(namespace, force=False)
            if namespace in self.pending:
                metrics.CACHE_BYPASS.add()
                return None, None
        gen_key, prefix = self._names(namespace)
        suffix = f":{key}"
        try:
            # The hot path: on the client's pipelined connection (heliox.core.redis_pipe).
            generation, value = await self.client.eval_script(
                self._read_script, keys=[gen_key], args=[prefix, suffix]
            )
        except RedisUnavailable:
            metrics.CACHE_BYPASS.add()
            return None, None
        gen = generation.decode() if isinstance(generation, bytes) else str(generation)
        full_key = f"{prefix}{gen}{suffix}"
        if isinstance(value, bytes):
            metrics.CACHE_HIT.add()
            return value, full_key
        metrics.CACHE_MISS.add()
        return None, full_key

    def lifetime_ms(self) -> int:
        """An entry's lifetime: the TTL less up to a tenth of it, at random. Entries filled
        together (a deploy's first minute, a list page's burst) would otherwise expire together
        and send their reads to the database at once; never longer than the TTL, which bounds
        how stale a read may be."""
        full = self.ttl * 1000
        return full - random.randrange(full // 10 + 1)  # noqa: S311 (spread, not a secret)

    async def set(self, full_key: str | None, value: bytes) -> None:
        if self.client is None or full_key is None:
            return
        try:
            await self.client.run(lambda r: r.set(full_key, value, px=self.lifetime_ms()))
        except RedisUnavailable:
            return

    async def invalidate(self, namespace: str) -> None:
        if self.client is None:
            return
        # Past the breaker: a stale entry served for a whole TTL is worse than one timeout.
        # (A reader that filled the old generation meanwhile is hidden by the bump that
        # eventually succeeds.)
        if await self._bump(namespace, force=True):
            return
        failures = self.pending.get(namespace, 0)
        self.pending[namespace] = failures + 1
        if not failures:
            logger.warning(
                "cache invalidation failed: redis unavailable; the cache is bypassed until it "
                "succeeds",
                extra={"ns": namespace},
            )

    async def flush_pending(self, *, force: bool = False) -> None:
        """Retry the bumps that failed: when the breaker allows (each second, from the app), or
        past it (``force``, at shutdown: after this process, nobody knows they are owed)."""
        if self.client is None:
            return
        for namespace in sorted(self.pending):
            # Bump until no failure is left that happened during a bump in flight.
            while namespace in self.pending:
                if not await self._bump(namespace, force=force):
                    return
