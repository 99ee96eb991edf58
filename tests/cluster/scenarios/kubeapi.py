"""A small direct client of the Kubernetes API, for what kubectl does too slowly or not at all.

Two scenario needs: evictions fired back to back on one connection (so the disruption budget is
judged before any replacement pod could become Ready), and watch streams that record the exact
order of events while Helm runs (was the hook's Secret there when its pod started?). Standard
library only; the connection comes from `kubectl config view --raw --minify --flatten`, so it
works with any kubeconfig kubectl understands that uses client certificates or a bearer token
(the cluster tier's and kind's both do).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        self.status, self.body = status, body
        super().__init__(f"HTTP {status}: {body[:500]}")


def rv(obj: dict[str, Any]) -> int:
    """An object's resourceVersion as a number. With one etcd (the cluster tier, kind) it is the
    etcd revision of the object's last write, a counter shared by every kind, so comparing two of
    them orders writes across kinds; the API promises nothing more than opaque strings, so only
    the scenarios use this, and say so."""
    return int(obj["metadata"]["resourceVersion"])


class KubeApi:
    def __init__(self, kubeconfig: Path, kubectl: str = "kubectl") -> None:
        view = ["config", "view", "--raw", "--minify", "--flatten", "-o", "json"]
        out = subprocess.run(
            [kubectl, "--kubeconfig", str(kubeconfig), *view],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        cfg = json.loads(out)
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        url = urllib.parse.urlsplit(cluster["server"])
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"unsupported API server URL {cluster['server']!r}")
        self.host, self.port = url.hostname, url.port or 443
        self.ssl = ssl.create_default_context()
        if "certificate-authority-data" in cluster:
            ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
            self.ssl.load_verify_locations(cadata=ca)
        if cluster.get("insecure-skip-tls-verify"):
            self.ssl.check_hostname = False
            self.ssl.verify_mode = ssl.CERT_NONE
        self.token = user.get("token")
        if "client-certificate-data" in user:
            # ssl wants files: a private directory, removed as soon as the chain is loaded.
            with tempfile.TemporaryDirectory(prefix="heliox-kubeapi-") as d:
                cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
                for path, data in ((cert, "client-certificate-data"), (key, "client-key-data")):
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(base64.b64decode(user[data]))
                self.ssl.load_cert_chain(cert, key)

    def connect(self, timeout: float | None = 30) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=timeout)

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        conn: http.client.HTTPSConnection | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request; returns (status, decoded body) whatever the status."""
        own = conn is None
        c = conn or self.connect()
        try:
            c.request(method, path, json.dumps(body) if body else None, self._headers())
            resp = c.getresponse()
            raw = resp.read().decode()
            return resp.status, (json.loads(raw) if raw else {})
        finally:
            if own:
                c.close()

    def get(self, path: str) -> dict[str, Any]:
        status, body = self.request("GET", path)
        if status != 200:
            raise ApiError(status, json.dumps(body))
        return body

    def evict(
        self, namespace: str, pod: str, conn: http.client.HTTPSConnection | None = None
    ) -> tuple[int, dict[str, Any]]:
        """POST an Eviction (policy/v1): 201 when allowed, 429 when a disruption budget forbids
        it."""
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace},
        }
        return self.request(
            "POST", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", body, conn
        )


@dataclass
class Event:
    kind: str  # the watched resource, e.g. "pods"
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    received: float  # time.monotonic() on arrival

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def rv(self) -> int:
        return rv(self.obj)


PATHS = {
    "pods": "/api/v1/namespaces/{ns}/pods",
    "secrets": "/api/v1/namespaces/{ns}/secrets",
    "configmaps": "/api/v1/namespaces/{ns}/configmaps",
    "jobs": "/apis/batch/v1/namespaces/{ns}/jobs",
    "replicasets": "/apis/apps/v1/namespaces/{ns}/replicasets",
    "deployments": "/apis/apps/v1/namespaces/{ns}/deployments",
    "serviceaccounts": "/api/v1/namespaces/{ns}/serviceaccounts",
    "networkpolicies": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
}


@dataclass
class Recorder:
    """Watches some kinds in one namespace from "now" and keeps every event, in order per kind.

    with Recorder(api, ns, ["pods", "secrets"]) as rec:
        run helm ...
    rec.events("secrets", name="x")

    Streams are opened (and their starting resourceVersion taken) before the block runs, so
    nothing the block causes is missed.
    """

    api: KubeApi
    namespace: str
    kinds: list[str]
    _events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _conns: list[http.client.HTTPSConnection] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _errors: list[str] = field(default_factory=list)

    def __enter__(self) -> Recorder:
        ready = threading.Barrier(len(self.kinds) + 1)
        for kind in self.kinds:
            t = threading.Thread(target=self._watch, args=(kind, ready), daemon=True)
            t.start()
            self._threads.append(t)
        ready.wait(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # let events caused by the block's last writes arrive
        for c in self._conns:
            try:
                if c.sock is not None:
                    c.sock.shutdown(2)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(timeout=5)

    def _watch(self, kind: str, ready: threading.Barrier) -> None:
        path = PATHS[kind].format(ns=self.namespace)
        try:
            start = self.api.get(f"{path}?limit=1")["metadata"]["resourceVersion"]
            conn = self.api.connect(timeout=None)
            self._conns.append(conn)
            conn.request(
                "GET",
                f"{path}?watch=1&resourceVersion={start}&allowWatchBookmarks=false",
                headers=self.api._headers(),
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise ApiError(resp.status, resp.read().decode())
        except Exception as e:
            self._errors.append(f"{kind}: {e}")
            ready.wait(timeout=30)
            return
        ready.wait(timeout=30)
        for line in _lines(resp):
            ev = json.loads(line)
            if ev.get("type") == "ERROR":
                self._errors.append(f"{kind}: {ev.get('object')}")
                return
            with self._lock:
                self._events.append(Event(kind, ev["type"], ev["object"], time.monotonic()))

    def events(
        self, kind: str | None = None, name: str | None = None, type: str | None = None
    ) -> list[Event]:
        if self._errors:
            raise RuntimeError(f"watch failed: {'; '.join(self._errors)}")
        with self._lock:
            return [
                e
                for e in self._events
                if (kind is None or e.kind == kind)
                and (name is None or e.name == name)
                and (type is None or e.type == type)
            ]


def _lines(resp: http.client.HTTPResponse) -> Iterator[bytes]:
    while True:
        try:
            line = resp.readline()
        except Exception:  # the stream was shut down from another thread (Recorder.__exit__)
            return
        if not line:
            return
        if line.strip():
            yield line
