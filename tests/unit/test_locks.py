"""The lock files hold for every Python they claim (`requires-python >=3.11`), not only for the
interpreter that compiled them: a requirement that a locked package declares for some 3.11 patch
release must be locked too, with a marker that holds there. Debian bookworm's python3 (the base
of the offline image build, scripts/images/) is 3.11.2, where redis-py still imports
`async_timeout`; a lock resolved on 3.11.7 alone dropped it and the image's workers died."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker, default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ["service/requirements.lock", "requirements-dev.lock", "service/build-requirements.lock"]
PATCH_RELEASES = [f"3.11.{n}" for n in range(15)]  # 3.11.0 .. 3.11.14, the newest today
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==\S+(?:\s*;\s*([^\\\n]+?))?\s*\\?$", re.M)


def pins(lock: str) -> dict[str, Marker | None]:
    """Name -> the marker it is locked under (None: always)."""
    out: dict[str, Marker | None] = {}
    for m in PIN.finditer((ROOT / lock).read_text()):
        out[canonicalize_name(m.group(1))] = Marker(m.group(2)) if m.group(2) else None
    return out


def linux_env(python: str) -> dict[str, str]:
    env = dict(default_environment())
    env.update(
        python_full_version=python,
        python_version="3.11",
        sys_platform="linux",
        platform_system="Linux",
        implementation_name="cpython",
        platform_python_implementation="CPython",
        extra="",
    )
    return env


def unlocked_requirements(lock: str, python: str) -> list[str]:
    locked = pins(lock)
    env = linux_env(python)
    problems = []
    for name, marker in locked.items():
        if marker is not None and not marker.evaluate(env):
            continue  # not installed on this Python: its own requirements do not apply
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue  # locked for another Python than this venv's; checked where installed
        for line in requires:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = canonicalize_name(req.name)
            if dep not in locked:
                problems.append(f"{name} requires {line!r}: not in {lock}")
            elif (dep_marker := locked[dep]) is not None and not dep_marker.evaluate(env):
                problems.append(f"{name} requires {line!r}: {lock} locks it only if {dep_marker}")
    return problems


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_holds_for_every_python_3_11_patch_release(lock: str) -> None:
    problems = sorted({p for py in PATCH_RELEASES for p in unlocked_requirements(lock, py)})
    assert not problems, "\n".join(problems)


def test_redis_async_timeout_is_locked_for_bookworm_python() -> None:
    """The case that broke the image: Python 3.11.2 needs async-timeout for redis-py."""
    marker = pins("service/requirements.lock").get("async-timeout", Marker("python_version < '0'"))
    assert marker is None or marker.evaluate(linux_env("3.11.2"))
