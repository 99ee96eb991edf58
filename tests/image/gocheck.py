"""tests/image/gocheck, a small Go program: kind's own config decoder and Go's text/template (as
Skaffold expands its templates). Built once per test session (Go caches the build between
sessions); used by the image tier and the kind tier."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent / "gocheck"
Expand = Callable[[str, Mapping[str, str]], str]


def find_go() -> str:
    fallback = Path("/usr/local/go/bin/go")  # where the official Go tarball installs it
    go = shutil.which("go") or (str(fallback) if fallback.exists() else None)
    if go is None:
        pytest.skip("needs Go to build tests/image/gocheck (kind's config decoder, text/template)")
    return go


def build(out: Path) -> Path:
    proc = subprocess.run(
        [find_go(), "build", "-mod=readonly", "-o", str(out), "."],
        cwd=SOURCE,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CGO_ENABLED": "0"},
        check=False,
    )
    assert proc.returncode == 0, f"building tests/image/gocheck failed:\n{proc.stderr}"
    return out


def template_expander(binary: Path) -> Expand:
    """Expand a template with Go's text/template over a string map, as Skaffold does."""

    def expand(text: str, variables: Mapping[str, str]) -> str:
        proc = subprocess.run(
            [str(binary), "template", text],
            input=json.dumps(dict(variables)),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, f"template {text!r}: {proc.stderr}"
        return proc.stdout

    return expand
