"""bench/ follows the repository's pytest policy: the CI hook of tests/conftest.py (a skip is a
failure when CI=true) applies here too. One implementation, imported."""

from tests.conftest import pytest_runtest_makereport  # noqa: F401  (pytest finds hooks by name)
