"""What the app holds while it runs: DB, Redis, cache, rate limiter, tracing. Made and closed in
lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import anyio

from heliox.core import metrics
from heliox.core.auth.bootstrap import keep_bootstrap_key
from heliox.core.auth.gate import Gate
from heliox.core.auth.oidc import OidcConfig
from heliox.core.cache import Cache
from heliox.core.config import Settings
from heliox.core.db import Database, create_db_engine
from heliox.core.health import DbHealth
from heliox.core.ratelimit import RateLimiter
from heliox.core.redis import RedisClient
from heliox.core.tracing import start_tracing, tracing_wanted

if TYPE_CHECKING:
    from heliox.core.otel import Tracing
    from heliox.core.otel_request import RequestTracer

logger = logging.getLogger("heliox.lifespan")


class NotStarted(RuntimeError):
    pass


class Resources:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._db: Database | None = None
        self._health: DbHealth | None = None
        self.redis: RedisClient | None = None
        self.cache = Cache(None, settings.cache_ttl_seconds)
        self.limiter: RateLimiter | None = None
        self._gate: Gate | None = None
        self._bootstrap: asyncio.Task[None] | None = None
        # The middleware's tracing step; None (the default) is tracing off.
        self.tracer: RequestTracer | None = None
        self._tracing: Tracing | None = None
        self._metrics_flusher: asyncio.Task[None] | None = None
        self._cache_flusher: asyncio.Task[None] | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            raise NotStarted("the application's lifespan has not started")
        return self._db

    @property
    def health(self) -> DbHealth:
        if self._health is None:
            raise NotStarted("the application's lifespan has not started")
        return self._health

    @property
    def gate(self) -> Gate:
        if self._gate is None:
            raise NotStarted("the application's lifespan has not started")
        return self._gate

    async def start(self) -> None:
        s = self.settings
        self._db = Database(
            create_db_engine(s), s.db_request_timeout, s.db_pool_size, s.db_pool_timeout
        )
        self._health = DbHealth(self._db, s.health_db_timeout, s.health_db_cache_seconds)
        redis_url = s.effective_redis_url
        if redis_url is not None:
            self.redis = RedisClient(redis_url, s)
            if s.rate_limit_enabled:
                self.limiter = RateLimiter(
                    self.redis,
                    s.rate_limit_requests,
                    s.rate_limit_window_seconds,
                    s.rate_limit_fail_open,
                    s.rate_limit_auth_failures,
                )
        self.cache = Cache(self.redis, s.cache_ttl_seconds)
        if tracing_wanted(s):
            self._tracing = start_tracing(s, self._db.engine, self.redis)
            self.tracer = self._tracing.requests
        await self._start_auth()
        self._metrics_flusher = asyncio.create_task(
            metrics.flush_periodically(sample=self.sample_gauges)
        )
        if self.redis is not None:
            self._cache_flusher = asyncio.create_task(_retry_invalidations(self.cache))
        logger.info(
            "started",
            extra={
                "env": s.env,
                "database": self._db.display_url,
                "redis": self.redis.display_url if self.redis else "disabled",
                "rate_limit": f"{s.rate_limit_requests}/{s.rate_limit_window_seconds}s"
                if self.limiter
                else "off",
            },
        )

    async def _start_auth(self) -> None:
        s = self.settings
        tokens = None
        if s.oidc_enabled:
            # PyJWT and the cryptography package load only in workers that verify tokens.
            from heliox.core.auth.tokens import TokenVerifier  # noqa: PLC0415

            tokens = TokenVerifier(OidcConfig.of(s))
        self._gate = Gate(s, self.db, self.limiter, tokens)
        if not s.auth_enabled:
            logger.warning(
                "AUTH_ENABLED=false: every /api/v1 route is open to anyone who reaches it"
            )
        if s.bootstrap_api_key is not None:
            value = s.bootstrap_api_key.get_secret_value().strip()
            self._bootstrap = asyncio.create_task(keep_bootstrap_key(self.db, value))
            # Usually done before the first request; if the database is slow, it goes on behind.
            await asyncio.wait({self._bootstrap}, timeout=s.db_request_timeout)

    def sample_gauges(self) -> None:
        """This worker's pool figures, for the next scrape (NotStarted before lifespan has made
        the engine)."""
        metrics.set_pool_figures(self.db.pool_status())

    async def stop(self) -> None:
        for task in (self._metrics_flusher, self._cache_flusher, self._bootstrap):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._metrics_flusher = self._cache_flusher = self._bootstrap = None
        metrics.flush()  # the last second's samples, before the worker exits
        if self._tracing is not None:
            self.tracer = None
            await self._tracing.shutdown()  # the last spans, before the clients close
            self._tracing = None
        if self.redis is not None:
            if self.cache.pending:
                with anyio.move_on_after(1):
                    await self.cache.flush_pending(force=True)
                if self.cache.pending:
                    logger.warning(
                        "cache invalidations not applied at exit",
                        extra={"ns": ",".join(sorted(self.cache.pending))},
                    )
            with anyio.move_on_after(2):
                await self.redis.close()
            logger.info("redis client closed")
            self.redis = None
            self.limiter = None
            self.cache = Cache(None, self.settings.cache_ttl_seconds)
        if self._db is not None:
            self._db.dispose()
            logger.info("database engine disposed")
            self._db = None
            self._health = None
            self._gate = None


async def _retry_invalidations(cache: Cache, interval: float = 1.0) -> None:
    """Apply failed cache invalidations once Redis is back, even if no request reads them."""
    while True:
        await asyncio.sleep(interval)
        if cache.pending:
            try:
                await cache.flush_pending()
            except Exception as exc:  # never let the retry loop die
                logger.warning(
                    "retrying cache invalidations failed", extra={"error_type": type(exc).__name__}
                )
