"""Waiting for the database, and the advisory lock that serializes concurrent runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger("heliox.migrate")

# A fixed application-wide key: every heliox-migrate run against one database contends on it.
LOCK_KEY = 0x68656C696F78  # "heliox"


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
        if connection.in_transaction():
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        connection.commit()
