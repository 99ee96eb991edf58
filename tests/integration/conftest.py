"""Integration tier: real PostgreSQL and Redis, started here as throwaway servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import clear_settings_env, client_for, make_settings
from tests.server_fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    database_url,
    empty_database_url,
    migrated_template,
    postgres_server,
    redis_server,
    redis_url,
)


@pytest.fixture
def client(database_url: str, redis_url: str) -> Iterator[TestClient]:  # noqa: F811
    """The app on this test's database and the session's Redis, rate limit off."""
    settings = make_settings(
        database_url=database_url, redis_url=redis_url, rate_limit_enabled=False
    )
    with client_for(settings) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_settings_env(monkeypatch)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Real servers can hang in ways a unit test cannot: bound every test (pytest-timeout).
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(180))
