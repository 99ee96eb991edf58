"""Reliability tier: the service under gunicorn, real PostgreSQL and Redis, steady load from a
second process (``loaddriver.py``), faults injected while it runs. See docs/ARCHITECTURE.md,
"Benchmarks and reliability"."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import clear_settings_env
from tests.server_fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    database_url,
    migrated_template,
    postgres_server,
    redis_server,
    redis_url,
)

_SUMMARY: list[str] = []


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_settings_env(monkeypatch)


@pytest.fixture
def summary(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a scenario's summary line past pytest's capture (and again at the end)."""

    def emit(line: str) -> None:
        _SUMMARY.append(line)
        with capsys.disabled():
            print(f"\n[reliability] {line}", flush=True)

    return emit


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SUMMARY:
        terminalreporter.section("reliability summary")
        for line in _SUMMARY:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Real servers and signals can hang in ways a unit test cannot: bound every test.
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(240))


@pytest.fixture
def items_in(request: pytest.FixtureRequest) -> Callable[[int], list[int]]:
    """Seed N items straight into this test's database (``database_url``); returns their ids."""
    import psycopg  # noqa: PLC0415

    url: str = request.getfixturevalue("database_url")

    def seed(count: int) -> list[int]:
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "INSERT INTO items (name, description) SELECT 'seed ' || g, 'reliability' "
                "FROM generate_series(1, %s) g RETURNING id",
                (count,),
            ).fetchall()
        return [row[0] for row in rows]

    return seed
