"""Keys that come from outside the API: the chart's bootstrap admin key (BOOTSTRAP_API_KEY,
from a Secret) and the development key of `make run` (a file under var/)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from heliox.core.audit import audit
from heliox.core.auth import keys, store

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from heliox.core.db import Database

logger = logging.getLogger("heliox.auth")

DEVELOPMENT = "development"  # created_by (and name) of the development key


def ensure_key(session: Session, value: str, source: str) -> store.Ensured:
    """``store.ensure`` for ``source`` (``bootstrap`` or ``development``), with its audit lines."""
    ensured = store.ensure(session, value, name=source, created_by=source)
    if ensured.created:
        audit(source, "key.create", ensured.prefix, role="admin", key_name=source)
    for prefix in ensured.revoked_others:
        audit(source, "key.revoke", prefix, reason="replaced")
    return ensured


async def keep_bootstrap_key(db: Database, value: str, retry_seconds: float = 5.0) -> None:
    """Create or update the bootstrap key at start, retried while the database is unreachable
    (each worker runs this; ``store.ensure`` makes the races harmless)."""
    while True:
        try:
            ensured = await db.run(lambda s: ensure_key(s, value, store.BOOTSTRAP))
        except Exception as exc:
            logger.warning(
                "bootstrap key not stored yet, retrying",
                extra={"error_type": type(exc).__name__, "retry_seconds": retry_seconds},
            )
            await asyncio.sleep(retry_seconds)
            continue
        if ensured.revoked_itself:
            logger.warning(
                "the bootstrap key was revoked and stays revoked: put a new key in its Secret",
                extra={"key": ensured.prefix},
            )
        else:
            logger.info("bootstrap key ready", extra={"key": ensured.prefix})
        return


def dev_key_file(database_file: Path) -> Path:
    """Where `make run` keeps its development key: beside the SQLite file, in var/."""
    return database_file.parent / "dev-api-key"


def read_or_make_key_file(path: Path) -> tuple[str, bool]:
    """The key in ``path`` (made, readable by its owner only, when missing): (key, made)."""
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        if keys.parse(value) is not None:
            return value, False
    path.parent.mkdir(parents=True, exist_ok=True)
    value = keys.generate()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(value + "\n")
    return value, True
