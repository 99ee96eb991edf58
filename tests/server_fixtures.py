"""pytest fixtures for real PostgreSQL and Redis, built on ``tests.servers``.

Use them from any tier's conftest.py by importing the names::

    from tests.server_fixtures import (  # noqa: F401  (fixtures are found by name)
        postgres_server, redis_server, migrated_template, database_url, empty_database_url,
        redis_url,
    )

``postgres_server`` and ``redis_server`` are session-scoped (one throwaway server each per
run); ``database_url`` gives every test its own database, copied from a template migrated to
head once per run; ``redis_url`` flushes the shared Redis before the test. When the server
binaries are missing, each fixture skips with one reason (a failure under CI=true, see
tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from tests.servers import PostgresServer, RedisServer, missing_servers

TEMPLATE_DB = "heliox_template"
# The console script's entry point, run with this interpreter (no reliance on PATH).
MIGRATE_COMMAND = [
    sys.executable,
    "-c",
    "from heliox_migrate.cli import main; raise SystemExit(main())",
]


def require_servers() -> None:
    reason = missing_servers()
    if reason is not None:
        pytest.skip(reason)


def run_migrate(
    database_url: str, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the real ``heliox-migrate`` console entry point against ``database_url``."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from heliox_migrate.cli import main; raise SystemExit(main())",
            *args,
        ],
        env={**os.environ, "DATABASE_URL": database_url, "ENV": "production", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    require_servers()
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    require_servers()
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def migrated_template(postgres_server: PostgresServer) -> str:
    """A database migrated to head once per run; tests get copies of it."""
    url = postgres_server.create_database(TEMPLATE_DB)
    result = run_migrate(url, "upgrade")
    assert result.returncode == 0, result.stderr
    return TEMPLATE_DB


@pytest.fixture
def database_url(postgres_server: PostgresServer, migrated_template: str) -> Iterator[str]:
    """A fresh database at head for this test alone (``postgresql://`` URL)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name, template=migrated_template)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def empty_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test alone (no migrations applied)."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if redis_server.process is None:
        redis_server.start()  # a test may have left it stopped
    assert redis_server.command("FLUSHALL") == "+OK"
    return redis_server.url
