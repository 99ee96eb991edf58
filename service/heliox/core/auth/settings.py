"""The authentication settings' rules that span several variables (config.py reports them)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from heliox.core.auth import keys

if TYPE_CHECKING:
    from heliox.core.config import Settings

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_ALGORITHMS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}


def auth_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    bootstrap = settings.bootstrap_api_key
    if bootstrap is not None and keys.parse(bootstrap.get_secret_value().strip()) is None:
        # Never echo the value: it is a secret even when malformed.
        problems.append(f"BOOTSTRAP_API_KEY is not a Heliox API key ({keys.FORMAT_HINT})")
    if settings.oidc_issuer is None:
        if settings.oidc_audience is not None:
            problems.append("OIDC_AUDIENCE is set but OIDC_ISSUER is not")
        return problems
    if settings.oidc_audience is None:
        problems.append("OIDC_ISSUER is set but OIDC_AUDIENCE is not (the API's client ID)")
    for name, url in (
        ("OIDC_ISSUER", settings.oidc_issuer),
        ("OIDC_JWKS_URL", settings.oidc_jwks_url),
    ):
        if url is not None:
            problems.extend(_url_problems(name, url))
    unknown = sorted(set(settings.oidc_algorithms) - _ALGORITHMS)
    if unknown or not settings.oidc_algorithms:
        problems.append(
            f"OIDC_ALGORITHMS: {', '.join(unknown) or 'empty'}: use asymmetric ones "
            f"({', '.join(sorted(_ALGORITHMS))})"
        )
    return problems


def _url_problems(name: str, url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return []
    if parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK:
        return []  # a local issuer (development, tests)
    return [f"{name} must be an https:// URL (http:// only on localhost) (got {url!r})"]
