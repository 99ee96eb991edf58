"""Pinned tools for the test tiers, found one way: `.tools/bin` (scripts/tools.sh and
scripts/control-plane/build.sh link them there), then the virtualenv, then PATH.

A missing tool is an assertion naming the fix (the tiers that use these tools install them
first: `make test-chart`, `make test-image`, `make test-cluster`), except on a machine without
Go, which cannot build them: there the test skips, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = ROOT / ".tools" / "bin"
VENV_BIN = ROOT / ".venv" / "bin"


def tool(name: str) -> str:
    for candidate in (TOOLS_BIN / name, VENV_BIN / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if not found and not shutil.which("go"):
        # The pinned Go tools are built from source: a machine with only Python skips (CI,
        # where skips fail, has Go).
        pytest.skip(f"needs {name}, which the project builds with Go 1.26+ (not on PATH)")
    assert found, (
        f"{name} not found in .tools/bin, .venv/bin or PATH: run `scripts/tools.sh {name}` "
        "(helm, helm3, helm-docs, kube-score), `make cluster-tools` (kubectl) or `make venv`"
    )
    return found


def offline_helm_env() -> dict[str, str]:
    """Rendering needs no cluster: KUBECONFIG points at nothing, helm's caches stay out of $HOME."""
    env = dict(os.environ)
    env["KUBECONFIG"] = os.devnull
    cache = str(Path(tempfile.gettempdir()) / "heliox-helm")
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env.setdefault(var, cache)
    return env


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`<helm> args...` offline; `helm` names the binary (`helm` is v4, `helm3` is v3)."""
    proc = subprocess.run(
        [tool(helm), *args],
        capture_output=True,
        text=True,
        env=offline_helm_env(),
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{helm} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
