"""Unit tier: Python only. The app runs on a SQLite file migrated by the real runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from heliox.core.config import Settings
from heliox_migrate.cli import main as migrate
from tests.helpers import clear_settings_env, client_for, make_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_settings_env(monkeypatch)


@pytest.fixture
def sqlite_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SQLite database at head, for this test alone."""
    url = f"sqlite:///{tmp_path / 'heliox.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert migrate(["upgrade"]) == 0
    monkeypatch.delenv("DATABASE_URL")
    return url


@pytest.fixture
def settings(sqlite_url: str) -> Settings:
    return make_settings(database_url=sqlite_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with client_for(settings) as test_client:
        yield test_client
