"""Waiting for the database, and the advisory lock that serializes concurrent runs."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, PendingRollbackError

from heliox.core.config import ConfigError, Settings
from heliox.core.db import create_db_engine

logger = logging.getLogger("heliox.migrate")

# A fixed application-wide key: every heliox-migrate run against one database contends on it.
LOCK_KEY = 0x68656C696F78  # "heliox"


# A migration may run for as long as it needs (no statement_timeout), but it must not queue
# behind a long transaction for long: while a schema change waits for its table lock, every
# query of the app on that table waits behind it.
DEFAULT_STATEMENT_TIMEOUT = 0.0
DEFAULT_DDL_LOCK_TIMEOUT = 10.0


def seconds_env(name: str, default: float) -> float:
    """A non-negative number of seconds from the environment; ConfigError (one line) if not."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise ConfigError([f"{name} must be a number of seconds >= 0 (got {raw!r})"])
    return value


def migration_timeouts() -> tuple[int, int]:
    """``(statement_timeout, lock_timeout)`` in ms for migration sessions, from the environment.

    ``MIGRATE_STATEMENT_TIMEOUT`` (default 0: none; the app's ``DB_STATEMENT_TIMEOUT_MS`` would
    kill a long migration) and ``MIGRATE_DDL_LOCK_TIMEOUT`` (default 10; 0 = wait for ever).
    """
    values: list[float] = []
    problems: list[str] = []
    for name, default in (
        ("MIGRATE_STATEMENT_TIMEOUT", DEFAULT_STATEMENT_TIMEOUT),
        ("MIGRATE_DDL_LOCK_TIMEOUT", DEFAULT_DDL_LOCK_TIMEOUT),
    ):
        try:
            values.append(seconds_env(name, default))
        except ConfigError as exc:
            problems.extend(exc.lines)
    if problems:
        raise ConfigError(problems)
    statement, lock = values
    return round(statement * 1000), round(lock * 1000)


def create_migration_engine(settings: Settings, url: str | None = None) -> Engine:
    """The app's engine settings, with the migration session's own timeouts (PostgreSQL)."""
    statement_ms, lock_ms = migration_timeouts()
    return create_db_engine(
        settings, url, statement_timeout_ms=statement_ms, lock_timeout_ms=lock_ms
    )


class DatabaseUnreachable(Exception):
    pass


class LockTimeout(Exception):
    pass


def one_line(exc: BaseException) -> str:
    """The first line of the driver's message: what went wrong, without SQL echo or links."""
    cause = getattr(exc, "orig", None) or exc
    text_ = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text_[0] if text_ else ''}".rstrip(": ")


def wait_for_database(engine: Engine, timeout: float, interval: float = 1.0) -> Connection:
    """An open connection, retrying until ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            connection = engine.connect()
            connection.execute(text("SELECT 1"))
            connection.commit()
        except DBAPIError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseUnreachable(
                    f"database not reachable within {timeout:g}s: {one_line(exc)}"
                ) from exc
            if attempt == 1 or attempt % 10 == 0:
                logger.info(
                    "waiting for the database",
                    extra={
                        "attempt": attempt,
                        "error": one_line(exc),
                        "remaining_s": int(remaining),
                    },
                )
            time.sleep(min(interval, max(remaining, 0.05)))
        else:
            return connection


@contextmanager
def migration_lock(connection: Connection, timeout: float, poll: float = 0.5) -> Iterator[None]:
    """Hold a session-level Postgres advisory lock; other dialects need none (SQLite: one file)."""
    if connection.dialect.name != "postgresql":
        yield
        return
    deadline = time.monotonic() + timeout
    announced = False
    while not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar():
        connection.commit()
        if not announced:
            logger.info("another migration run holds the lock; waiting for it")
            announced = True
        if time.monotonic() >= deadline:
            raise LockTimeout(f"migration lock not acquired within {timeout:g}s")
        time.sleep(poll)
    # Leave no transaction open: Alembic must own the transactions it runs migrations in.
    connection.commit()
    if announced:
        logger.info("migration lock acquired")
    try:
        yield
    finally:
        try:
            if connection.in_transaction():
                connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            connection.commit()
        except (DBAPIError, PendingRollbackError) as exc:
            # The connection is gone, and the session-level lock went with it. Raising here
            # would hide the error that brought us here (and print a traceback).
            logger.debug("migration lock not released explicitly", extra={"error": one_line(exc)})
