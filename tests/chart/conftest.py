"""Fixtures of the chart tier. `helm` runs each test under both Helm majors; the live scrape of
test_metric_names.py runs the service on the integration tier's PostgreSQL."""

from __future__ import annotations

import pytest

from tests.server_fixtures import (  # noqa: F401  (pytest finds fixtures by name)
    database_url,
    migrated_template,
    postgres_server,
)
from tests.tooling import tool

from .helpers import HELM_BINARIES


@pytest.fixture(params=HELM_BINARIES, scope="session")
def helm(request: pytest.FixtureRequest) -> str:
    """Name of the helm binary under test (`helm` is Helm 4, `helm3` is Helm 3)."""
    tool(request.param)  # fails, naming the fix, when the binary is missing
    return str(request.param)
