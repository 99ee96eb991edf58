"""Where the Alembic scripts (env.py, versions/) are."""

from __future__ import annotations

import os
from pathlib import Path


class ScriptsNotFound(Exception):
    pass


def script_location() -> Path:
    """HELIOX_MIGRATIONS_DIR, else the migrations-job directory this package sits in."""
    configured = os.environ.get("HELIOX_MIGRATIONS_DIR")
    candidate = Path(configured) if configured else Path(__file__).resolve().parent.parent
    if not (candidate / "env.py").is_file() or not (candidate / "versions").is_dir():
        raise ScriptsNotFound(
            f"no Alembic scripts (env.py, versions/) in {candidate}; "
            "set HELIOX_MIGRATIONS_DIR to the migrations-job directory"
        )
    return candidate
