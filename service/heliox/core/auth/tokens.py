"""OIDC bearer tokens: signature, issuer, audience and expiry checked with PyJWT against the
issuer's published signing keys (JWKS); the role read from a configurable claim.

The JWKS is fetched on first use, again when it is older than ``max_age``, and again when a
token names a key ID (``kid``) it lacks, as a rotation does, but not more than once per
``min_refresh`` seconds per worker whatever the tokens say: a flood of made-up key IDs costs at
most one fetch per interval, and concurrent requests share one fetch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import jwt

from heliox.core.auth.oidc import InvalidToken, IssuerUnavailable, OidcConfig, role_from_claims
from heliox.core.auth.roles import Caller

logger = logging.getLogger("heliox.auth")

Fetch = Callable[[str], dict[str, Any]]
_FETCH_TIMEOUT = 5.0
_MAX_DOCUMENT = 1 << 20


def fetch_json(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT) as response:  # noqa: S310
        document = json.loads(response.read(_MAX_DOCUMENT))
    if not isinstance(document, dict):
        raise ValueError(f"{url}: not a JSON object")
    return document


class Jwks:
    """The issuer's signing keys by key ID, cached, refreshed within bounds (module docstring)."""

    def __init__(
        self,
        config: OidcConfig,
        fetch: Fetch = fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] | None = None
        self._jwks_url = config.jwks_url
        self._fetched_at = float("-inf")  # the last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        since = self._clock() - self._fetched_at
        if self._keys is None:
            # None yet: fetch, unless an attempt just failed (then the issuer is down).
            if since >= self.config.min_refresh_seconds:
                await self._refresh()
            if self._keys is None:
                raise IssuerUnavailable("no signing keys fetched from the issuer yet")
        elif since >= self.config.max_age_seconds:
            await self._refresh()
        found = self._lookup(kid)
        if found is None and self._clock() - self._fetched_at >= self.config.min_refresh_seconds:
            await self._refresh()  # perhaps a rotated key
            found = self._lookup(kid)
        return found

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        keys = self._keys or {}
        if kid is None and len(keys) == 1:  # a token without kid, an issuer with one key
            return next(iter(keys.values()))
        return keys.get(kid)

    async def _refresh(self) -> None:
        attempted = self._fetched_at
        async with self._lock:
            if self._fetched_at != attempted:
                return  # another request fetched while this one waited: use its result
            self._fetched_at = self._clock()
            self.fetches += 1
            try:
                keys = await anyio.to_thread.run_sync(self._load)
            except Exception as exc:
                logger.warning(
                    "cannot fetch the OIDC signing keys",
                    extra={"issuer": self.config.issuer, "error_type": type(exc).__name__},
                )
                return  # keep the keys we have
            self._keys = keys
            logger.info(
                "OIDC signing keys fetched",
                extra={"issuer": self.config.issuer, "kids": ",".join(map(str, keys))},
            )

    def _load(self) -> dict[str | None, jwt.PyJWK]:
        if self._jwks_url is None:
            discovery = self._fetch(
                self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            uri = discovery.get("jwks_uri")
            if not isinstance(uri, str):
                raise ValueError("the issuer's discovery document has no jwks_uri")
            self._jwks_url = uri
        document = self._fetch(self._jwks_url)
        keys: dict[str | None, jwt.PyJWK] = {}
        for data in document.get("keys", []):
            if not isinstance(data, dict) or data.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(data)
            except jwt.PyJWTError:
                continue  # a key type or algorithm PyJWT cannot use: skip it, keep the others
            keys[key.key_id] = key
        if not keys:
            raise ValueError("the issuer's JWKS has no usable signing key")
        return keys


class TokenVerifier:
    def __init__(self, config: OidcConfig, jwks: Jwks | None = None) -> None:
        self.config = config
        self.jwks = jwks or Jwks(config)

    async def verify(self, token: str) -> tuple[Caller, float]:
        """The caller and the token's expiry (epoch seconds); InvalidToken otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed: {type(exc).__name__}") from None
        if header.get("alg") not in self.config.algorithms:
            raise InvalidToken(f"algorithm {header.get('alg')!r} not accepted")
        kid = header.get("kid")
        key = await self.jwks.key(kid if isinstance(kid, str) else None)
        if key is None:
            raise InvalidToken("signed with a key the issuer does not publish")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        role = role_from_claims(claims, self.config.role_claim)
        return Caller(identity=f"oidc:{claims['sub']}", role=role, kind="token"), float(
            claims["exp"]
        )
