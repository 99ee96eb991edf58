"""Fixed-window rate limit per client address, counted in Redis so all replicas share it."""

from __future__ import annotations

import time
from dataclasses import dataclass

from heliox.core import metrics
from heliox.core.redis import RedisClient, RedisUnavailable

# INCR and set the expiry in one round trip, atomically, so a crash cannot leave a counter
# without a TTL.
_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int = 0
    unavailable: bool = False


class RateLimiter:
    def __init__(
        self, client: RedisClient, limit: int, window_seconds: int, fail_open: bool
    ) -> None:
        self.client = client
        self.limit = limit
        self.window = window_seconds
        self.fail_open = fail_open
        self._script = client.redis.register_script(_HIT)

    async def hit(self, identity: str) -> Decision:
        now = time.time()
        window_index = int(now // self.window)
        key = f"heliox:rl:{identity}:{window_index}"
        try:
            count = await self.client.run(lambda _r: self._script(keys=[key], args=[self.window]))
        except RedisUnavailable:
            (metrics.RATE_LIMIT_SKIPPED if self.fail_open else metrics.LIMITER_UNAVAILABLE).add()
            return Decision(allowed=self.fail_open, unavailable=True, retry_after=1)
        if int(count) <= self.limit:
            return Decision(allowed=True)
        metrics.RATE_LIMITED.add()
        retry_after = max(1, int((window_index + 1) * self.window - now + 0.999))
        return Decision(allowed=False, retry_after=retry_after)
