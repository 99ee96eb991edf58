"""Settings: one validated, cached object read from the environment.

Sources, highest precedence first: an environment variable; ``<NAME>_FILE`` naming a file that
holds the value (for the secret-bearing variables below); a file named after the variable in
``SECRETS_DIR`` (a mounted Kubernetes Secret); the default. Problems are reported as one line
each through :class:`ConfigError`, never with a secret in them.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL

from heliox.core.auth.settings import auth_problems
from heliox.core.tracing import tracing_problems
from heliox.core.urls import (
    database_url,
    database_url_problems,
    normalize_database_url,
    redis_url_problems,
    redis_url_with_password,
)

# Variables that may come from a file via <NAME>_FILE (mounted Secrets).
FILE_VARIABLES = (
    "DATABASE_URL",
    "DATABASE_PASSWORD",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "BOOTSTRAP_API_KEY",
    "METRICS_TOKEN",
)

_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg"}


class ConfigError(Exception):
    """Invalid configuration; ``lines`` holds one human-readable line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for list variables."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json  # noqa: PLC0415 - only for the rare JSON spelling

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def default_sqlite_path() -> Path:
    """``var/heliox.db`` under the working directory, or under the temp dir when that is read-only.

    The image runs with a read-only root filesystem where only /tmp is writable.
    """
    cwd = Path.cwd()
    if os.access(cwd, os.W_OK):
        return cwd / "var" / "heliox.db"
    return Path(tempfile.gettempdir()) / "heliox" / "heliox.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    env: Literal["development", "staging", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["kv", "json"] = "kv"

    database_url: str | None = None
    database_password: SecretStr | None = None
    db_pool_size: int = Field(5, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_recycle: int = Field(3600, ge=-1)
    db_pool_pre_ping: bool = True
    db_pool_timeout: float = Field(5.0, gt=0)
    db_connect_timeout: int = Field(3, ge=1)
    db_statement_timeout_ms: int = Field(10_000, ge=0)
    db_request_timeout: float = Field(15.0, gt=0)
    health_db_timeout: float = Field(2.0, gt=0)
    health_db_cache_seconds: float = Field(1.0, ge=0)

    redis_url: str | None = None
    redis_password: SecretStr | None = None
    redis_socket_timeout: float = Field(0.5, gt=0)
    redis_connect_timeout: float = Field(0.5, gt=0)
    redis_backoff_seconds: float = Field(2.0, ge=0)
    cache_ttl_seconds: int = Field(60, ge=1)

    rate_limit_enabled: bool = True
    rate_limit_requests: int = Field(100, ge=1)
    rate_limit_window_seconds: int = Field(60, ge=1)
    rate_limit_fail_open: bool = True
    # Per role, for authenticated callers (unset: RATE_LIMIT_REQUESTS); failed credentials per
    # client address and window, after which that address is refused until the window ends.
    rate_limit_reader_requests: int | None = Field(None, ge=1)
    rate_limit_writer_requests: int | None = Field(None, ge=1)
    rate_limit_admin_requests: int | None = Field(None, ge=1)
    rate_limit_auth_failures: int = Field(20, ge=1)

    # Who may call /api/v1 (core/auth/). Off only behind a gateway that authenticates.
    auth_enabled: bool = True
    # A key's check is cached this long per worker: a revoked key stops working within it.
    auth_cache_seconds: float = Field(3.0, ge=0, le=60)
    auth_cache_size: int = Field(4096, ge=1)
    # The chart's bootstrap admin key, created or updated at start (only its hash is stored).
    bootstrap_api_key: SecretStr | None = None
    # /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` when set.
    metrics_token: SecretStr | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_role_claim: str = "roles"
    oidc_jwks_url: str | None = None
    oidc_algorithms: Annotated[list[str], NoDecode] = ["RS256", "ES256"]
    oidc_leeway_seconds: float = Field(30.0, ge=0)
    oidc_jwks_min_refresh_seconds: float = Field(10.0, ge=0)
    oidc_jwks_max_age_seconds: float = Field(3600.0, gt=0)

    max_body_size: int = Field(1_048_576, ge=0)
    cors_enabled: bool = False
    cors_origins: Annotated[list[str], NoDecode] = []
    access_log: bool = True
    access_log_quiet_paths: Annotated[list[str], NoDecode] = ["/health", "/health/db", "/metrics"]
    # None: on in development, off in staging and production (see serve_api_docs).
    docs_enabled: bool | None = None
    # None: on when an OTLP endpoint is configured (OTEL_* variables, see core/tracing.py).
    tracing_enabled: bool | None = None
    tracing_excluded_paths: Annotated[list[str], NoDecode] = ["/health", "/health/db", "/metrics"]

    web_concurrency: int = Field(1, ge=1)
    port: int = Field(8000, ge=1, le=65535)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("env", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "cors_origins",
        "access_log_quiet_paths",
        "oidc_algorithms",
        "tracing_excluded_paths",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator(
        "database_url",
        "redis_url",
        "bootstrap_api_key",
        "metrics_token",
        "oidc_issuer",
        "oidc_audience",
        "oidc_jwks_url",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _normalize_db(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = normalize_database_url(value.strip())
        problems = database_url_problems(url)
        if problems:
            raise ValueError("; ".join(problems))
        return url

    @field_validator("redis_url")
    @classmethod
    def _check_redis(cls, value: str | None) -> str | None:
        problems = [] if value is None else redis_url_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    # -- derived values --------------------------------------------------------------------

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def serve_api_docs(self) -> bool:
        """/docs, /redoc and /openapi.json: DOCS_ENABLED when set, else in development only (the
        document maps every route and body for whoever asks)."""
        if self.docs_enabled is None:
            return self.is_development
        return self.docs_enabled

    @property
    def effective_database_url(self) -> URL:
        """DATABASE_URL with DATABASE_PASSWORD applied, or the development SQLite file; as
        SQLAlchemy's URL (``str()`` of it masks the password)."""
        if self.database_url is None:
            return URL.create("sqlite", database=str(default_sqlite_path()))
        secret = self.database_password
        return database_url(
            self.database_url, None if secret is None else secret.get_secret_value()
        )

    @property
    def effective_redis_url(self) -> str | None:
        """REDIS_URL with REDIS_PASSWORD applied."""
        if self.redis_url is None or self.redis_password is None:
            return self.redis_url
        return redis_url_with_password(self.redis_url, self.redis_password.get_secret_value())

    @property
    def oidc_enabled(self) -> bool:
        return self.oidc_issuer is not None

    def role_rate_limit(self, role: str | None) -> int:
        """Requests per window for a caller of ``role`` (RATE_LIMIT_<ROLE>_REQUESTS)."""
        per_role = {
            "reader": self.rate_limit_reader_requests,
            "writer": self.rate_limit_writer_requests,
            "admin": self.rate_limit_admin_requests,
        }.get(role or "")
        return per_role if per_role is not None else self.rate_limit_requests

    @property
    def database_is_postgres(self) -> bool:
        return self.database_url is not None and self.database_url.startswith("postgresql+")


def _policy_problems(settings: Settings) -> list[str]:
    """Rules that depend on more than one variable."""
    problems: list[str] = []
    if not settings.is_development:
        if settings.database_url is None:
            problems.append(
                f"DATABASE_URL is not set: ENV={settings.env} needs a PostgreSQL URL "
                "(postgresql://user:password@host:5432/dbname); SQLite is for development only"
            )
        elif not settings.database_is_postgres:
            scheme = settings.database_url.split("://", 1)[0]
            problems.append(
                f"DATABASE_URL must be a PostgreSQL URL when ENV={settings.env} (got {scheme}://)"
            )
    if settings.database_url is not None:
        scheme = settings.database_url.split("://", 1)[0]
        if scheme.split("+", 1)[0] not in ("postgresql", "sqlite"):
            problems.append(f"DATABASE_URL: unsupported scheme {scheme}:// (postgresql or sqlite)")
        elif scheme.startswith("postgresql") and scheme not in _POSTGRES_SCHEMES:
            problems.append(f"DATABASE_URL: driver {scheme} is not installed; use postgresql://")
    if settings.cors_enabled and not settings.cors_origins:
        problems.append("CORS_ENABLED=true but CORS_ORIGINS is empty (comma-separated origins)")
    problems.extend(auth_problems(settings))
    problems.extend(tracing_problems(settings))
    return problems


def _file_values(environ: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in FILE_VARIABLES:
        path = environ.get(f"{name}_FILE")
        if not path or environ.get(name):
            continue
        try:
            values[name.lower()] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            problems.append(f"{name}_FILE: cannot read {path}: {exc.strerror or exc}")
    return values, problems


_SECRET_FIELDS = {
    "database_url",
    "database_password",
    "redis_url",
    "redis_password",
    "bootstrap_api_key",
    "metrics_token",
}


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(part) for part in error.get("loc", ())) or "settings"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    line = f"{field.upper()}: {message}"
    if field not in _SECRET_FIELDS and "input" in error:
        line += f" (got {error['input']!r})"
    return line


def load_settings() -> Settings:
    """Read and validate settings from the environment; raise ConfigError with every problem."""
    overrides, problems = _file_values(dict(os.environ))
    secrets_dir = os.environ.get("SECRETS_DIR") or None
    if secrets_dir is not None and not Path(secrets_dir).is_dir():
        problems.append(f"SECRETS_DIR: {secrets_dir} is not a directory")
        secrets_dir = None
    try:
        settings = Settings(_secrets_dir=secrets_dir, **cast(dict[str, Any], overrides))
    except ValidationError as exc:
        problems.extend(_describe(dict(err)) for err in exc.errors())
        raise ConfigError(problems) from None
    problems.extend(_policy_problems(settings))
    if problems:
        raise ConfigError(problems)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, validated once."""
    return load_settings()
