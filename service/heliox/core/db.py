"""SQLAlchemy engine, sessions and the time bounds that turn an outage into a quick 503.

Bounds, from the inside out: ``connect_timeout`` (a dead or black-holed server), the server's
``statement_timeout`` (a slow query), TCP keepalives and ``tcp_user_timeout`` (a silent network
partition), ``pool_timeout`` (an exhausted pool), and :meth:`Database.run`'s deadline around the
whole unit of work (a frozen server that still holds our sockets open).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as exc_mod
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from heliox.core.config import Settings
from heliox.core.errors import DatabaseUnavailable

logger = logging.getLogger("heliox.db")

T = TypeVar("T")


def _postgres_connect_args(
    settings: Settings, statement_timeout_ms: int | None, lock_timeout_ms: int | None
) -> dict[str, Any]:
    if statement_timeout_ms is None:
        statement_timeout_ms = settings.db_statement_timeout_ms
    options = f"-c statement_timeout={statement_timeout_ms}"
    if lock_timeout_ms is not None:
        options += f" -c lock_timeout={lock_timeout_ms}"
    return {
        "connect_timeout": settings.db_connect_timeout,
        "options": options,
        "application_name": "heliox",
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "tcp_user_timeout": settings.db_connect_timeout * 1000 * 3,
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def create_db_engine(
    settings: Settings,
    url: str | None = None,
    *,
    statement_timeout_ms: int | None = None,
    lock_timeout_ms: int | None = None,
) -> Engine:
    """An engine for DATABASE_URL (or the development SQLite file). Connects lazily.

    On PostgreSQL every session gets ``statement_timeout`` (``DB_STATEMENT_TIMEOUT_MS`` unless
    ``statement_timeout_ms`` is given; 0 = none) and, when ``lock_timeout_ms`` is given,
    ``lock_timeout``. The migration runner passes its own (no statement timeout).
    """
    sa_url = make_url(url) if url else settings.effective_database_url
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            sa_url,
            poolclass=QueuePool,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_pre_ping=settings.db_pool_pre_ping,
            pool_timeout=settings.db_pool_timeout,
            connect_args={"check_same_thread": False, "timeout": 5},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        sa_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=settings.db_pool_recycle,
        pool_timeout=settings.db_pool_timeout,
        connect_args=_postgres_connect_args(settings, statement_timeout_ms, lock_timeout_ms),
    )
    if settings.db_pool_pre_ping:
        ping_idle_connections(engine, PING_AFTER_IDLE_SECONDS)
    return engine


# A connection back in the pool for less than this was working moments ago: checking it again
# would cost a round trip per request for nothing (SQLAlchemy's pool_pre_ping pings every
# checkout, a third of an uncached read's round trips). One idle for longer is pinged before use,
# so after an outage the pool still replaces dead connections before a request sees them; one
# that breaks during use is caught by SQLAlchemy's disconnect handling (the request gets a 503,
# the pool drops every connection made before it).
PING_AFTER_IDLE_SECONDS = 1.0


def ping_idle_connections(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling for connections idle more than ``idle_seconds``."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned < idle_seconds:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            alive = not engine.dialect.is_disconnect(exc, dbapi_connection, None)
            if alive:
                raise
        if not alive:
            # The pool discards this connection and checks out another (a new one if needed).
            raise exc_mod.DisconnectionError("connection lost while idle in the pool")


class Database:
    """The engine, a session factory, and a bounded way to run work on them.

    At most ``slots`` units of work run at once (the pool's size): more would take overflow
    connections, which the pool opens for the burst and closes when they come back to a full
    pool, so a steady load of more concurrent requests than ``slots`` opened and closed a
    PostgreSQL session per request or so. Waiting requests wait here, on the event loop, for
    ``pool_timeout`` at most, instead of in threads contending for the GIL. The overflow then
    serves what runs beside request work (the readiness check) and units of work abandoned at
    their deadline, whose threads still hold a connection.
    """

    def __init__(
        self,
        engine: Engine,
        request_timeout: float,
        slots: int | None = None,
        pool_timeout: float | None = None,
    ) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.request_timeout = request_timeout
        pool = engine.pool
        size = slots if slots is not None else (pool.size() if isinstance(pool, QueuePool) else 5)
        self._slots = anyio.Semaphore(max(size, 1))
        self._slot_timeout = pool_timeout if pool_timeout is not None else request_timeout

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` with its own Session in a worker thread, in one transaction committed on
        success: the unit of work of a write."""

        def unit_of_work() -> T:
            with self.sessions.begin() as session:
                return work(session)

        return await self._bounded(unit_of_work)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run the read ``work`` on a Connection of its own, in a worker thread, in autocommit:
        no BEGIN and no COMMIT, one round trip per statement. Under PostgreSQL's default READ
        COMMITTED each statement sees its own snapshot inside a transaction too, so reads see
        nothing different.

        Reads are Core statements on a Connection rather than ORM queries in a Session: in
        process, a read by primary key cost ~125 us of CPU this way against ~300 us through a
        Session, its entity loading and a statement built per call (docs/ARCHITECTURE.md,
        "Performance").
        """

        def unit_of_work() -> T:
            with self.engine.connect() as connection:
                return work(connection.execution_options(isolation_level="AUTOCOMMIT"))

        return await self._bounded(unit_of_work)

    async def _bounded(self, unit_of_work: Callable[[], T]) -> T:
        """``unit_of_work`` in a worker thread, within a slot and the request's deadline.

        The deadline bounds the caller even when the thread is stuck on a frozen server: the
        thread is abandoned (its connection is reclaimed by keepalives or when the server
        returns) and the caller gets DatabaseUnavailable, which the handlers turn into 503.
        """
        try:
            with anyio.fail_after(self.request_timeout):
                await self._take_slot()
                try:
                    return await anyio.to_thread.run_sync(unit_of_work, abandon_on_cancel=True)
                finally:
                    self._slots.release()
        except TimeoutError:
            raise DatabaseUnavailable(
                f"no answer from the database within {self.request_timeout:g}s"
            ) from None

    async def _take_slot(self) -> None:
        """A slot for one unit of work, waited for at most ``pool_timeout`` (then 503, as
        an exhausted pool would answer)."""
        # A free slot is taken without a cancel scope: on every read that is not waiting.
        with contextlib.suppress(anyio.WouldBlock):
            self._slots.acquire_nowait()
            return
        try:
            with anyio.fail_after(self._slot_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise DatabaseUnavailable(
                f"no database connection free within {self._slot_timeout:g}s"
            ) from None

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def pool_status(self) -> dict[str, int]:
        pool = self.engine.pool
        if not isinstance(pool, QueuePool):
            return {}
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout(),
            "checked_in": pool.checkedin(),
            "overflow": max(pool.overflow(), 0),
            # What saturation is measured against (QueuePool keeps its max overflow private).
            "limit": pool.size() + max(pool._max_overflow, 0),
        }

    def dispose(self) -> None:
        self.engine.dispose()
