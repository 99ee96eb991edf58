"""What the kind end-to-end tier needs from the machine (Docker, kind, kubectl, helm)."""

from __future__ import annotations

import os
import shutil
import subprocess

from controlplane import TOOLS_BIN


def find_tool(name: str) -> str | None:
    """A tool from .tools/bin (scripts/tools.sh) or the PATH."""
    return shutil.which(name, path=f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def missing() -> str | None:
    """One line saying what this machine lacks for the tier, or None."""
    need = "the e2e tier needs Docker, kind, kubectl and helm; missing"
    if not shutil.which("docker"):
        return f"{need}: docker (not on PATH)"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return f"{need}: a running Docker engine (`docker info` did not answer)"
    if info.returncode != 0:
        return f"{need}: a running Docker engine (`docker info` failed)"
    for tool, how in (
        ("kind", "scripts/tools.sh kind"),
        ("helm", "scripts/tools.sh helm"),
        ("kubectl", "on PATH, or `make cluster-tools`"),
    ):
        if not find_tool(tool):
            return f"{need}: {tool} ({how})"
    return None
