"""Fixtures of the image tier."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

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
