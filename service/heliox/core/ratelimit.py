"""Fixed-window rate limits counted in Redis, so all workers and replicas share them.

Two counters: requests per caller (an API key, a token subject, or the client address when
authentication is off), and failed credentials per client address. An address over its failure
budget is refused everything, valid keys included, until the window ends: answering a right
guess differently from a wrong one would let guessing go on at full speed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from heliox.core import metrics
from heliox.core.redis import RedisClient, RedisUnavailable

# INCR and set the expiry in one round trip, atomically, so a crash cannot leave a counter
# without a TTL. With a second key (the address's failures) the caller is refused (-1) when that
# address is over its failure budget, in the same round trip.
_HIT = """
if KEYS[2] then
  local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
  if failures > tonumber(ARGV[2]) then return -1 end
end
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int = 0
    unavailable: bool = False
    blocked: bool = False  # refused because the address is over its failure budget


class RateLimiter:
    def __init__(
        self,
        client: RedisClient,
        limit: int,
        window_seconds: int,
        fail_open: bool,
        failure_limit: int | None = None,
    ) -> None:
        self.client = client
        self.limit = limit
        self.window = window_seconds
        self.fail_open = fail_open
        self.failure_limit = failure_limit if failure_limit is not None else limit
        self._script = client.redis.register_script(_HIT)

    async def hit(
        self, identity: str, limit: int | None = None, guard: str | None = None
    ) -> Decision:
        """Count one request of ``identity`` against ``limit`` (default: the limiter's); with
        ``guard`` (a client address), refuse it while that address is over its failure budget."""
        limit = self.limit if limit is None else limit
        now = time.time()
        window_index = int(now // self.window)
        keys = [f"heliox:rl:{identity}:{window_index}"]
        if guard is not None:
            keys.append(_failures_key(guard, window_index))
        args = [self.window, self.failure_limit]
        try:
            count = await self.client.run(lambda _r: self._script(keys=keys, args=args))
        except RedisUnavailable:
            (metrics.RATE_LIMIT_SKIPPED if self.fail_open else metrics.LIMITER_UNAVAILABLE).add()
            return Decision(allowed=self.fail_open, unavailable=True, retry_after=1)
        if int(count) < 0:
            metrics.FAILED_CREDENTIALS_LIMITED.add()
            return Decision(False, self.retry_after(now), blocked=True)
        if int(count) <= limit:
            return Decision(allowed=True)
        metrics.RATE_LIMITED.add()
        return Decision(allowed=False, retry_after=self.retry_after(now))

    async def fail(self, address: str) -> Decision:
        """Count one failed credential from ``address``; refused once over the failure budget."""
        now = time.time()
        window_index = int(now // self.window)
        key = _failures_key(address, window_index)
        try:
            count = await self.client.run(lambda _r: self._script(keys=[key], args=[self.window]))
        except RedisUnavailable:
            return Decision(allowed=self.fail_open, unavailable=True, retry_after=1)
        if int(count) <= self.failure_limit:
            return Decision(allowed=True)
        metrics.FAILED_CREDENTIALS_LIMITED.add()
        return Decision(False, self.retry_after(now), blocked=True)

    async def blocked(self, address: str) -> bool:
        """Whether ``address`` is over its failure budget now (False when Redis is down)."""
        key = _failures_key(address, int(time.time() // self.window))
        try:
            count = await self.client.run(lambda r: r.get(key))
        except RedisUnavailable:
            return False
        return count is not None and int(count) > self.failure_limit

    def retry_after(self, now: float | None = None) -> int:
        """Whole seconds until the window holding ``now`` (default: the present) ends, at
        least 1: when a refused caller may try again."""
        now = time.time() if now is None else now
        return max(1, int((int(now // self.window) + 1) * self.window - now + 0.999))


def _failures_key(address: str, window_index: int) -> str:
    return f"heliox:rl-fail:{address}:{window_index}"
