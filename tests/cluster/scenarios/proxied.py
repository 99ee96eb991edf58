"""The per-address limit behind a proxy (kind only): traffic that reaches the API through a
reverse proxy, as it does behind an Ingress controller or a Gateway, from two client pods.

Authenticated requests are limited per key; what is limited per client address is failed
credentials (so guessing keys is slow). The clients here send none: each request is a 401 and
counts against its address's failure budget (`config.rateLimit.authFailures`), then 429.

The proxy is a pod of the API image running a small standard-library reverse proxy that does
what an ingress controller does: forwards to the API Service and appends the peer's address to
`X-Forwarded-For`. With `config.forwardedAllowIps` naming the proxy, the API counts each client
pod on its own; without it, every client behind the proxy shares the proxy's one budget (why
the chart refuses an Ingress or HTTPRoute with the limit on and no trusted proxies).
"""

from __future__ import annotations

import uuid
from typing import Any

from . import helm
from .context import Context
from .isolation import restricted_pod
from .objects import wait_old_pods_gone, wait_rolled_out

PROXY_PORT = 8080
PROXY = """
import http.client, http.server, os, sys
UPSTREAM = os.environ["UPSTREAM"]
class Proxy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        seen = self.headers.get("X-Forwarded-For")
        forwarded = f"{seen}, {self.client_address[0]}" if seen else self.client_address[0]
        conn = http.client.HTTPConnection(UPSTREAM, timeout=10)
        conn.request("GET", self.path, headers={"X-Forwarded-For": forwarded})
        r = conn.getresponse()
        body = r.read()
        self.send_response(r.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(sys.argv[1])), Proxy).serve_forever()
"""
STATUS = (
    "import sys, urllib.request, urllib.error\n"
    "for _ in range(int(sys.argv[2])):\n"
    "    try:\n"
    "        print(urllib.request.urlopen(sys.argv[1], timeout=10).status)\n"
    "    except urllib.error.HTTPError as e:\n"
    "        print(e.code)\n"
)


def start_proxy(ctx: Context) -> str:
    """The proxy pod, listening on PROXY_PORT; returns its pod IP."""
    name = "proxy"
    env = [{"name": "UPSTREAM", "value": f"{ctx.fullname}:80"}]
    restricted_pod(ctx, name, ["python", "-c", PROXY, str(PROXY_PORT)], env=env)
    ip: str = ctx.cluster.get("pod", name, ctx.namespace)["status"]["podIP"]
    return ip


def statuses(ctx: Context, client: str, proxy_ip: str, n: int) -> list[int]:
    """n GETs of /api/v1/items from a client pod through the proxy; their statuses."""
    url = f"http://{proxy_ip}:{PROXY_PORT}/api/v1/items?limit=1"
    out = ctx.cluster.kubectl(
        "exec", client, "-n", ctx.namespace, "--", "python", "-c", STATUS, url, str(n),
        timeout=120,
    ).stdout  # fmt: skip
    return [int(line) for line in out.split()]


def rate_limit_counts_each_client_behind_the_proxy(ctx: Context, limit: int = 5) -> None:
    """Installed with a small failure budget and the proxy trusted: client A (no key: 401s) uses
    up its budget and gets 429, client B behind the same proxy still gets 401. Then upgraded
    without the trusted proxy: A's and B's failures land in one budget, B is refused after A's."""
    clients = [f"client-{c}-{uuid.uuid4().hex[:4]}" for c in ("a", "b")]
    # An hour's window: no window ends during the step (the limit uses fixed windows).
    base: dict[str, Any] = {"config": {"rateLimit": {"authFailures": limit, "windowSeconds": 3600}}}

    def install(trusted: str) -> None:
        values = ctx.values_for(None, base, {"config": {"forwardedAllowIps": trusted}})
        if ctx.state.get("installed"):
            helm.upgrade(ctx, values)
        else:
            helm.install(ctx, values)
            ctx.state["installed"] = True
        wait_rolled_out(ctx)
        # Old pods keep the old trust setting and still answer while they drain (one did, and
        # counted a request of A's on A's own used-up budget).
        wait_old_pods_gone(ctx)

    # The proxy must exist before the release names its address: first install with a
    # placeholder (nothing trusted), then start the proxy, then trust it.
    install("192.0.2.1")
    proxy_ip = start_proxy(ctx)
    for c in clients:
        restricted_pod(ctx, c, ["sleep", "900"])
    install(proxy_ip)
    a = statuses(ctx, clients[0], proxy_ip, limit + 1)
    b = statuses(ctx, clients[1], proxy_ip, 1)
    assert a == [401] * limit + [429], f"client A through the trusted proxy: {a}"
    assert b == [401], f"client B behind the same proxy was limited with A: {b}"
    ctx.progress(f"proxy {proxy_ip} trusted: A {a}, B {b} (a failure budget per client)")

    install("")  # the service's default: only 127.0.0.1 is trusted
    a = statuses(ctx, clients[0], proxy_ip, limit)
    b = statuses(ctx, clients[1], proxy_ip, 1)
    assert a == [401] * limit, f"client A, first in the proxy's budget: {a}"
    assert b == [429], f"without a trusted proxy, B should share A's used-up budget: {b}"
    ctx.progress(f"proxy not trusted: A {a}, B {b} (one budget for everyone behind the proxy)")
