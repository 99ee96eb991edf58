"""The reliability tier's load driver: a second process that sends steady traffic and records
every request it makes.

    python -m bench.reliability.loaddriver CONFIG.json

The config names the port, an output file and *lanes*: groups of threads, each thread with its
own keep-alive connection (``http.client``), sending the lane's requests in turn with a short
pause. Every request carries a unique ``X-Request-ID`` (``<run>-<lane>-<thread>-<n>``); a POST
body's ``name`` is that ID too, so the test can find the row. One JSON line per request goes to
the output file as soon as it completes (nothing is lost if the driver is killed):

    {"rid", "lane", "method", "path", "t_send", "t_end", "latency", "status", "outcome",
     "error", "reused", "retry_of", "body_error", "shape_ok", "rid_echoed", "item_id"}

``t_send``/``t_end`` are ``time.monotonic()`` values: CLOCK_MONOTONIC is system-wide on Linux,
so the test compares them with its own signal and fault times. ``outcome`` is ``response``
(any status) or the transport failure: ``closed`` (the connection ended before any byte of a
response: the server never answered, e.g. an idle keep-alive connection it closed as the
request went out), ``refused`` (no listener), ``timeout``, ``reset`` (broken after the status
line) or ``error``. A GET that ends ``closed`` is sent once more on a new connection, as HTTP
clients do for idempotent requests (RFC 9110, 9.2.2); the retry is its own record with
``retry_of``. Nothing else is retried: the test decides what each record means.

SIGTERM or SIGINT stops the driver: each thread finishes its request in flight, then exits.
The driver prints ``READY`` once every lane has had a response, and a summary line at the end.
"""

from __future__ import annotations

import http.client
import json
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

ERROR_KEYS = {"error", "message", "request_id"}


def error_shape_ok(body: bytes) -> tuple[bool, str | None]:
    """Does an error response carry DESIGN.md's body? Returns (ok, the ``error`` value)."""
    try:
        data = json.loads(body)
    except ValueError:
        return False, None
    if not isinstance(data, dict):
        return False, None
    kind = data.get("error")
    ok = (
        ERROR_KEYS <= data.keys() <= ERROR_KEYS | {"details"}
        and all(isinstance(data[k], str) and data[k] for k in ERROR_KEYS)
        and isinstance(data.get("details", {}), dict)
    )
    return ok, kind if isinstance(kind, str) else None


class Lane:
    def __init__(self, spec: dict[str, Any], driver: Driver) -> None:
        self.name: str = spec["name"]
        self.threads: int = spec.get("threads", 1)
        self.requests: list[dict[str, Any]] = spec["requests"]
        self.pause: float = spec.get("pause", 0.01)
        self.driver = driver
        self.answered = threading.Event()


class Driver:
    def __init__(self, config: dict[str, Any]) -> None:
        self.port: int = config["port"]
        self.run_id: str = config.get("run_id", "rel")
        self.timeout: float = config.get("timeout", 30.0)
        self.ids: list[int] = config.get("ids", [1])
        self.hot_ids: list[int] = config.get("hot_ids", self.ids)
        self.api_key: str = config["api_key"]  # every /api/v1 route needs one
        self.out = Path(config["out"]).open("a", buffering=1)  # noqa: SIM115 - closed in run()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.lanes = [Lane(spec, self) for spec in config["lanes"]]
        self.counts: dict[str, int] = {}
        self.max_latency = 0.0

    # -- one request -----------------------------------------------------------------------

    def _path(self, template: str, rng: random.Random) -> str:
        return template.replace("{id}", str(rng.choice(self.ids))).replace(
            "{hot}", str(rng.choice(self.hot_ids))
        )

    def _send(
        self,
        conn: http.client.HTTPConnection | None,
        method: str,
        path: str,
        rid: str,
        body: bytes | None,
    ) -> tuple[http.client.HTTPConnection | None, dict[str, Any]]:
        reused = conn is not None
        headers = {"X-Request-ID": rid, "Host": "reliability", "X-API-Key": self.api_key}
        if body is not None:
            headers["Content-Type"] = "application/json"
        record: dict[str, Any] = {"reused": reused, "status": None, "error": None}
        started = time.monotonic()
        record["t_send"] = started
        phase = "connect"
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                conn.connect()
            phase = "send"
            conn.request(method, path, body=body, headers=headers)
            phase = "status"
            response = conn.getresponse()
            phase = "body"
            payload = response.read()
            record["status"] = response.status
            record["outcome"] = "response"
            if response.status >= 400:
                record["shape_ok"], record["body_error"] = error_shape_ok(payload)
            record["rid_echoed"] = response.getheader("x-request-id") == rid
            if response.status == 201:
                record["item_id"] = json.loads(payload).get("id")
            if response.will_close:
                conn.close()
                conn = None
        except ConnectionRefusedError as exc:
            record.update(outcome="refused", error=repr(exc))
            conn = None
        except TimeoutError as exc:
            record.update(outcome="timeout", error=f"{phase}: {exc!r}")
            conn = _close(conn)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            # Before the status line: no byte of a response arrived.
            outcome = "reset" if phase == "body" else "closed"
            record.update(outcome=outcome, error=f"{phase}: {exc!r}")
            conn = _close(conn)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            record.update(outcome="error", error=f"{phase}: {exc!r}")
            conn = _close(conn)
        record["t_end"] = time.monotonic()
        record["latency"] = record["t_end"] - started
        return conn, record

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record)
        with self.lock:
            self.out.write(line + "\n")
            key = str(record["status"] or record["outcome"])
            self.counts[key] = self.counts.get(key, 0) + 1
            self.max_latency = max(self.max_latency, record["latency"])

    def _thread(self, lane: Lane, index: int) -> None:
        rng = random.Random(f"{self.run_id}-{lane.name}-{index}")
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self.stop.is_set():
            spec = lane.requests[n % len(lane.requests)]
            n += 1
            rid = f"{self.run_id}-{lane.name}-{index}-{n}"
            method = spec.get("method", "GET")
            path = self._path(spec["path"], rng)
            body = None
            if method in ("POST", "PATCH"):
                body = json.dumps({"name": rid, "description": spec.get("description", "")})
            conn, record = self._send(conn, method, path, rid, body.encode() if body else None)
            record.update(rid=rid, lane=lane.name, method=method, path=path, retry_of=None)
            self._write(record)
            if record["outcome"] == "response":
                lane.answered.set()
            elif record["outcome"] == "closed" and method == "GET":
                retry_rid = f"{rid}-retry"
                conn, retry = self._send(None, method, path, retry_rid, None)
                retry.update(rid=retry_rid, lane=lane.name, method=method, path=path, retry_of=rid)
                self._write(retry)
            if record["outcome"] in ("refused", "closed"):
                self.stop.wait(0.05)  # no listener (or a closing one): do not spin
            elif lane.pause:
                self.stop.wait(lane.pause)
        _close(conn)

    def run(self) -> int:
        threads = [
            threading.Thread(target=self._thread, args=(lane, i), name=f"{lane.name}-{i}")
            for lane in self.lanes
            for i in range(lane.threads)
        ]
        for thread in threads:
            thread.start()
        ready_deadline = time.monotonic() + 60
        while not all(lane.answered.is_set() for lane in self.lanes):
            if self.stop.wait(0.02) or time.monotonic() > ready_deadline:
                break
        else:
            print("READY", flush=True)
        self.stop.wait()
        for thread in threads:
            thread.join(self.timeout + 5)
        self.out.close()
        total = sum(self.counts.values())
        print(
            f"driver: sent {total}, outcomes {dict(sorted(self.counts.items()))}, "
            f"max latency {self.max_latency:.2f}s",
            flush=True,
        )
        return 0


def _close(conn: http.client.HTTPConnection | None) -> None:
    if conn is not None:
        conn.close()


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    driver = Driver(config)

    def stop(_signum: int, _frame: object) -> None:
        driver.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return driver.run()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
