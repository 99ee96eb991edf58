"""heliox-migrate against real PostgreSQL: the commands, waiting, locking, failing."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from heliox_migrate.database import LOCK_KEY
from tests.schema_drift import drift_report, schema_drift
from tests.server_fixtures import MIGRATE_COMMAND, run_migrate
from tests.servers import REPO_ROOT, PostgresServer, free_port

SCRIPTS = REPO_ROOT / "migrations-job"
HEAD = "0002"  # the newest real revision (api_keys); the tests add theirs on top


def _tables(server: PostgresServer, url: str) -> set[str]:
    rows = server.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", dbname=url.rsplit("/", 1)[1]
    )
    return {row[0] for row in rows}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "level=ERROR" in line]


def test_commands(postgres_server: PostgresServer, empty_database_url: str) -> None:
    url = empty_database_url
    assert run_migrate(url, "check").returncode == 1
    assert run_migrate(url, "current").stdout.strip() == "base"
    upgraded = run_migrate(url, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Running upgrade  -> 0001" in upgraded.stderr
    assert {"items", "alembic_version"} <= _tables(postgres_server, url)
    assert run_migrate(url, "current").stdout.strip() == HEAD
    assert run_migrate(url, "check").returncode == 0
    # The DSN's password never reaches the output.
    assert postgres_server.password not in upgraded.stderr + upgraded.stdout

    down = run_migrate(url, "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert "items" not in _tables(postgres_server, url)
    assert run_migrate(url, "check").returncode == 1
    assert run_migrate(url, "upgrade").returncode == 0


class Stderr:
    """A running process's stderr, read line by line in a thread, so a test can wait for a line
    (a fixed sleep is too short on a loaded machine: the runner's start alone can take 2 s)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self.lines: list[str] = []
        self._stream = proc.stderr
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} within {timeout}s:\n{''.join(self.lines)}")

    def text(self, timeout: float = 60) -> str:
        self._reader.join(timeout)
        return "".join(self.lines)


def test_concurrent_upgrades_serialize_and_both_succeed(
    postgres_server: PostgresServer, empty_database_url: str
) -> None:
    # A session holds the migration lock, so both runs have to wait for it.
    holder = psycopg.connect(
        host="127.0.0.1", port=postgres_server.port, user=postgres_server.user,
        password=postgres_server.password, dbname=empty_database_url.rsplit("/", 1)[1],
        autocommit=True,
    )  # fmt: skip
    holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    env = {**os.environ, "DATABASE_URL": empty_database_url, "ENV": "production"}
    command = MIGRATE_COMMAND
    runs = [
        subprocess.Popen(
            [*command, "upgrade"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    errs = [Stderr(run) for run in runs]
    for err in errs:  # both are up and polling the lock
        err.wait_for("another migration run holds the lock; waiting for it")
    assert all(run.poll() is None for run in runs)
    holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    holder.close()
    for run in runs:
        run.wait(timeout=60)
    stderr = [err.text() for err in errs]
    assert [run.returncode for run in runs] == [0, 0], stderr
    assert all("another migration run holds the lock; waiting for it" in err for err in stderr)
    # Exactly one of them applied the revision; the other found the schema at head.
    assert sum("Running upgrade  -> 0001" in err for err in stderr) == 1
    assert run_migrate(empty_database_url, "current").stdout.strip() == HEAD


def test_two_upgrades_racing_from_empty(empty_database_url: str) -> None:
    results: list[subprocess.CompletedProcess[str]] = []

    def upgrade() -> None:
        results.append(run_migrate(empty_database_url, "upgrade"))

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    assert sum("Running upgrade  -> 0001" in r.stderr for r in results) == 1


def test_failing_migration_keeps_the_previous_revision(
    postgres_server: PostgresServer, empty_database_url: str, tmp_path: Path
) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(SCRIPTS, scripts, ignore=shutil.ignore_patterns("heliox_migrate", "*.egg-info"))
    (scripts / "versions" / "0003_broken.py").write_text(
        '"""A revision that fails halfway."""\n'
        "import sqlalchemy as sa\n"
        "from alembic import op\n\n"
        'revision = "0003"\ndown_revision = "0002"\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade():\n"
        '    op.add_column("items", sa.Column("half_done", sa.Integer()))\n'
        '    op.execute("SELECT * FROM no_such_table")\n\n\n'
        "def downgrade():\n"
        '    op.drop_column("items", "half_done")\n'
    )
    result = run_migrate(empty_database_url, "upgrade", HELIOX_MIGRATIONS_DIR=str(scripts))
    assert result.returncode == 1
    errors = _error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "upgrade to head failed: UndefinedTable: relation" in errors[0]
    assert f"schema left at revision {HEAD} (was base)" in errors[0]
    assert "Traceback" not in result.stderr
    # the real revisions stayed applied, 0003's first half was rolled back with it.
    assert run_migrate(empty_database_url, "current").stdout.strip() == HEAD
    columns = postgres_server.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'",
        dbname=empty_database_url.rsplit("/", 1)[1],
    )
    assert "half_done" not in {c[0] for c in columns}
    check = run_migrate(empty_database_url, "check", HELIOX_MIGRATIONS_DIR=str(scripts))
    assert check.returncode == 1
    assert f"schema is at revision {HEAD}, head is 0003" in check.stderr


def _scripts_with(tmp_path: Path, name: str, body: str) -> Path:
    """A copy of the migration scripts with one more revision, 0003, running ``body``."""
    scripts = tmp_path / "migrations"
    shutil.copytree(SCRIPTS, scripts, ignore=shutil.ignore_patterns("heliox_migrate", "*.egg-info"))
    (scripts / "versions" / f"0003_{name}.py").write_text(
        f'"""{name}"""\n'
        "from alembic import op\n\n"
        'revision = "0003"\ndown_revision = "0002"\nbranch_labels = None\ndepends_on = None\n\n\n'
        f"def upgrade():\n    {body}\n\n\n"
        "def downgrade():\n    pass\n"
    )
    return scripts


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("0", "10s")),
        ({"MIGRATE_STATEMENT_TIMEOUT": "5", "MIGRATE_DDL_LOCK_TIMEOUT": "2.5"}, ("5s", "2500ms")),
    ],
    ids=["default", "configured"],
)
def test_migrations_run_without_the_apps_statement_timeout(
    postgres_server: PostgresServer,
    empty_database_url: str,
    tmp_path: Path,
    env: dict[str, str],
    expected: tuple[str, str],
) -> None:
    """The app's 0.5 s limit would kill this 1 s migration; the runner's session has its own."""
    scripts = _scripts_with(
        tmp_path,
        "slow",
        'op.execute("SELECT pg_sleep(1.2); CREATE TABLE seen AS SELECT '
        "current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt\")",
    )
    result = run_migrate(
        empty_database_url, "upgrade", HELIOX_MIGRATIONS_DIR=str(scripts),
        DB_STATEMENT_TIMEOUT_MS="500", **env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = postgres_server.execute(
        "SELECT st, lt FROM seen", dbname=empty_database_url.rsplit("/", 1)[1]
    )
    assert rows == [expected]


def _wait_for_query(server: PostgresServer, dbname: str, fragment: str) -> int:
    """The pid of the backend running a query that contains ``fragment``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = server.execute(
            f"SELECT pid FROM pg_stat_activity WHERE datname = '{dbname}' "
            f"AND query LIKE '%{fragment}%' AND pid <> pg_backend_pid()"
        )
        if rows:
            return int(rows[0][0])
        time.sleep(0.2)
    pytest.fail(f"no query with {fragment!r} started")


@pytest.mark.parametrize("how", ["server-stopped", "backend-terminated"])
def test_database_lost_mid_migration_is_one_line_and_exit_1(tmp_path: Path, how: str) -> None:
    scripts = _scripts_with(tmp_path, "long", 'op.execute("SELECT pg_sleep(60)")')
    with PostgresServer() as server:
        url = server.create_database("lost")
        run = subprocess.Popen(
            [*MIGRATE_COMMAND, "upgrade"],
            env={**os.environ, "DATABASE_URL": url, "ENV": "production",
                 "HELIOX_MIGRATIONS_DIR": str(scripts)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        pid = _wait_for_query(server, "lost", "pg_sleep(60)")
        if how == "server-stopped":
            server.stop("fast")
        else:
            server.execute(f"SELECT pg_terminate_backend({pid})")
        _, stderr = run.communicate(timeout=60)
    assert run.returncode == 1, stderr
    assert "Traceback" not in stderr
    errors = _error_lines(stderr)
    assert len(errors) == 1, stderr
    assert "upgrade to head failed: " in errors[0]
    if how == "server-stopped":
        assert "lost the database connection, schema revision unknown (was base)" in errors[0]
    else:  # the server is still there: the runner reconnects and can tell
        assert f"schema left at revision {HEAD} (was base)" in errors[0]


def test_unreachable_database_gives_up_in_bounded_time() -> None:
    url = f"postgresql://u:secret-pw@127.0.0.1:{free_port()}/db"
    started = time.monotonic()
    result = run_migrate(url, "--db-wait", "2", "upgrade")
    elapsed = time.monotonic() - started
    assert result.returncode == 3
    errors = _error_lines(result.stderr)
    assert len(errors) == 1
    assert 'message="database not reachable within 2s: OperationalError:' in errors[0]
    assert "secret-pw" not in result.stderr
    assert elapsed < 10


def test_upgrade_waits_for_a_database_that_comes_up_late() -> None:
    with PostgresServer() as server:
        url = server.create_database("late")
        server.stop()
        run = subprocess.Popen(
            [*MIGRATE_COMMAND, "--db-wait", "30", "upgrade"],
            env={**os.environ, "DATABASE_URL": url, "ENV": "production"},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        err = Stderr(run)
        err.wait_for('message="waiting for the database"')
        assert run.poll() is None  # still waiting
        server.start()
        run.wait(timeout=60)
        stderr = err.text()
        assert run.returncode == 0, stderr
        assert 'message="waiting for the database"' in stderr
        assert "Running upgrade  -> 0001" in stderr


@pytest.mark.parametrize("command", ["upgrade", "check"])
def test_production_without_database_url_exits_2(command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [*MIGRATE_COMMAND, command],
        env={**env, "ENV": "production"}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        "heliox-migrate: configuration error: DATABASE_URL is not set"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_models_match_the_migration_head(database_url: str) -> None:
    """On PostgreSQL too (types, defaults and indexes reflect differently than on SQLite): the
    models against a database the runner migrated to head (tests/schema_drift.py)."""
    drift = schema_drift(database_url)
    assert not drift, drift_report(drift)


# Every character that means something in a URL, and a literal "%25" (decoded twice, it would
# become "%"). Managed databases hand out user names like "app@server".
ROLE = "app@srv:a/b?c#d%e+f g"
ROLE_PASSWORD = "p@ss:w/o?r#d%25+ x"


@pytest.fixture
def odd_role_database(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty database owned by a role whose name and password hold those characters."""
    name = f"r_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(
        """CREATE ROLE :"role" LOGIN PASSWORD :'password';
        CREATE DATABASE :"db" OWNER :"role";""",
        role=ROLE, password=ROLE_PASSWORD, db=name,
    )  # fmt: skip
    yield name
    postgres_server.drop_database(name)
    postgres_server.psql('DROP ROLE :"role";', role=ROLE)


def test_a_role_with_reserved_characters_migrates(
    postgres_server: PostgresServer, odd_role_database: str
) -> None:
    """The user name percent-encoded in DATABASE_URL and the password in DATABASE_PASSWORD (the
    chart's existingSecret path), then both percent-encoded in the URL (its values path)."""
    name = odd_role_database
    where = f"127.0.0.1:{postgres_server.port}/{name}"
    url = f"postgresql://{quote(ROLE, safe='')}@{where}"
    upgraded = run_migrate(url, "--db-wait", "5", "upgrade", DATABASE_PASSWORD=ROLE_PASSWORD)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Running upgrade  -> 0001" in upgraded.stderr
    # The tables belong to that role: the runner logged in as it, not as anyone else.
    owners = postgres_server.execute(
        "SELECT tableowner FROM pg_tables WHERE tablename = 'items'", dbname=name
    )
    assert owners == [(ROLE,)]
    full = f"postgresql://{quote(ROLE, safe='')}:{quote(ROLE_PASSWORD, safe='')}@{where}"
    checked = run_migrate(full, "--db-wait", "5", "check")
    assert checked.returncode == 0, checked.stderr
    for output in (upgraded.stderr, upgraded.stdout, checked.stderr, checked.stdout):
        assert ROLE_PASSWORD not in output
        assert quote(ROLE_PASSWORD, safe="") not in output
