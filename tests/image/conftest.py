"""Fixtures of the image tier."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests import dockerenv

GOCHECK = Path(__file__).resolve().parent / "gocheck"


def find_go() -> str:
    fallback = Path("/usr/local/go/bin/go")  # where the official Go tarball installs it
    go = shutil.which("go") or (str(fallback) if fallback.exists() else None)
    if go is None:
        pytest.skip("needs Go to build tests/image/gocheck (kind's config decoder, text/template)")
    return go


@pytest.fixture(scope="session")
def gocheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/image/gocheck built once per session (Go caches the build between sessions)."""
    go = find_go()
    out = tmp_path_factory.mktemp("gocheck") / "gocheck"
    proc = subprocess.run(
        [go, "build", "-mod=readonly", "-o", str(out), "."],
        cwd=GOCHECK,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CGO_ENABLED": "0"},
        check=False,
    )
    assert proc.returncode == 0, f"building tests/image/gocheck failed:\n{proc.stderr}"
    return out


@pytest.fixture(scope="session")
def go_template(gocheck: Path) -> Callable[[str, Mapping[str, str]], str]:
    """Expand a template with Go's text/template over a string map, as skaffold does."""

    def expand(text: str, variables: Mapping[str, str]) -> str:
        proc = subprocess.run(
            [str(gocheck), "template", text],
            input=json.dumps(dict(variables)),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, f"template {text!r}: {proc.stderr}"
        return proc.stdout

    return expand


@pytest.fixture(scope="session")
def image_progress(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Writes one line to the terminal, outside pytest's output capture (image builds are long)."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def progress(msg: str) -> None:
        if reporter is None or capture is None:  # pragma: no cover (plugins turned off)
            print(f"[image] {msg}", flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.ensure_newline()
            reporter.write_line(f"[image] {msg}")

    return progress


@pytest.fixture(scope="session")
def docker_engine(image_progress: Callable[[str], None]) -> Iterator[None]:
    """A Docker engine for the session (tests/dockerenv.py); skips, saying what is missing."""
    missing = dockerenv.engine_missing()
    if missing:
        pytest.skip(f"needs Docker: {missing}")
    with dockerenv.engine(image_progress):
        yield
