"""heliox-migrate on the embedded SQLite database (what `make run` uses)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from heliox_migrate.cli import main as migrate
from tests.schema_drift import drift_report, schema_drift


@pytest.fixture
def db_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "nested" / "heliox.db"  # the directory is created on demand
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    return path


def _tables(path: Path) -> set[str]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_check_current_downgrade(db_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate(["check"]) == 1
    assert migrate(["upgrade"]) == 0
    assert {"items", "alembic_version"} <= _tables(db_file)
    capsys.readouterr()
    assert migrate(["current"]) == 0
    assert capsys.readouterr().out.strip() == "0002"  # head: api_keys
    assert migrate(["check"]) == 0
    assert migrate(["upgrade"]) == 0  # idempotent at head
    assert migrate(["downgrade", "base"]) == 0
    assert "items" not in _tables(db_file)
    assert migrate(["check"]) == 1
    assert migrate(["upgrade"]) == 0
    assert "items" in _tables(db_file)


def test_check_allow_newer_passes_only_a_revision_these_scripts_do_not_know(db_file: Path) -> None:
    """After `helm rollback` across a migration, the older pods' gate must open (--allow-newer);
    a schema that is merely behind must still hold them."""
    assert migrate(["check", "--allow-newer"]) == 1  # empty database: behind, not newer
    assert migrate(["upgrade"]) == 0
    engine = create_engine(f"sqlite:///{db_file}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed0002'"))
    engine.dispose()
    assert migrate(["check"]) == 1  # the default stays strict: exit 0 iff at head
    assert migrate(["check", "--allow-newer"]) == 0


def test_the_default_database_is_under_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert migrate(["upgrade"]) == 0
    assert "items" in _tables(tmp_path / "var" / "heliox.db")


def test_bad_configuration_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ENV", "production")
    assert migrate(["upgrade"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "heliox-migrate: configuration error: DATABASE_URL is not set: ENV=production needs a "
        "PostgreSQL URL (postgresql://user:password@host:5432/dbname); "
        "SQLite is for development only"
    ]


def test_missing_scripts_are_reported(
    db_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HELIOX_MIGRATIONS_DIR", str(tmp_path / "nowhere"))
    assert migrate(["upgrade"]) == 2
    assert "set HELIOX_MIGRATIONS_DIR" in capsys.readouterr().err


def test_bad_migration_timeouts_are_reported_together(
    db_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MIGRATE_STATEMENT_TIMEOUT", "forever")
    monkeypatch.setenv("MIGRATE_DDL_LOCK_TIMEOUT", "-1")
    monkeypatch.setenv("MIGRATE_DB_WAIT_TIMEOUT", "soon")
    assert migrate(["upgrade"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "heliox-migrate: configuration error: MIGRATE_DB_WAIT_TIMEOUT must be a number of "
        "seconds >= 0 (got 'soon')",
        "heliox-migrate: configuration error: MIGRATE_STATEMENT_TIMEOUT must be a number of "
        "seconds >= 0 (got 'forever')",
        "heliox-migrate: configuration error: MIGRATE_DDL_LOCK_TIMEOUT must be a number of "
        "seconds >= 0 (got '-1')",
    ]
    assert not db_file.exists()


def test_models_match_the_migration_head(sqlite_url: str) -> None:
    """A model changed without a revision (or a revision without the model) is caught here,
    not by the first deployment: alembic's autogenerate comparison against the database the
    runner migrated (tests/schema_drift.py)."""
    drift = schema_drift(sqlite_url)
    assert not drift, drift_report(drift)
