"""``heliox-migrate``: apply, check and inspect the schema. Exit codes are part of the interface.

0 done / at head; 1 not at head (check) or a migration failed; 2 bad configuration or usage;
3 database not reachable within the wait; 4 migration lock not acquired in time.
Failures are one log line on stderr (no traceback unless LOG_LEVEL=DEBUG).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, PendingRollbackError

from heliox.core.config import ConfigError, Settings, load_settings
from heliox.core.logging import configure_logging
from heliox_migrate import commands
from heliox_migrate.database import (
    DatabaseUnreachable,
    LockTimeout,
    create_migration_engine,
    migration_timeouts,
    one_line,
    seconds_env,
    wait_for_database,
)
from heliox_migrate.paths import ScriptsNotFound, script_location

logger = logging.getLogger("heliox.migrate")


class _QuietAlembic(logging.Filter):
    """Drop Alembic's per-connection chatter; keep the "Running upgrade ..." lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Context impl", "Will assume"))


T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_LOCK = 0, 1, 2, 3, 4


def _parser(db_wait: float, lock_timeout: float) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heliox-migrate", description=__doc__)
    parser.add_argument(
        "--db-wait",
        type=float,
        default=db_wait,
        metavar="SECONDS",
        help="how long to wait for the database to accept connections "
        "(default: MIGRATE_DB_WAIT_TIMEOUT or 60)",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=lock_timeout,
        metavar="SECONDS",
        help="how long to wait for a concurrent run's lock (default: MIGRATE_LOCK_TIMEOUT or 300)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="apply migrations up to REVISION (default head)")
    up.add_argument("revision", nargs="?", default="head")
    check = sub.add_parser("check", help="exit 0 iff the schema is at head (see --allow-newer)")
    check.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep checking for up to SECONDS until the schema reaches head",
    )
    check.add_argument(
        "--allow-newer",
        action="store_true",
        help="also pass when the schema is at a revision these scripts do not know (migrated by "
        "a newer release, e.g. before a rollback)",
    )
    sub.add_parser("current", help="print the schema's current revision")
    down = sub.add_parser("downgrade", help="revert migrations down to REVISION (e.g. -1, base)")
    down.add_argument("revision")
    return parser


def _checked(problems: list[str], read: Callable[[], T]) -> T | None:
    try:
        return read()
    except ConfigError as exc:
        problems.extend(exc.lines)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    # Every problem at once, one line each.
    problems: list[str] = []
    settings = _checked(problems, load_settings)
    db_wait = _checked(problems, lambda: seconds_env("MIGRATE_DB_WAIT_TIMEOUT", 60.0))
    lock_timeout = _checked(problems, lambda: seconds_env("MIGRATE_LOCK_TIMEOUT", 300.0))
    _checked(problems, migration_timeouts)  # used by create_migration_engine
    if settings is None or db_wait is None or lock_timeout is None or problems:
        for line in problems:
            print(f"heliox-migrate: configuration error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    args = _parser(db_wait, lock_timeout).parse_args(argv)
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("alembic.runtime.migration").addFilter(_QuietAlembic())
    try:
        scripts = script_location()
    except ScriptsNotFound as exc:
        logger.error(str(exc))
        return EXIT_CONFIG

    return _connected(args, settings, scripts)


def _connected(args: argparse.Namespace, settings: Settings, scripts: Path) -> int:
    """Wait for the database, run the command; every failure is one log line and an exit code."""
    engine = create_migration_engine(settings)
    try:
        connection = wait_for_database(engine, args.db_wait)
    except DatabaseUnreachable as exc:
        logger.error(str(exc))
        return EXIT_UNREACHABLE
    debug = settings.log_level == "DEBUG"
    try:
        return _run(args, commands.alembic_config(scripts, connection), connection)
    except LockTimeout as exc:
        logger.error(str(exc))
        return EXIT_LOCK
    except commands.MigrationFailed as exc:
        logger.error(str(exc), exc_info=debug)
        return EXIT_FAILED
    except (DBAPIError, PendingRollbackError) as exc:
        # The database went away (or refused) outside a migration step: one line, no traceback.
        lost = isinstance(exc, PendingRollbackError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        )
        reason = "lost the database connection" if lost else "database error"
        logger.error(f"{args.command} failed: {reason}: {one_line(exc)}", exc_info=debug)
        return EXIT_FAILED
    finally:
        with contextlib.suppress(DBAPIError, PendingRollbackError):
            connection.close()
        engine.dispose()


def _run(args: argparse.Namespace, config: Config, connection: Connection) -> int:
    if args.command == "upgrade":
        revision = commands.upgrade(connection, config, args.revision, args.lock_timeout)
        logger.info("upgrade done", extra={"revision": revision})
        return EXIT_OK
    if args.command == "downgrade":
        revision = commands.downgrade(connection, config, args.revision, args.lock_timeout)
        logger.info("downgrade done", extra={"revision": revision})
        return EXIT_OK
    if args.command == "current":
        print(commands.current_revision(connection))
        return EXIT_OK
    ok, current, head = commands.at_head(connection, config, args.wait, args.allow_newer)
    if ok and current != head:
        logger.warning(
            f"schema is at revision {current}, newer than this release's head {head}: "
            "serving on it (--allow-newer)"
        )
        return EXIT_OK
    if ok:
        logger.info("schema is at head", extra={"revision": current})
        return EXIT_OK
    logger.error(f"schema is at revision {current}, head is {head}: run heliox-migrate upgrade")
    return EXIT_FAILED
