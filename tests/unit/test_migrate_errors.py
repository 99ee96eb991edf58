"""heliox-migrate when the database goes away: one line, exit 1, never a traceback."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from heliox_migrate import commands
from heliox_migrate.cli import main as migrate
from heliox_migrate.database import migration_lock


class AdminShutdown(Exception):
    """Stands in for the driver's error."""


def _lost(statement: str = "SELECT 1") -> OperationalError:
    return OperationalError(
        statement, {}, AdminShutdown("server closed the connection unexpectedly"),
        connection_invalidated=True,
    )  # fmt: skip


class FakePostgresConnection:
    """Takes the advisory lock; once ``gone``, every call fails like a lost server."""

    dialect = SimpleNamespace(name="postgresql")

    def __init__(self) -> None:
        self.gone = False

    def _check(self, what: str) -> None:
        if self.gone:
            raise _lost(what)

    def execute(self, statement: Any, params: Any = None) -> Any:
        self._check(str(statement))
        return SimpleNamespace(scalar=lambda: True)

    def commit(self) -> None:
        self._check("COMMIT")

    def in_transaction(self) -> bool:
        return True

    def rollback(self) -> None:
        self._check("ROLLBACK")


def test_unlocking_on_a_lost_connection_raises_nothing_of_its_own() -> None:
    connection: Any = FakePostgresConnection()
    with migration_lock(connection, timeout=1):
        connection.gone = True  # the lock went with the connection; nothing to raise
    # The body's own error is the one that surfaces, not the unlock's.
    connection = FakePostgresConnection()

    def migrate_and_lose_the_server() -> None:
        with migration_lock(connection, timeout=1):
            connection.gone = True
            raise RuntimeError("the migration's error")

    with pytest.raises(RuntimeError, match="the migration's error"):
        migrate_and_lose_the_server()


@pytest.fixture
def sqlite_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'heliox.db'}")


@pytest.mark.parametrize("command", ["upgrade", "downgrade", "current", "check"])
def test_database_lost_is_one_error_line_and_exit_1(
    sqlite_db: None,
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def lost(*_args: Any, **_kwargs: Any) -> Any:
        raise _lost()

    for name in ("upgrade", "downgrade", "current_revision", "at_head"):
        monkeypatch.setattr(commands, name, lost)
    argv = [command, "base"] if command == "downgrade" else [command]
    assert migrate(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "level=ERROR" in line]
    assert len(errors) == 1, err
    assert (
        f'message="{command} failed: lost the database connection: '
        'AdminShutdown: server closed the connection unexpectedly"'
    ) in errors[0]


def test_migration_failure_that_loses_the_connection(
    sqlite_db: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The revision fails and the rollback and revision check fail too: still one line."""

    def failing_upgrade(*_args: Any, **_kwargs: Any) -> None:
        raise _lost("ALTER TABLE items ...")

    calls = {"n": 0}
    real_current = commands.current_revision

    def current_then_lost(connection: Any) -> str:
        calls["n"] += 1
        if calls["n"] > 1:
            raise _lost()
        return real_current(connection)

    monkeypatch.setattr(commands.command, "upgrade", failing_upgrade)
    monkeypatch.setattr(commands, "current_revision", current_then_lost)
    assert migrate(["upgrade"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "level=ERROR" in line]
    assert len(errors) == 1, err
    assert "upgrade to head failed: AdminShutdown: server closed the connection" in errors[0]
    assert "lost the database connection, schema revision unknown (was base)" in errors[0]
