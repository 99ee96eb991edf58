"""The readiness check: cheap, time-bounded, and cached so probes never pile onto the DB."""

from __future__ import annotations

import asyncio
import time

import anyio
import anyio.to_thread

from heliox.core.db import Database
from heliox.core.log_format import redact


class DbHealth:
    def __init__(self, db: Database, timeout: float, cache_seconds: float) -> None:
        self.db = db
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._checked_at = float("-inf")
        self._result: tuple[bool, str] = (False, "not checked yet")
        # Single flight: concurrent probes wait for one check instead of each running one.
        self._lock = asyncio.Lock()

    async def check(self) -> tuple[bool, str]:
        if time.monotonic() - self._checked_at < self.cache_seconds:
            return self._result
        async with self._lock:
            if time.monotonic() - self._checked_at < self.cache_seconds:
                return self._result
            self._result = await self._probe()
            self._checked_at = time.monotonic()
            return self._result

    async def _probe(self) -> tuple[bool, str]:
        try:
            with anyio.fail_after(self.timeout):
                await anyio.to_thread.run_sync(self.db.ping, abandon_on_cancel=True)
        except TimeoutError:
            return False, f"no answer within {self.timeout:g}s"
        except Exception as exc:
            cause = getattr(exc, "orig", None) or exc
            first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            return False, redact(f"{type(cause).__name__}: {first_line}")[:300]
        return True, "Database connection successful"
