"""One line on the terminal, outside pytest's output capture: progress of the long tiers (image
builds, clusters), shown as it happens."""

from __future__ import annotations

from collections.abc import Callable

import pytest


def terminal_writer(pytestconfig: pytest.Config, tag: str) -> Callable[[str], None]:
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def progress(msg: str) -> None:
        if reporter is None or capture is None:  # pragma: no cover (plugins turned off)
            print(f"[{tag}] {msg}", flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(f"[{tag}] {msg}")

    return progress
