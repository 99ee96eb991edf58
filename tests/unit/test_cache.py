"""The cache never serves a value older than a write it was told about, breaker open or not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from heliox.core import cache as cache_module
from heliox.core import metrics
from heliox.core.cache import Cache
from heliox.core.redis import RedisClient
from heliox.core.resources import _retry_invalidations
from tests.helpers import make_settings

NS = "items"


class _Pool:
    async def disconnect(self, inuse_connections: bool = True) -> None:
        return None


class FakeRedis:
    """GET/SET and the cache's two scripts in a dict; ``up = False`` makes every command fail
    like a dead server. The scripts are recorded as BUMP and READ."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.up = True
        self.commands: list[str] = []
        self.connection_pool = _Pool()
        self.gate: asyncio.Event | None = None
        self.clock = 1_750_000_000_000_000  # the server's TIME in microseconds

    def _call(self, name: str) -> None:
        self.commands.append(name)
        if not self.up:
            raise RedisConnectionError("Connection refused")

    async def get(self, key: str) -> bytes | None:
        self._call("GET")
        return self.data.get(key)

    async def set(self, key: str, value: bytes, px: int | None = None) -> bool:
        self._call("SET")
        self.data[key] = value
        return True

    def _start(self) -> bytes:
        self.clock += 1000
        return str(self.clock).encode()

    async def _bump(self, key: str) -> bytes:
        self._call("BUMP")
        if self.gate is not None:  # the command is sent; its answer waits
            await self.gate.wait()
        current = self.data.get(key)
        self.data[key] = self._start() if current is None else str(int(current) + 1).encode()
        return self.data[key]

    async def _read(self, key: str, prefix: str, suffix: str) -> list[bytes | None]:
        self._call("READ")
        generation = self.data.setdefault(key, self._start())
        return [generation, self.data.get(prefix + generation.decode() + suffix)]

    def register_script(self, text: str) -> Callable[..., Awaitable[Any]]:
        async def script(keys: list[str], args: list[str] | None = None) -> Any:
            if text == cache_module._BUMP:
                return await self._bump(keys[0])
            assert text == cache_module._READ, "a script the fake does not know"
            assert args is not None
            return await self._read(keys[0], args[0], args[1])

        return script


def _cache(backoff: float) -> tuple[Cache, RedisClient, FakeRedis]:
    client = RedisClient("redis://127.0.0.1:1/0", make_settings(redis_backoff_seconds=backoff))
    fake = FakeRedis()
    client.redis = fake  # type: ignore[assignment]
    return Cache(client, ttl_seconds=60), client, fake


async def _read(cache: Cache, db: dict[str, bytes]) -> tuple[bytes, bool]:
    """What a route does: the cached value, else the database's, filling the cache."""
    cached, key = await cache.get(NS, "item:1")
    if cached is not None:
        return cached, True
    await cache.set(key, db["item:1"])
    return db["item:1"], False


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_write_while_the_breaker_is_open_still_invalidates() -> None:
    async def scenario() -> None:
        cache, client, fake = _cache(backoff=3600)
        db = {"item:1": b"old"}
        assert await _read(cache, db) == (b"old", False)
        assert await _read(cache, db) == (b"old", True)

        fake.up = False
        assert await _read(cache, db) == (b"old", False)  # the breaker opens
        assert not client.available
        fake.up = True  # Redis is back, the breaker still open for its backoff

        db["item:1"] = b"new"
        await cache.invalidate(NS)  # tried past the breaker, and it succeeds
        assert "BUMP" in fake.commands
        assert not cache.pending
        assert client.available  # a success closes the breaker
        assert await _read(cache, db) == (b"new", False)
        assert await _read(cache, db) == (b"new", True)

    _run(scenario())


def test_failed_invalidation_bypasses_the_cache_until_a_bump_succeeds() -> None:
    async def scenario() -> None:
        cache, client, fake = _cache(backoff=3600)
        db = {"item:1": b"old"}
        await _read(cache, db)
        assert await _read(cache, db) == (b"old", True)

        fake.up = False
        db["item:1"] = b"new"
        await cache.invalidate(NS)
        assert set(cache.pending) == {NS}

        fake.up = True  # back, but the breaker is open: no Redis call, no stale value
        fake.commands.clear()
        assert await _read(cache, db) == (b"new", False)
        assert fake.commands == []  # neither read nor filled

        client._down_until = 0.0  # the backoff has passed
        assert await _read(cache, db) == (b"new", False)  # bump first, then a fresh miss
        assert fake.commands[0] == "BUMP"
        assert not cache.pending
        assert await _read(cache, db) == (b"new", True)

    _run(scenario())


def test_pending_invalidation_is_retried_without_readers() -> None:
    async def scenario() -> None:
        cache, _client, fake = _cache(backoff=0)
        db = {"item:1": b"old"}
        await _read(cache, db)
        fake.up = False
        db["item:1"] = b"new"
        await cache.invalidate(NS)
        await cache.invalidate(NS)  # a second failed write: still one pending namespace
        assert set(cache.pending) == {NS}
        await cache.flush_pending()  # Redis still down: stays pending
        assert set(cache.pending) == {NS}
        fake.up = True
        await cache.flush_pending()
        assert not cache.pending
        assert await _read(cache, db) == (b"new", False)

    _run(scenario())


def test_reads_skip_redis_while_the_breaker_is_open() -> None:
    """Only invalidation passes the breaker: reads still pay no Redis call during an outage."""

    async def scenario() -> None:
        cache, _client, fake = _cache(backoff=3600)
        fake.up = False
        db = {"item:1": b"v"}
        await _read(cache, db)
        calls = len(fake.commands)
        for _ in range(5):
            assert await _read(cache, db) == (b"v", False)
        assert len(fake.commands) == calls

    _run(scenario())


def test_no_redis_configured() -> None:
    async def scenario() -> None:
        cache = Cache(None, 60)
        await cache.invalidate(NS)
        await cache.flush_pending()
        assert await cache.get(NS, "k") == (None, None)
        assert not cache.pending

    _run(scenario())


def test_shutdown_applies_pending_invalidations_past_the_breaker() -> None:
    async def scenario() -> None:
        cache, client, fake = _cache(backoff=3600)
        fake.up = False
        await cache.invalidate(NS)
        fake.up = True
        await cache.flush_pending()  # the breaker is open: not tried
        assert set(cache.pending) == {NS}
        await cache.flush_pending(force=True)
        assert not cache.pending
        assert client.available

    _run(scenario())


def test_the_app_retries_pending_invalidations_periodically() -> None:
    async def scenario() -> None:
        cache, _client, fake = _cache(backoff=0)
        fake.up = False
        await cache.invalidate(NS)
        task = asyncio.create_task(_retry_invalidations(cache, interval=0.01))
        try:
            await asyncio.sleep(0.05)
            assert set(cache.pending) == {NS}
            fake.up = True
            await asyncio.sleep(0.05)
            assert not cache.pending
        finally:
            task.cancel()

    _run(scenario())


def test_a_bump_sent_before_a_failed_write_does_not_clear_its_mark() -> None:
    async def scenario() -> None:
        cache, _client, fake = _cache(backoff=0)
        db = {"item:1": b"old"}
        await _read(cache, db)
        fake.up = False
        await cache.invalidate(NS)  # write 1: its bump fails
        fake.up = True
        fake.gate = asyncio.Event()
        reader = asyncio.create_task(_read(cache, db))  # retries the bump, answer delayed
        await asyncio.sleep(0.01)
        fake.up = False
        db["item:1"] = b"new"
        await cache.invalidate(NS)  # write 2 commits after that bump was sent; its bump fails
        fake.up = True
        fake.gate.set()
        sets = fake.commands.count("SET")
        assert await reader == (b"new", False)  # read from the database...
        assert fake.commands.count("SET") == sets  # ...and not filled
        assert set(cache.pending) == {NS}  # the earlier bump does not cover write 2
        fake.gate = None
        await cache.flush_pending()
        assert not cache.pending
        assert await _read(cache, db) == (b"new", False)

    _run(scenario())


def _generations(fake: FakeRedis) -> set[str]:
    """The generations that cached entries were written under."""
    return {key.split(":")[2] for key in fake.data if key != "heliox:items:gen"}


def test_a_lost_generation_starts_afresh_for_readers_and_writers() -> None:
    """Redis lost the key (an eviction): neither a read nor a write reuses an old generation."""

    async def scenario() -> None:
        cache, _client, fake = _cache(backoff=0)
        db = {"item:1": b"old"}
        assert await _read(cache, db) == (b"old", False)
        assert fake.commands[:1] == ["READ"]  # one round trip; no generation yet: started
        first = _generations(fake)

        del fake.data["heliox:items:gen"]
        assert await _read(cache, db) == (b"old", False)  # a fresh generation: a miss
        del fake.data["heliox:items:gen"]
        db["item:1"] = b"new"
        await cache.invalidate(NS)
        assert await _read(cache, db) == (b"new", False)
        generations = _generations(fake)
        assert len(generations) == 3  # one entry per generation: none was reused
        assert first < generations

    _run(scenario())


# -- what the dashboard counts: hits, misses, bypasses (batched, like the request samples) -----


def _reads() -> dict[str, float]:
    metrics.flush()
    return {
        result: REGISTRY.get_sample_value("heliox_cache_reads_total", {"result": result}) or 0.0
        for result in ("hit", "miss", "bypass")
    }


def _counted(before: dict[str, float]) -> dict[str, float]:
    after = _reads()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def test_reads_are_counted_as_hit_miss_or_bypass() -> None:
    async def scenario() -> None:
        cache, client, fake = _cache(backoff=3600)
        db = {"item:1": b"v"}
        before = _reads()
        await _read(cache, db)  # miss, then filled
        await _read(cache, db)  # hit
        await _read(cache, db)  # hit
        assert _counted(before) == {"miss": 1, "hit": 2}

        before = _reads()
        fake.up = False
        await _read(cache, db)  # the failing read opens the breaker
        await _read(cache, db)  # breaker open: Redis skipped
        assert _counted(before) == {"bypass": 2}

        before = _reads()
        fake.up = True
        await cache.invalidate(NS)  # past the breaker: succeeds
        client._down_until = 0.0
        fake.up = False
        await cache.invalidate(NS)  # fails: the namespace is pending
        await _read(cache, db)
        assert _counted(before) == {"bypass": 1}

    _run(scenario())


def test_reads_without_redis_are_not_counted() -> None:
    """No cache configured is not a bypass: the hit ratio panel stays empty, not 0."""

    async def scenario() -> None:
        before = _reads()
        await Cache(None, 60).get(NS, "k")
        assert _counted(before) == {}

    _run(scenario())


def test_counts_wait_for_the_flush() -> None:
    async def scenario() -> None:
        cache, _client, _fake = _cache(backoff=3600)
        before = _reads()
        await cache.get(NS, "item:9")
        labels = {"result": "miss"}
        assert (REGISTRY.get_sample_value("heliox_cache_reads_total", labels) or 0.0) == before[
            "miss"
        ]  # batched: no write to the shared cells per read
        assert _counted(before) == {"miss": 1}

    _run(scenario())
