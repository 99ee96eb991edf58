"""API keys in the database. Writes take the Session of one unit of work (``Database.run``),
reads the Connection of ``Database.read`` (Core statements); none knows about HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from heliox.core.auth import keys
from heliox.core.auth.roles import Role
from heliox.models import ApiKey
from heliox.models.base import utcnow

_keys = ApiKey.__table__

# last_used_at is written when it is older than this: cheap, and precise enough to find unused
# keys.
LAST_USED_RESOLUTION = timedelta(seconds=60)
BOOTSTRAP = "bootstrap"  # created_by of the key the chart's Secret holds


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as listings show it: never its secret or hash."""

    prefix: str
    name: str
    role: Role
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey | Row[Any]) -> KeyInfo:
        return cls(
            prefix=row.prefix,
            name=row.name,
            role=Role(row.role),
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What the check needs of a key: its hash, role and validity."""

    id: int
    prefix: str
    secret_hash: str
    role: Role
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool


def create(
    session: Session,
    *,
    name: str,
    role: Role,
    created_by: str,
    expires_at: datetime | None = None,
    value: str | None = None,
) -> tuple[str, KeyInfo]:
    """A new key: (the key, shown once; its listing). ``value`` stores a key made elsewhere."""
    key = value or keys.generate()
    parsed = keys.parse(key)
    if parsed is None:
        raise ValueError(f"not a Heliox API key ({keys.FORMAT_HINT})")
    row = ApiKey(
        prefix=parsed.prefix,
        secret_hash=keys.hash_secret(parsed.secret),
        name=name,
        role=role.value,
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return key, KeyInfo.of(row)


def find(connection: Connection, prefix: str) -> StoredKey | None:
    row = connection.execute(select(_keys).where(_keys.c.prefix == prefix)).first()
    if row is None:
        return None
    return StoredKey(
        id=row.id,
        prefix=row.prefix,
        secret_hash=row.secret_hash,
        role=Role(row.role),
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked=row.revoked_at is not None,
    )


def get(connection: Connection, prefix: str) -> KeyInfo | None:
    """An active (not revoked) key."""
    row = connection.execute(
        select(_keys).where(_keys.c.prefix == prefix, _keys.c.revoked_at.is_(None))
    ).first()
    return None if row is None else KeyInfo.of(row)


def listing(
    connection: Connection, offset: int = 0, limit: int = 100, *, include_revoked: bool = False
) -> tuple[list[KeyInfo], int]:
    query = select(_keys)
    if not include_revoked:
        query = query.where(_keys.c.revoked_at.is_(None))
    total = connection.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = connection.execute(query.order_by(_keys.c.id).offset(offset).limit(limit))
    return [KeyInfo.of(row) for row in rows], total


def revoke(session: Session, prefix: str) -> KeyInfo | None:
    """Revoke an active key; None when there is none with that prefix."""
    row = session.scalar(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)).with_for_update()
    )
    if row is None:
        return None
    row.revoked_at = utcnow()
    session.flush()
    return KeyInfo.of(row)


def touch(session: Session, key_id: int, now: datetime) -> None:
    """Record a use, unless one was recorded within LAST_USED_RESOLUTION: every worker and
    replica may ask once a minute, the row changes at most once a minute."""
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
    )


@dataclass(frozen=True, slots=True)
class Ensured:
    prefix: str
    created: bool
    revoked_others: list[str]
    revoked_itself: bool  # it exists but an admin revoked it: left revoked


def ensure(session: Session, value: str, *, name: str, created_by: str) -> Ensured:
    """Make the admin key ``value`` exist (the chart's bootstrap key, the development key), and
    revoke the keys this same source made before with another value (a rotated Secret).

    A key that exists but was revoked stays revoked: an admin revoked it for a reason (a leak),
    and a restart must not bring it back. Safe to run from many workers at once.
    """
    parsed = keys.parse(value)
    if parsed is None:
        raise ValueError(f"not a Heliox API key ({keys.FORMAT_HINT})")
    others = session.scalars(
        select(ApiKey).where(
            ApiKey.created_by == created_by,
            ApiKey.prefix != parsed.prefix,
            ApiKey.revoked_at.is_(None),
        )
    ).all()
    for other in others:
        other.revoked_at = utcnow()
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == parsed.prefix))
    created = False
    if row is None:
        try:
            with session.begin_nested():
                session.add(
                    ApiKey(
                        prefix=parsed.prefix,
                        secret_hash=keys.hash_secret(parsed.secret),
                        name=name,
                        role=Role.admin.value,
                        created_by=created_by,
                    )
                )
            created = True
        except IntegrityError:  # another worker made it first
            created = False
    elif row.revoked_at is None:
        row.secret_hash = keys.hash_secret(parsed.secret)
        row.role = Role.admin.value
        row.name = name
        row.created_by = created_by
        row.expires_at = None
    session.flush()
    return Ensured(
        prefix=parsed.prefix,
        created=created,
        revoked_others=[other.prefix for other in others],
        revoked_itself=row is not None and row.revoked_at is not None,
    )
