"""What the kind end-to-end tier needs from the machine (Docker, kind, kubectl, helm)."""

from __future__ import annotations

import os
import shutil

from controlplane import TOOLS_BIN

from tests import dockerenv


def find_tool(name: str) -> str | None:
    """A tool from .tools/bin (scripts/tools.sh) or the PATH."""
    return shutil.which(name, path=f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def missing() -> str | None:
    """One line saying what this machine lacks for the tier, or None. A Docker engine that does
    not run yet is not missing when this session can start one (tests/dockerenv.py)."""
    need = "the e2e tier needs Docker, kind, kubectl and helm; missing"
    lacking = dockerenv.engine_missing()
    if lacking:
        return f"{need}: {lacking}"
    for tool, how in (
        ("kind", "scripts/tools.sh kind"),
        ("helm", "scripts/tools.sh helm"),
        ("kubectl", "on PATH, or `make cluster-tools`"),
    ):
        if not find_tool(tool):
            return f"{need}: {tool} ({how})"
    return None
