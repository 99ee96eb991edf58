"""The limiter's decisions, and what it counts for the dashboard (refusals, unchecked requests)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from heliox.core import metrics
from heliox.core.ratelimit import RateLimiter
from heliox.core.redis import RedisClient
from tests.helpers import make_settings


class _Pool:
    async def disconnect(self, inuse_connections: bool = True) -> None:
        return None


class CountingRedis:
    """The limiter's INCR script on a dict; ``up = False`` fails like a dead server."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.up = True
        self.connection_pool = _Pool()

    def register_script(self, _text: str) -> Callable[..., Awaitable[int]]:
        async def script(keys: list[str], args: list[object]) -> int:
            if not self.up:
                raise RedisConnectionError("Connection refused")
            self.counts[keys[0]] = self.counts.get(keys[0], 0) + 1
            return self.counts[keys[0]]

        return script


def _limiter(limit: int, fail_open: bool) -> tuple[RateLimiter, RedisClient, CountingRedis]:
    client = RedisClient("redis://127.0.0.1:1/0", make_settings(redis_backoff_seconds=3600))
    fake = CountingRedis()
    client.redis = fake  # type: ignore[assignment]
    return RateLimiter(client, limit, 60, fail_open), client, fake


def _figures() -> dict[str, float]:
    metrics.flush()
    get = REGISTRY.get_sample_value
    return {
        "over_limit": get("heliox_rate_limit_refusals_total", {"reason": "over_limit"}) or 0.0,
        "limiter_unavailable": get(
            "heliox_rate_limit_refusals_total", {"reason": "limiter_unavailable"}
        )
        or 0.0,
        "unchecked": get("heliox_rate_limit_unchecked_total") or 0.0,
    }


def _counted(before: dict[str, float]) -> dict[str, float]:
    after = _figures()
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def test_refusals_over_the_limit_are_counted_and_allowed_requests_are_not() -> None:
    async def scenario() -> None:
        limiter, _client, _fake = _limiter(limit=2, fail_open=True)
        before = _figures()
        decisions = [await limiter.hit("10.0.0.1") for _ in range(5)]
        assert [d.allowed for d in decisions] == [True, True, False, False, False]
        assert all(d.retry_after >= 1 for d in decisions[2:])
        assert _counted(before) == {"over_limit": 3}

    asyncio.run(scenario())


def test_redis_down_fail_open_counts_unchecked_requests() -> None:
    async def scenario() -> None:
        limiter, _client, fake = _limiter(limit=2, fail_open=True)
        fake.up = False
        before = _figures()
        for _ in range(3):
            decision = await limiter.hit("10.0.0.1")
            assert decision.allowed
            assert decision.unavailable
        assert _counted(before) == {"unchecked": 3}

    asyncio.run(scenario())


def test_redis_down_fail_closed_counts_refusals() -> None:
    async def scenario() -> None:
        limiter, _client, fake = _limiter(limit=2, fail_open=False)
        fake.up = False
        before = _figures()
        decision = await limiter.hit("10.0.0.1")
        assert not decision.allowed
        assert decision.unavailable
        assert _counted(before) == {"limiter_unavailable": 1}

    asyncio.run(scenario())


def test_failed_redis_calls_are_counted_once_per_breaker_window() -> None:
    async def scenario() -> None:
        limiter, client, fake = _limiter(limit=100, fail_open=True)

        def errors() -> float:
            metrics.flush()
            return REGISTRY.get_sample_value("heliox_redis_errors_total") or 0.0

        before = errors()
        await limiter.hit("a")
        assert errors() == before
        fake.up = False
        for _ in range(3):
            await limiter.hit("a")  # the first fails; the breaker skips the others
        assert errors() == before + 1
        client._down_until = 0.0  # the backoff has passed: tried, and failed, again
        await limiter.hit("a")
        assert errors() == before + 2

    asyncio.run(scenario())
