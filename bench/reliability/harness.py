"""What the reliability tests share: the load driver process, the server's own record of what it
accepted, and the verdict over every request.

"Accepted" is what the server did, not what the client hoped: a request is accepted when a
worker read it. The service writes an access line with the request's ``X-Request-ID`` for
every request it handles (the tests empty ``ACCESS_LOG_QUIET_PATHS`` so probes are logged
too), and a POST's row carries the ID as its name. A request the server accepted must get its
expected response; one it never read (connection refused, or closed before a byte of response)
is "not accepted": the client learns it at once and may retry it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import AUTH_HEADER, REPO_ROOT, TEST_API_KEY, GunicornServer

ACCESS_LINE = re.compile(r"logger=heliox\.access .*?request_id=(\S+).*? status=(\d+)")
# Lines that mean a worker died or was killed instead of draining.
BAD_SERVER_LINES = re.compile(r"WORKER TIMEOUT|SIGKILL|Traceback|level=(ERROR|CRITICAL)")


def service_env(database_url: str, redis_url: str | None, **extra: str) -> dict[str, str]:
    """The image's production settings, with every request access-logged (our accept record)."""
    env = {
        "ENV": "production",
        "DATABASE_URL": database_url,
        "ACCESS_LOG_QUIET_PATHS": "",
        # One client address: keep the limiter in the path, with room for the test's load.
        "RATE_LIMIT_REQUESTS": "1000000",
        **extra,
    }
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return env


class LoadDriver:
    """``bench.reliability.loaddriver`` in its own process; records come back as dicts."""

    def __init__(
        self,
        port: int,
        lanes: list[dict[str, Any]],
        *,
        ids: list[int],
        hot_ids: list[int] | None = None,
        run_id: str = "rel",
    ) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="heliox-driver-"))
        self.out = self.base / "records.jsonl"
        self.config = {
            "port": port,
            "run_id": run_id,
            "out": str(self.out),
            "lanes": lanes,
            "ids": ids,
            "hot_ids": hot_ids or ids,
            "timeout": 30,
            "api_key": TEST_API_KEY,  # the admin key GunicornServer bootstraps
        }
        self.process: subprocess.Popen[str] | None = None
        self.summary = ""

    def __enter__(self) -> LoadDriver:
        config = self.base / "config.json"
        config.write_text(json.dumps(self.config))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.reliability.loaddriver", str(config)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "READY":
            self.stop()
            raise RuntimeError(f"load driver did not get going: {line!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        self.summary = out.strip()

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]


def accepted_by_server(log: str) -> dict[str, int]:
    """Request ID -> status, from the service's access lines."""
    return {m.group(1): int(m.group(2)) for m in ACCESS_LINE.finditer(log)}


def bad_server_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if BAD_SERVER_LINES.search(line)]


@dataclass
class Verdict:
    """Every request classified. ``failed`` must be empty for a scenario to pass."""

    name: str
    records: list[dict[str, Any]]
    ok: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    not_accepted: list[dict[str, Any]] = field(default_factory=list)
    retried_ok: int = 0
    retried_unanswered: int = 0

    @property
    def sent(self) -> int:
        return sum(1 for r in self.records if r["retry_of"] is None)

    @property
    def max_latency(self) -> float:
        return max((r["latency"] for r in self.records if r["outcome"] == "response"), default=0)

    def line(self, extra: str = "") -> str:
        kinds: dict[str, int] = {}
        for r in self.not_accepted:
            key = f"{r['outcome']} {r['method']}"
            kinds[key] = kinds.get(key, 0) + 1
        detail = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        if self.retried_ok or self.retried_unanswered:
            detail += (
                f"; GET retries answered {self.retried_ok}, unanswered {self.retried_unanswered}"
            )
        tail = f"; {extra}" if extra else ""
        return (
            f"{self.name}: sent {self.sent}, ok {len(self.ok)}, failed {len(self.failed)}, "
            f"not accepted {len(self.not_accepted)}{f' ({detail})' if detail else ''}, "
            f"max latency {self.max_latency:.2f}s{tail}"
        )

    def describe_failures(self, limit: int = 8) -> str:
        return "\n".join(json.dumps(r, sort_keys=True) for r in self.failed[:limit])


def judge(
    name: str,
    records: list[dict[str, Any]],
    accepted: dict[str, int],
    expected: Callable[[dict[str, Any]], bool],
    *,
    rows_written: Iterable[str] = (),
) -> Verdict:
    """Classify every first attempt (a GET's retry counts toward its original).

    ``expected(record)`` says whether a record with a response is what the scenario allows
    (statuses, error bodies). A transport failure is "not accepted" when the server has no
    access line for it (and, for a POST, wrote no row), otherwise a failure: the server read
    the request and the client never got the answer.
    """
    written = set(rows_written)
    retries = {r["retry_of"]: r for r in records if r["retry_of"] is not None}
    verdict = Verdict(name, records)
    for record in records:
        if record["retry_of"] is not None:
            continue
        if record["outcome"] == "response":
            (verdict.ok if expected(record) else verdict.failed).append(record)
            continue
        seen = record["rid"] in accepted or record["rid"] in written
        if seen or record["outcome"] in ("reset", "timeout", "error"):
            verdict.failed.append(record)
            continue
        verdict.not_accepted.append(record)
        retry = retries.get(record["rid"])
        if retry is None:
            continue
        if retry["outcome"] != "response":
            verdict.retried_unanswered += 1
        elif expected(retry):
            verdict.retried_ok += 1
        else:
            verdict.failed.append(retry)
    return verdict


def wait_until(
    what: str, predicate: Callable[[], bool], timeout: float, step: float = 0.05
) -> float:
    """Poll ``predicate`` until true; return the seconds it took, or raise."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not within {timeout}s")
        time.sleep(step)
    return time.monotonic() - started


def wait_for_new_workers(
    server: GunicornServer, old: set[int], count: int, timeout: float
) -> set[int]:
    def replaced() -> bool:
        current = set(server.worker_pids())
        return len(current - old) >= count and not (current & old)

    wait_until("workers replaced", replaced, timeout)
    return set(server.worker_pids())


def unreadable_items(url: str, ids: Iterable[int]) -> list[int]:
    """Ids the API does not return with 200: items lost or unreadable (should be none)."""
    missing = []
    for item_id in ids:
        try:
            request = urllib.request.Request(f"{url}/api/v1/items/{item_id}", headers=AUTH_HEADER)
            with urllib.request.urlopen(request, timeout=10) as r:
                if r.status != 200:
                    missing.append(item_id)
        except OSError:
            missing.append(item_id)
    return missing


@contextlib.contextmanager
def contract_service(
    postgres_server: Any,
    migrated_template: str,
    redis_url: str,
    name: str,
    max_body: int,
    **extra: str,
) -> Iterator[GunicornServer]:
    """The production app under gunicorn (2 workers) on a fresh copy of the migrated database,
    serving its OpenAPI document (DOCS_ENABLED, so that a test can compare the served document
    with the one it uses, whatever the default), with ``extra`` settings; the server's log must
    hold no bad line."""
    postgres_server.drop_database(name)
    url = postgres_server.create_database(name, template=migrated_template)
    env = service_env(url, redis_url, MAX_BODY_SIZE=str(max_body), DOCS_ENABLED="true", **extra)
    with GunicornServer(env, workers=2) as server:
        yield server
        log = server.log()
    postgres_server.drop_database(name)
    assert not bad_server_lines(log), bad_server_lines(log)
