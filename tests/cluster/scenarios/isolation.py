"""Isolation the chart promises, checked on a live release: Pod Security `restricted` admitted
every pod (both tiers), and (kind only: kwok enforces no policy) the NetworkPolicies keep a pod
without the release's labels away from PostgreSQL and Redis."""

from __future__ import annotations

import uuid
from typing import Any

from .context import Context
from .objects import api_pods, pod_ready

Obj = dict[str, Any]


# --- Pod Security ---------------------------------------------------------------------------


def pod_security_admitted_every_pod(ctx: Context) -> None:
    """The namespace enforces Pod Security `restricted`, and no controller of the release was
    refused a pod: every Deployment and StatefulSet has all its replicas, and no event says
    FailedCreate (what a controller records when admission refuses its pod)."""
    ns = ctx.cluster.get("namespace", ctx.namespace)
    assert ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "restricted"
    for kind in ("deployments", "statefulsets"):
        for obj in ctx.cluster.items(kind, ctx.namespace, ctx.selector):
            want = obj["spec"].get("replicas", 1)
            have = (obj.get("status") or {}).get("readyReplicas", 0)
            assert have == want, f"{kind}/{obj['metadata']['name']}: {have}/{want} ready"
    refused = [
        f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e['message']}"
        for e in ctx.cluster.items("events", ctx.namespace)
        if e.get("reason") == "FailedCreate"
    ]
    assert not refused, refused
    pods = ctx.cluster.items("pods", ctx.namespace, ctx.selector)
    ctx.progress(f"Pod Security restricted admitted all {len(pods)} pods of the release")


# --- NetworkPolicy --------------------------------------------------------------------------

CONNECT = (
    "import socket, sys\n"
    "for hp in sys.argv[1:]:\n"
    "    host, port = hp.rsplit(':', 1)\n"
    "    try:\n"
    "        socket.create_connection((host, int(port)), timeout=3).close()\n"
    "        print(hp, 'open')\n"
    "    except OSError as e:\n"
    "        print(hp, 'closed', type(e).__name__)\n"
)


def stores(ctx: Context) -> list[str]:
    return [f"{ctx.release}-postgresql:5432", f"{ctx.release}-redis:6379"]


def reachable(out: str) -> dict[str, bool]:
    return {line.split()[0]: line.split()[1] == "open" for line in out.splitlines() if line}


def restricted_pod(
    ctx: Context, name: str, command: list[str], env: list[dict[str, str]] | None = None
) -> str:
    """A pod of the API image without the release's labels, running `command`, allowed by
    Pod Security `restricted`; returns when it is Ready."""
    repo, tag = ctx.image
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": f"{repo}:{tag}",
                    "imagePullPolicy": "IfNotPresent",
                    "command": command,
                    "env": env or [],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                }
            ],
        },
    }
    ctx.cluster.apply(pod, ctx.namespace)
    ctx.cluster.kubectl(
        "wait", "--for=condition=Ready", f"pod/{name}", "-n", ctx.namespace, "--timeout=120s",
        timeout=150,
    )  # fmt: skip
    return name


def network_policy_enforced(ctx: Context) -> None:
    """With the chart's NetworkPolicies (on by default) and a CNI that enforces them: a pod
    without the allowed labels cannot open a connection to PostgreSQL or Redis, while it does
    reach the API (whose ingress is open by default: its network works, the refusal is the
    policy's); an API pod reaches both stores."""
    c = ctx.cluster
    stranger = restricted_pod(ctx, f"stranger-{uuid.uuid4().hex[:6]}", ["sleep", "600"])
    try:
        targets = [*stores(ctx), f"{ctx.fullname}:80"]
        got = c.kubectl(
            "exec", stranger, "-n", ctx.namespace, "--", "python", "-c", CONNECT, *targets,
            timeout=60,
        ).stdout  # fmt: skip
        seen = reachable(got)
        assert seen[f"{ctx.fullname}:80"], f"the stranger pod cannot reach the API at all: {got}"
        for store in stores(ctx):
            assert not seen[store], f"a pod without the allowed labels reached {store}: {got}"
        api = next(p["metadata"]["name"] for p in api_pods(ctx) if pod_ready(p))
        got = c.kubectl(
            "exec", api, "-c", "api", "-n", ctx.namespace, "--", "python", "-c", CONNECT,
            *stores(ctx), timeout=60,
        ).stdout  # fmt: skip
        assert all(reachable(got).values()), f"an API pod cannot reach the stores: {got}"
    finally:
        c.kubectl("delete", "pod", stranger, "-n", ctx.namespace, "--wait=false", check=False)
    ctx.progress("NetworkPolicy enforced: a stranger pod reaches the API but neither store")
