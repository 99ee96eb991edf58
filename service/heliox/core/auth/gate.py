"""The gate: a request's credential in, a verdict out (who is calling, or why not), with the
caller's rate limit applied. api/auth.py reads the headers and maps verdicts to HTTP answers.

A key's check is answered from a per-worker cache (prefix -> hash, role, expiry, revoked) for
AUTH_CACHE_SECONDS, so a revocation reaches every worker within that; a miss is one indexed read,
shared by concurrent requests for the same prefix. Unknown prefixes are cached too (as absent),
and an address over its failure budget is refused before any database read. A cached key also
keeps the credential last proven for it, so the same credential again is one constant-time
comparison instead of a parse and a hash (the secret stays in this worker's memory no longer
than the key's cache entry).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING

from heliox.core.auth import keys, store
from heliox.core.auth.cache import TtlCache
from heliox.core.auth.oidc import InvalidToken, IssuerUnavailable
from heliox.core.auth.roles import Caller, Role

if TYPE_CHECKING:
    from heliox.core.auth.tokens import TokenVerifier
    from heliox.core.config import Settings
    from heliox.core.db import Database
    from heliox.core.ratelimit import RateLimiter

logger = logging.getLogger("heliox.auth")

_LAST_USED_SECONDS = store.LAST_USED_RESOLUTION.total_seconds()
# A key's cache entry is found by its public part: "hx_" and the prefix.
_PREFIXED_LENGTH = len(keys.KEY_MARK) + keys.PREFIX_LENGTH


class Outcome(Enum):
    ok = "ok"
    missing = "missing"  # no credential
    invalid = "invalid"  # unknown, wrong, revoked, malformed
    expired = "expired"
    blocked = "blocked"  # the address is over its failure budget
    limited = "limited"  # the caller is over its rate limit
    limiter_down = "limiter_down"  # Redis down with RATE_LIMIT_FAIL_OPEN=false
    issuer_down = "issuer_down"  # no OIDC signing keys could be fetched


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    caller: Caller | None = None
    retry_after: int = 0
    limit: int = 0
    window: int = 0


class _Key:
    """A cached key: what the check reads, plus when its use was last recorded."""

    __slots__ = ("caller", "expires", "id", "last_used", "proven", "revoked", "secret_hash")

    def __init__(self, stored: store.StoredKey) -> None:
        self.id = stored.id
        self.secret_hash = stored.secret_hash
        self.revoked = stored.revoked
        self.expires = stored.expires_at.timestamp() if stored.expires_at else None
        self.last_used = stored.last_used_at.timestamp() if stored.last_used_at else None
        self.caller = Caller(identity=stored.prefix, role=stored.role, kind="key")
        self.proven: bytes | None = None  # the credential last verified against secret_hash


class Gate:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        limiter: RateLimiter | None,
        tokens: TokenVerifier | None = None,
    ) -> None:
        self.enabled = settings.auth_enabled
        self.db = db
        self.limiter = limiter
        self.tokens = tokens
        self.keys: TtlCache[str, _Key | None] = TtlCache(
            settings.auth_cache_size, settings.auth_cache_seconds
        )
        self.verified: TtlCache[str, Caller] = TtlCache(
            settings.auth_cache_size, settings.auth_cache_seconds
        )
        self.limits = {role: settings.role_rate_limit(role.value) for role in Role}
        self.default_limit = settings.rate_limit_requests
        self._touching: set[asyncio.Task[None]] = set()

    async def admit(self, credential: str | None, address: str) -> Verdict:
        if not self.enabled:
            anonymous = Caller(identity="anonymous", role=Role.admin, kind="anonymous")
            return await self._limit(anonymous, address, identity=f"addr:{address}")
        if credential is None:
            return await self._refuse(Outcome.missing, address, None)
        if keys.looks_like_key(credential):
            checked = await self._check_key(credential, address)
        elif self.tokens is not None:
            checked = await self._check_token(credential)
        else:
            checked = Outcome.invalid
        if checked is Outcome.issuer_down:  # not the caller's failure: no failure counted
            return Verdict(checked, retry_after=1)
        if isinstance(checked, Outcome):
            return await self._refuse(checked, address, credential)
        return await self._limit(checked, address)

    def forget(self, prefix: str) -> None:
        """This worker stops trusting its cached copy at once (after a revocation here)."""
        self.keys.drop(prefix)

    async def _check_key(self, credential: str, address: str) -> Caller | Outcome:
        entry = self._proven(credential)
        if entry is None:
            verified = await self._verify_key(credential, address)
            if isinstance(verified, Outcome):
                return verified
            entry = verified
        now = time.time()
        if entry.expires is not None and entry.expires <= now:
            return Outcome.expired
        if entry.last_used is None or now - entry.last_used >= _LAST_USED_SECONDS:
            entry.last_used = now
            self._record_use(entry.id, now)
        return entry.caller

    def _proven(self, credential: str) -> _Key | None:
        """The cached key this exact credential was already verified for, if any."""
        found, entry = self.keys.peek(credential[:_PREFIXED_LENGTH])
        if not found or entry is None or entry.proven is None or entry.revoked:
            return None
        return entry if hmac.compare_digest(credential.encode(), entry.proven) else None

    async def _verify_key(self, credential: str, address: str) -> _Key | Outcome:
        parsed = keys.parse(credential)
        if parsed is None:
            return Outcome.invalid
        found, entry = self.keys.peek(parsed.prefix)
        if not found:
            # A miss reads the database: not for an address that is already refused.
            if self.limiter is not None and await self.limiter.blocked(address):
                return Outcome.blocked
            entry = await self.keys.get(parsed.prefix, lambda: self._load(parsed.prefix))
        if (
            entry is None
            or entry.revoked
            or not keys.secret_matches(parsed.secret, entry.secret_hash)
        ):
            return Outcome.invalid
        entry.proven = credential.encode()
        return entry

    async def _load(self, prefix: str) -> _Key | None:
        stored = await self.db.read(lambda c: store.find(c, prefix))
        return None if stored is None else _Key(stored)

    def _record_use(self, key_id: int, now: float) -> None:
        """last_used_at, written in the background: the request does not wait for it."""

        async def write() -> None:
            when = datetime.fromtimestamp(now, UTC)
            try:
                await self.db.run(lambda s: store.touch(s, key_id, when))
            except Exception as exc:  # a missed last-used time is not worth a failed request
                logger.warning(
                    "recording a key's last use failed", extra={"error_type": type(exc).__name__}
                )

        task = asyncio.get_running_loop().create_task(write())
        self._touching.add(task)
        task.add_done_callback(self._touching.discard)

    async def _check_token(self, token: str) -> Caller | Outcome:
        assert self.tokens is not None
        digest = hashlib.sha256(token.encode()).hexdigest()
        found, caller = self.verified.peek(digest)
        if found and caller is not None:
            return caller
        try:
            caller, expires = await self.tokens.verify(token)
        except InvalidToken as exc:
            logger.info("bearer token refused", extra={"reason": str(exc)})
            return Outcome.invalid
        except IssuerUnavailable:
            return Outcome.issuer_down
        self.verified.put(digest, caller, ttl=expires - time.time())
        return caller

    async def _limit(self, caller: Caller, address: str, identity: str | None = None) -> Verdict:
        if self.limiter is None:
            return Verdict(Outcome.ok, caller)
        limit = self.limits[caller.role] if caller.role is not None else self.default_limit
        guard = address if caller.kind != "anonymous" else None
        decision = await self.limiter.hit(identity or caller.identity, limit, guard)
        if decision.allowed:
            return Verdict(Outcome.ok, caller)
        if decision.unavailable:
            return Verdict(Outcome.limiter_down, retry_after=1)
        if decision.blocked:
            return self._blocked(decision.retry_after)
        return Verdict(Outcome.limited, caller, decision.retry_after, limit, self.limiter.window)

    async def _refuse(self, outcome: Outcome, address: str, credential: str | None) -> Verdict:
        parsed = keys.parse(credential) if credential else None
        logger.info(
            "credential refused",
            extra={
                "reason": outcome.value,
                "client": address,
                # The public part only, when it is one: never the secret or a token.
                "key": parsed.prefix if parsed else "-",
            },
        )
        if self.limiter is None:
            return Verdict(outcome)
        if outcome is Outcome.blocked:
            return self._blocked(self.limiter.retry_after())
        decision = await self.limiter.fail(address)
        if decision.unavailable and not decision.allowed:
            return Verdict(Outcome.limiter_down, retry_after=1)
        if not decision.allowed:
            return self._blocked(decision.retry_after)
        return Verdict(outcome)

    def _blocked(self, retry_after: int) -> Verdict:
        limiter = self.limiter
        return Verdict(
            Outcome.blocked,
            retry_after=retry_after,
            limit=limiter.failure_limit if limiter else 0,
            window=limiter.window if limiter else 0,
        )
