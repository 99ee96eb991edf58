"""Integration tier: real PostgreSQL and Redis, started here as throwaway servers."""

from __future__ import annotations

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
