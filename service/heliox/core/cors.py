"""CORS options, shared by CORSMiddleware and by the errors HelioxMiddleware answers itself.

Those errors (413, 429, the limiter's 503, 500) never pass through CORSMiddleware, which sits
inside HelioxMiddleware, so a browser could not read them without the same headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heliox.core.config import Settings


def cors_options(settings: Settings) -> dict[str, Any] | None:
    """CORSMiddleware's options (None: CORS off); HelioxMiddleware's own errors follow them too."""
    if not settings.cors_enabled:
        return None
    return {
        "allow_origins": list(settings.cors_origins),
        "allow_methods": ["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        "allow_headers": ["*"],
        "allow_credentials": False,
        "expose_headers": ["X-Request-ID", "Retry-After", "X-Cache"],
        "max_age": 600,
    }


class ErrorCors:
    """The CORS headers CORSMiddleware would put on a simple response, for the errors this
    layer answers itself (they never reach CORSMiddleware, so browsers could not read them)."""

    def __init__(self, options: dict[str, Any]) -> None:
        origins = options.get("allow_origins", [])
        self.allow_all = "*" in origins
        self.origins = frozenset(origin.encode() for origin in origins)
        self.credentials = bool(options.get("allow_credentials"))
        self.common: list[tuple[bytes, bytes]] = []
        if self.credentials:
            self.common.append((b"access-control-allow-credentials", b"true"))
        exposed = options.get("expose_headers") or []
        if exposed:
            self.common.append((b"access-control-expose-headers", ", ".join(exposed).encode()))

    def headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        if origin is None or not (self.allow_all or origin in self.origins):
            return []
        if self.allow_all and not self.credentials:
            return [(b"access-control-allow-origin", b"*"), *self.common]
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"), *self.common]
