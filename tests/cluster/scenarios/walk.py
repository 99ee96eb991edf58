"""Steps that depend on each other: once one fails, the later ones do not run (they would only
fail for the same reason), and say which step they needed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn


class Walk:
    def __init__(self, name: str) -> None:
        self.name = name
        self.failed: str | None = None
        self.done: list[str] = []

    @contextmanager
    def step(self, name: str, skip: Callable[[str], NoReturn]) -> Iterator[None]:
        """Run one step; `skip(reason)` is called instead when an earlier step failed."""
        if self.failed is not None:
            skip(f"{self.name}: needs step {self.failed!r}, which failed")
        try:
            yield
        except BaseException:
            self.failed = name
            raise
        self.done.append(name)
