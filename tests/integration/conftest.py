"""Integration tier: real PostgreSQL and Redis, started here as throwaway servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import clear_settings_env
from tests.server_fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    database_url,
    empty_database_url,
    migrated_template,
    postgres_server,
    redis_server,
    redis_url,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_settings_env(monkeypatch)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Real servers can hang in ways a unit test cannot: bound every test (pytest-timeout).
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(180))
