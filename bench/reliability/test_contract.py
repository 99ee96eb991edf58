"""The OpenAPI document is the contract: schemathesis as an API consumer runs it (``st run``),
against the service under gunicorn on PostgreSQL and Redis, with every check (``--checks all``,
plus ``st_checks.py``), every phase (examples, coverage, fuzzing, and stateful, which follows
the document's links), a fixed seed and a time budget. Any failure fails the test, not only a
5xx: an undocumented status, a body or header off its schema, a valid request refused, an
invalid one accepted, a 405 without ``Allow``, a deleted item still readable."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.reliability.harness import contract_service
from heliox.app import create_app
from heliox.core.config import Settings
from tests.servers import GunicornServer

SEED = 20261126
MAX_EXAMPLES = 50  # per operation and phase, within the time budget
BUDGET_SECONDS = 60  # fuzzing and stateful repeat until it is spent
PHASES = "examples,coverage,fuzzing,stateful"
MAX_BODY = 4096  # small, so that generated bodies reach the 413 too
ST = Path(sys.executable).with_name("st")
CHECKS = Path(__file__).with_name("st_checks.py")
PHASE_LINE = re.compile(r"^\s*(\S+)\s+(Examples|Coverage|Fuzzing|Stateful)\b", re.MULTILINE)


@pytest.fixture(scope="module")
def service(
    postgres_server: Any, migrated_template: str, redis_server: Any
) -> Iterator[GunicornServer]:
    with contract_service(
        postgres_server, migrated_template, redis_server.url, "contract_items", MAX_BODY
    ) as server:
        yield server


def document() -> dict[str, Any]:
    """The production app's document, from the app object (no server, no DOCS_ENABLED)."""
    settings = Settings(env="production", database_url="postgresql://st@127.0.0.1:1/st")
    return create_app(settings).openapi()


def test_the_served_document_is_the_one_tested(service: GunicornServer) -> None:
    with urllib.request.urlopen(f"{service.url}/openapi.json", timeout=10) as response:
        assert json.load(response) == document()


def test_schemathesis_all_checks_all_phases(
    service: GunicornServer, tmp_path: Path, summary: Callable[[str], None]
) -> None:
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(document()))
    har = tmp_path / "run.har"
    command = [
        str(ST), "run", str(schema), "--url", service.url,
        "--checks", "all", "--phases", PHASES, "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES), "--max-time", str(BUDGET_SECONDS),
        "--request-timeout", "15", "--report", "har", "--report-har-path", str(har),
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(CHECKS), "NO_COLOR": "1"}
    result = subprocess.run(  # noqa: PLW1510 - the exit code is judged below, with the output
        command, capture_output=True, text=True, env=env, cwd=tmp_path,
        timeout=BUDGET_SECONDS + 120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    statuses = Counter(entry["response"]["status"] for entry in entries)
    phases = {phase: mark for mark, phase in PHASE_LINE.findall(output)}
    counts = ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
    cases = re.search(r"(\d+) generated", output)
    summary(
        f"schemathesis (st run --checks all, phases {PHASES}, seed {SEED}, up to "
        f"{MAX_EXAMPLES} examples, {BUDGET_SECONDS}s budget): "
        f"{cases.group(1) if cases else '?'} test cases, {len(entries)} requests, "
        f"statuses {{{counts}}}, exit {result.returncode}"
    )
    assert result.returncode == 0, f"schemathesis found failures:\n{output[-20000:]}"
    assert "No issues found" in output, output[-5000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert phases.get(phase) == "✅", f"{phase} did not run and pass:\n{output[-5000:]}"
    assert len(entries) >= 500, "schemathesis barely ran"
    assert not [s for s in statuses if s >= 500]
    # It reached the answers the document promises besides success.
    assert {200, 201, 204, 404, 422} <= statuses.keys(), statuses
