"""The OpenAPI document is the contract: schemathesis as an API consumer runs it (``st run``),
against the service under gunicorn on PostgreSQL and Redis, with every check (``--checks all``,
plus ``st_checks.py``), every phase (examples, coverage, fuzzing, and stateful, which follows
the document's links), a fixed seed and a time budget. Any failure fails the test, not only a
5xx: an undocumented status, a body or header off its schema, a valid request refused, an
invalid one accepted, a 405 without ``Allow``, a deleted item still readable. It runs with an
admin API key made for it; a second, unauthenticated pass must get 401 on every call of an
/api/v1 operation, never a 5xx."""

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
from tests.servers import AUTH_HEADER, GunicornServer

SEED = 20261126
MAX_EXAMPLES = 50  # per operation and phase, within the time budget
BUDGET_SECONDS = 60  # fuzzing and stateful repeat until it is spent
PHASES = "examples,coverage,fuzzing,stateful"
MAX_BODY = 4096  # small, so that generated bodies reach the 413 too
ST = Path(sys.executable).with_name("st")
CHECKS = Path(__file__).with_name("st_checks.py")
# schemathesis' default statuses for a refused invalid request, plus 413.
REJECTIONS = [
    "400",
    "401",
    "403",
    "404",
    "405",
    "406",
    "409",
    "413",
    "415",
    "422",
    "428",
    "429",
    "5xx",
]
PHASE_LINE = re.compile(r"^\s*(\S+)\s+(Examples|Coverage|Fuzzing|Stateful)\b", re.MULTILINE)


@pytest.fixture(scope="module")
def service(
    postgres_server: Any, migrated_template: str, redis_server: Any
) -> Iterator[GunicornServer]:
    # Failed credentials are the unauthenticated pass's every request: no lock-out here.
    with contract_service(
        postgres_server, migrated_template, redis_server.url, "contract_items", MAX_BODY,
        RATE_LIMIT_AUTH_FAILURES="1000000",
    ) as server:  # fmt: skip
        yield server


def document() -> dict[str, Any]:
    """The production app's document, from the app object (no server, no DOCS_ENABLED)."""
    settings = Settings(env="production", database_url="postgresql://st@127.0.0.1:1/st")
    return create_app(settings).openapi()


@pytest.fixture(scope="module")
def api_key(service: GunicornServer) -> str:
    """An admin key made for schemathesis through the API (admin: /api/v1/keys is tested too)."""
    request = urllib.request.Request(
        f"{service.url}/api/v1/keys",
        data=json.dumps({"name": "schemathesis", "role": "admin"}).encode(),
        headers={**AUTH_HEADER, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        key: str = json.load(response)["key"]
    return key


def _st(
    service: GunicornServer, tmp_path: Path, *args: str, budget: int = BUDGET_SECONDS
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(document()))
    har = tmp_path / "run.har"
    command = [
        str(ST), "run", str(schema), "--url", service.url, "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES), "--max-time", str(budget),
        "--request-timeout", "15", "--report", "har", "--report-har-path", str(har), *args,
    ]  # fmt: skip
    # schemathesis reads schemathesis.toml from its working directory. 413 is a rejection too:
    # HelioxMiddleware refuses a body above MAX_BODY_SIZE before anything parses it.
    (tmp_path / "schemathesis.toml").write_text(
        f"[checks.negative_data_rejection]\nexpected-statuses = {json.dumps(REJECTIONS)}\n"
    )
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(CHECKS), "NO_COLOR": "1"}
    result = subprocess.run(  # noqa: PLW1510 - the exit code is judged by the callers
        command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=budget + 120
    )
    entries = json.loads(har.read_text())["log"]["entries"] if har.exists() else []
    return result, entries


def test_the_served_document_is_the_one_tested(service: GunicornServer) -> None:
    with urllib.request.urlopen(f"{service.url}/openapi.json", timeout=10) as response:
        assert json.load(response) == document()


def test_schemathesis_all_checks_all_phases(
    service: GunicornServer, api_key: str, tmp_path: Path, summary: Callable[[str], None]
) -> None:
    result, entries = _st(
        service,
        tmp_path,
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--header",
        f"X-API-Key: {api_key}",
    )
    output = result.stdout + result.stderr
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


def test_without_a_credential_every_api_call_is_401(
    service: GunicornServer, tmp_path: Path, summary: Callable[[str], None]
) -> None:
    """Valid requests (positive mode) for every operation, no key: 401 with the challenge on
    each /api/v1 operation, whatever its method, parameters or body; never a 5xx."""
    result, entries = _st(
        service, tmp_path, "--checks", "not_a_server_error", "--mode", "positive",
        "--phases", "examples,fuzzing", budget=20,
    )  # fmt: skip
    api = [e for e in entries if "/api/v1/" in e["request"]["url"]]
    statuses = Counter(e["response"]["status"] for e in api)
    summary(f"unauthenticated schemathesis: {len(api)} /api/v1 requests, statuses {dict(statuses)}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert len(api) >= 50, "the unauthenticated pass barely ran"
    assert set(statuses) == {401}, statuses
    methods = {e["request"]["method"] for e in api}
    assert {"GET", "POST", "PATCH", "DELETE"} <= methods, methods
    for entry in api:  # the HAR report filters the challenge's value; the unit tier checks it
        headers = {h["name"].lower() for h in entry["response"]["headers"]}
        assert "www-authenticate" in headers, headers
