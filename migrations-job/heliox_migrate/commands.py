"""upgrade, check, current, downgrade: each on one connection, the schema-changing ones locked."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, PendingRollbackError

from heliox_migrate.database import migration_lock, one_line

logger = logging.getLogger("heliox.migrate")


class MigrationFailed(Exception):
    pass


def alembic_config(scripts: Path, connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.attributes["connection"] = connection
    return config


def current_revision(connection: Connection) -> str:
    heads = MigrationContext.configure(connection).get_current_heads()
    if connection.in_transaction():
        connection.commit()
    return ",".join(sorted(heads)) or "base"


def head_revision(config: Config) -> str:
    return ",".join(sorted(ScriptDirectory.from_config(config).get_heads())) or "base"


def _change(
    connection: Connection, config: Config, verb: str, target: str, lock_timeout: float
) -> str:
    with migration_lock(connection, lock_timeout):
        before = current_revision(connection)
        try:
            if verb == "upgrade":
                command.upgrade(config, target)
            else:
                command.downgrade(config, target)
        except Exception as exc:
            try:
                if connection.in_transaction():
                    connection.rollback()
                after = current_revision(connection)
            except (DBAPIError, PendingRollbackError):
                # The database went away: each revision commits alone, so the schema is at the
                # last one that committed; nothing here can tell which.
                raise MigrationFailed(
                    f"{verb} to {target} failed: {one_line(exc)}; lost the database connection, "
                    f"schema revision unknown (was {before}): run heliox-migrate current"
                ) from exc
            raise MigrationFailed(
                f"{verb} to {target} failed: {one_line(exc)}; "
                f"schema left at revision {after} (was {before})"
            ) from exc
        if connection.in_transaction():
            connection.commit()
        return current_revision(connection)


def upgrade(connection: Connection, config: Config, target: str, lock_timeout: float) -> str:
    return _change(connection, config, "upgrade", target, lock_timeout)


def downgrade(connection: Connection, config: Config, target: str, lock_timeout: float) -> str:
    return _change(connection, config, "downgrade", target, lock_timeout)


def known_revisions(config: Config) -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


def at_head(
    connection: Connection,
    config: Config,
    wait: float,
    allow_newer: bool = False,
    poll: float = 1.0,
) -> tuple[bool, str, str]:
    """Whether the schema is at head, polling up to ``wait`` seconds for it to get there.

    With ``allow_newer``, a schema at a revision these scripts do not know also passes: a newer
    release migrated it (after ``helm rollback``, say), and expand/contract migrations keep the
    older code working on it. A known revision below head never passes.
    """
    head = head_revision(config)
    known = known_revisions(config) if allow_newer else set()
    deadline = time.monotonic() + wait
    while True:
        current = current_revision(connection)
        newer = allow_newer and current != "base" and not set(current.split(",")) <= known
        ok = current == head or newer
        if ok or time.monotonic() >= deadline:
            return ok, current, head
        time.sleep(poll)
