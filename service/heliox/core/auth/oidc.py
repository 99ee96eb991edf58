"""OIDC settings, failures and the role claim: what the gate needs without importing PyJWT
(tokens.py, which imports it and the cryptography package, loads only when OIDC_ISSUER is set:
workers without OIDC do not carry those modules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from heliox.core.auth.roles import Role

if TYPE_CHECKING:
    from heliox.core.config import Settings


class InvalidToken(Exception):
    """The token is not one this service accepts (the reason is for the log only)."""


class IssuerUnavailable(Exception):
    """No signing keys could be fetched from the issuer."""


@dataclass(frozen=True, slots=True)
class OidcConfig:
    issuer: str
    audience: str
    role_claim: str = "roles"
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: float = 30.0
    min_refresh_seconds: float = 10.0
    max_age_seconds: float = 3600.0

    @classmethod
    def of(cls, settings: Settings) -> OidcConfig:
        assert settings.oidc_issuer is not None
        assert settings.oidc_audience is not None
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            role_claim=settings.oidc_role_claim,
            jwks_url=settings.oidc_jwks_url,
            algorithms=tuple(settings.oidc_algorithms),
            leeway_seconds=settings.oidc_leeway_seconds,
            min_refresh_seconds=settings.oidc_jwks_min_refresh_seconds,
            max_age_seconds=settings.oidc_jwks_max_age_seconds,
        )


def role_from_claims(claims: dict[str, Any], path: str) -> Role | None:
    """The highest role named by the claim at ``path`` (dots go into objects, as in Keycloak's
    ``realm_access.roles``); a string or a list of strings. None when it names none."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    names = value if isinstance(value, list) else [value]
    roles = [role for role in map(Role.parse, names) if role is not None]
    return max(roles, key=lambda role: role.rank) if roles else None
