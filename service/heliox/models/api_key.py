"""API keys: only a hash of each key's secret is stored, never the key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String, func
from sqlalchemy.orm import Mapped, mapped_column

from heliox.models.base import Base, UTCDateTime, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('reader', 'writer', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The key's public part (``hx_`` + 12 characters): shown in listings and logs, looked up.
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    # SHA-256 of the secret part, hex. The secret is 256 random bits: a slow password hash would
    # add nothing but cost on every cache miss.
    secret_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    # Who made it: a key prefix, ``oidc:<subject>``, ``heliox-admin``, ``bootstrap``, ...
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, server_default=func.now()
    )
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Written at most about once a minute per key (see core/auth/gate.py), not per request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
