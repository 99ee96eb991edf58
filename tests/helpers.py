"""Helpers shared by the unit and integration tiers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from heliox.app import create_app
from heliox.core.auth import store
from heliox.core.auth.roles import Role
from heliox.core.config import FILE_VARIABLES, Settings
from heliox.core.urls import normalize_database_url

API_KEY_HEADER = "X-API-Key"


def clear_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every variable the settings read, so the machine's environment cannot leak in."""
    names = {name.upper() for name in Settings.model_fields}
    names |= {f"{name}_FILE" for name in FILE_VARIABLES} | {"SECRETS_DIR"}
    for name in names:
        monkeypatch.delenv(name, raising=False)
    # The OpenTelemetry SDK's own variables (an endpoint alone turns tracing on).
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name, raising=False)


def make_settings(**values: Any) -> Settings:
    """Settings from explicit values (validated like the environment's)."""
    return Settings(**values)


def create_key(database_url: str, role: str = "admin", name: str = "tests", **values: Any) -> str:
    """A new API key stored in ``database_url`` (at head), as `heliox-admin keys create` does."""
    engine = create_engine(normalize_database_url(database_url))
    try:
        with Session(engine) as session, session.begin():
            key, _info = store.create(
                session, name=name, role=Role(role), created_by="tests", **values
            )
    finally:
        engine.dispose()
    return key


@contextlib.contextmanager
def client_for(
    settings: Settings, *, role: str | None = "admin", **kwargs: Any
) -> Iterator[TestClient]:
    """A TestClient around a fresh app; lifespan (engine, Redis) runs on enter and exit.

    It sends a new API key of ``role`` when the database can store one (at head and reachable),
    so tests about other things call /api/v1 as a client with a key would; ``role=None`` sends
    none.
    """
    key = None
    if role is not None and settings.database_url is not None:
        with contextlib.suppress(SQLAlchemyError):
            key = create_key(settings.database_url, role)
    with TestClient(create_app(settings), raise_server_exceptions=False, **kwargs) as client:
        if key is not None:
            client.headers[API_KEY_HEADER] = key
        yield client


ERROR_KEYS = {"error", "message", "request_id"}


def assert_error_body(response: object, status: int, error: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert ERROR_KEYS <= body.keys() <= ERROR_KEYS | {"details"}
    assert body["error"] == error
    assert body["request_id"] == response.headers["x-request-id"]  # type: ignore[attr-defined]
    assert "Traceback" not in response.text  # type: ignore[attr-defined]
    return body  # type: ignore[no-any-return]
