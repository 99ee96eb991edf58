"""Docker for the image and kind tiers: an engine, and the images those tiers run.

The engine: one that answers is used as it is; otherwise `scripts/docker-engine.sh start` starts
Debian's dockerd and the same session stops it at its end (`engine()`), so a test session stops
only what it started (CI starts one for the whole run in .ci/run).

The images: where a registry answers, the official ones (the Dockerfile's `PYTHON_IMAGE`, the
subcharts' PostgreSQL and Redis); where none does (our machines), `scripts/images/build.sh`
builds stand-ins from Debian packages, cached by content under ~/.cache/heliox/images.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "scripts" / "docker-engine.sh"
BUILD = ROOT / "scripts" / "images" / "build.sh"
SUBCHARTS = ROOT / "charts" / "heliox" / "charts"

Progress = Callable[[str], None]


def answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0


def engine_missing() -> str | None:
    """None when an engine answers or this session can start one, else what is missing."""
    if not shutil.which("docker"):
        return "the docker CLI (not on PATH)"
    if answers():
        return None
    if shutil.which("dockerd") and os.geteuid() == 0:
        return None
    return (
        "a running Docker engine (`docker info` failed; scripts/docker-engine.sh starts "
        "Debian's dockerd as root)"
    )


@contextlib.contextmanager
def engine(progress: Progress) -> Iterator[None]:
    """An engine for the duration of the block; stopped after it only if started here."""
    if answers():
        yield
        return
    progress("no Docker engine answers: starting one (scripts/docker-engine.sh)")
    subprocess.run([str(ENGINE), "start"], check=True, timeout=120)
    try:
        yield
    finally:
        subprocess.run([str(ENGINE), "stop"], check=False, timeout=120)


def run_streamed(argv: list[str], progress: Progress, timeout: float = 7200) -> str:
    """Runs argv, passing its stderr lines to progress as they come; returns its stdout."""
    tail: deque[str] = deque(maxlen=60)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    ) as proc:
        assert proc.stderr is not None
        assert proc.stdout is not None
        for raw in proc.stderr:
            line = raw.rstrip()
            tail.append(line)
            if not line.startswith("go: downloading"):
                progress(line)
        out = proc.stdout.read()
        code = proc.wait(timeout=timeout)
    if code != 0:
        joined = "\n".join(tail)
        raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{joined}")
    return out


def build_images(sets: list[str], progress: Progress) -> dict[str, str]:
    """scripts/images/build.sh SETS... -> {"PYTHON_IMAGE": ref, ...} from its NAME=REF lines."""
    out = run_streamed([str(BUILD), *sets], progress)
    return dict(re.findall(r"^([A-Z_]+)=(\S+)$", out, re.M))


def official_store_images() -> dict[str, str]:
    """The images the subcharts name by default (their values files are the one place)."""
    refs = {}
    for chart, name in (("postgresql", "POSTGRES_IMAGE"), ("redis", "REDIS_IMAGE")):
        image = yaml.safe_load((SUBCHARTS / chart / "values.yaml").read_text())["image"]
        refs[name] = f"{image['repository']}:{image['tag']}"
    return refs


def official_python_image() -> str:
    dockerfile = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M)
    assert match, "the Dockerfile has no default PYTHON_IMAGE"
    return match.group(1)


def pulled(refs: list[str], progress: Progress) -> bool:
    """Whether every image could be pulled (a registry answers); quick where none does."""
    for ref in refs:
        try:
            proc = subprocess.run(
                ["docker", "pull", "-q", ref],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        if proc.returncode != 0:
            progress(f"cannot pull {ref}: building a stand-in ({proc.stderr.strip()[-120:]})")
            return False
    return True


def store_images(progress: Progress) -> dict[str, str]:
    """PostgreSQL and Redis images for the subcharts: the official ones, else stand-ins."""
    official = official_store_images()
    if pulled(list(official.values()), progress):
        return official
    return build_images(["stores"], progress)


def python_image(progress: Progress) -> str:
    """The Dockerfile's PYTHON_IMAGE: the official one, else the Debian-built stand-in."""
    official = official_python_image()
    if pulled([official], progress):
        return official
    return build_images(["python"], progress)["PYTHON_IMAGE"]
