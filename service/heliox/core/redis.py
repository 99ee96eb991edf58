"""One Redis client with short timeouts and a breaker, so an outage costs no request its answer.

After a failure the client is skipped for ``REDIS_BACKOFF_SECONDS``: callers see
:class:`RedisUnavailable` at once instead of paying a timeout on every request, and fall back
(cache reads go to the database, the rate limit fails open by default). Cache invalidation
alone passes the breaker (``force``), see :mod:`heliox.core.cache`.

The cache's read script, the hot path of every cached read, goes through :meth:`eval_script`
on a multiplexed connection of its own (:mod:`heliox.core.redis_pipe`, ~10 us a call where
redis-py costs ~85-108 us), behind the same breaker; every other command stays on redis-py.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from heliox.core import metrics
from heliox.core.config import Settings
from heliox.core.redis_pipe import Command, RedisPipe, endpoint_of
from heliox.core.urls import mask_redis_url

logger = logging.getLogger("heliox.redis")

T = TypeVar("T")
# What tracing wraps a pipelined command in (heliox.core.otel): the call and its arguments,
# as the Redis instrumentation wraps redis-py's execute_command.
PipeTracer = Callable[[Callable[..., Awaitable[Any]], tuple[Any, ...]], Awaitable[Any]]


class RedisUnavailable(Exception):
    """Redis is down or was down moments ago; use the fallback."""


class RedisClient:
    def __init__(self, url: str, settings: Settings) -> None:
        self.display_url = mask_redis_url(url)
        # No retries inside redis-py: one attempt per call, bounded by the socket timeouts.
        self.redis: Redis = Redis.from_url(
            url,
            socket_timeout=settings.redis_socket_timeout,
            socket_connect_timeout=settings.redis_connect_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
        endpoint = endpoint_of(self.redis.connection_pool)
        self.pipe = (
            None
            if endpoint is None
            else RedisPipe(endpoint, settings.redis_socket_timeout, settings.redis_connect_timeout)
        )
        self.pipe_tracer: PipeTracer | None = None
        self._backoff = settings.redis_backoff_seconds
        self._down_until = 0.0
        self._down = False

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    async def run(self, operation: Callable[[Redis], Awaitable[T]], *, force: bool = False) -> T:
        """Run one command; ``force`` tries it even while the breaker is open (cache
        invalidation: a success then closes the breaker, a failure re-arms it)."""
        if not force and not self.available:
            raise RedisUnavailable("redis marked down")
        try:
            result = await operation(self.redis)
        except (RedisError, OSError) as exc:
            metrics.REDIS_FAILED.add()
            self._down_until = time.monotonic() + self._backoff
            # The idle pooled connections are likely dead too (a restarted server closed them
            # all). Drop them, or after the outage each one would fail once more and restart
            # the backoff: with a few of them, recovery took several backoff periods.
            with contextlib.suppress(RedisError, OSError):
                await self.redis.connection_pool.disconnect(inuse_connections=False)
            if not self._down:
                self._down = True
                logger.warning(
                    "redis unavailable, falling back",
                    extra={"error_type": type(exc).__name__, "backoff_s": self._backoff},
                )
            raise RedisUnavailable(str(exc)) from exc
        if self._down:
            self._down = False
            self._down_until = 0.0
            logger.info("redis reachable again")
        return result

    async def eval_script(self, script: AsyncScript, keys: Command, args: Command) -> Any:
        """Run a script registered on :attr:`redis` through :meth:`run` (breaker, metrics),
        on the pipelined connection. A script of any other client (a test's stand-in) is
        called as it is."""
        pipe = self.pipe
        if pipe is None or getattr(script, "registered_client", None) is not self.redis:
            return await self.run(lambda _r: script(keys=keys, args=args))
        if self.pipe_tracer is None:
            return await self.run(lambda _r: pipe.evalsha(script.sha, script.script, keys, args))
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        traced = self.pipe_tracer
        return await self.run(
            lambda _r: traced(
                lambda *_: pipe.evalsha(script.sha, script.script, keys, args), command
            )
        )

    async def close(self) -> None:
        if self.pipe is not None:
            await self.pipe.close()
        await self.redis.aclose()
