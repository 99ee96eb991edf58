"""Shared pytest policy for every tier.

A tier that cannot run on this machine (no Postgres binaries, no Docker, ...) skips with a reason
naming what it needs. In CI (CI=true) such a skip is a failure, so nothing is silently dropped:
CI installs and starts everything every tier needs, the kind tier's Docker engine included.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every tier must run: {reason}"
