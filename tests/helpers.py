"""Helpers shared by the unit and integration tiers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from heliox.app import create_app
from heliox.core.config import FILE_VARIABLES, Settings


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


@contextlib.contextmanager
def client_for(settings: Settings, **kwargs: Any) -> Iterator[TestClient]:
    """A TestClient around a fresh app; lifespan (engine, Redis) runs on enter and exit."""
    with TestClient(create_app(settings), raise_server_exceptions=False, **kwargs) as client:
        yield client
