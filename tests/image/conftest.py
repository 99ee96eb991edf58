"""Fixtures of the image tier."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import dockerenv
from tests.image import gocheck as gocheck_bin
from tests.progress import terminal_writer


@pytest.fixture(scope="session")
def gocheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/image/gocheck built once per session."""
    return gocheck_bin.build(tmp_path_factory.mktemp("gocheck") / "gocheck")


@pytest.fixture(scope="session")
def go_template(gocheck: Path) -> gocheck_bin.Expand:
    """Expand a template with Go's text/template over a string map, as skaffold does."""
    return gocheck_bin.template_expander(gocheck)


@pytest.fixture(scope="session")
def image_progress(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Writes one line to the terminal, outside pytest's output capture (image builds are long)."""
    return terminal_writer(pytestconfig, "image")


@pytest.fixture(scope="session")
def docker_engine(image_progress: Callable[[str], None]) -> Iterator[None]:
    """A Docker engine for the session (tests/dockerenv.py); skips, saying what is missing."""
    missing = dockerenv.engine_missing()
    if missing:
        pytest.skip(f"needs Docker: {missing}")
    with dockerenv.engine(image_progress):
        yield
