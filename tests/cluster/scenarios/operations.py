"""What an SRE does to a running release: scale it, autoscale it, drain a node (evictions under
the PodDisruptionBudget), and run `helm test`."""

from __future__ import annotations

import re
from typing import Any

from controlplane import NotReady

from . import helm
from .context import Context, timed
from .kubeapi import Recorder
from .objects import api_pods, argv, condition, container, pod_ready, wait_rolled_out

HPA = "horizontalpodautoscalers.v2.autoscaling"


def kubectl_scale(ctx: Context, replicas: int) -> None:
    """`kubectl scale` of the API Deployment is accepted and the Deployment reaches that many
    Ready pods."""
    ctx.cluster.kubectl(
        "scale", f"deployment/{ctx.fullname}", f"--replicas={replicas}", "-n", ctx.namespace
    )
    (d, secs) = timed(lambda: wait_rolled_out(ctx, replicas))
    pods = api_pods(ctx)
    assert len(pods) == replicas, [p["metadata"]["name"] for p in pods]
    assert all(pod_ready(p) for p in pods)
    ctx.progress(f"scaled to {d['status']['readyReplicas']} Ready API pods in {secs:.1f}s")


def pdb_refuses_eviction(ctx: Context) -> None:
    """The chart's PodDisruptionBudget is honoured by the Eviction API: evictions up to the
    budget are accepted (201), the next one is refused with 429 TooManyRequests, and the refused
    pod keeps running.

    As `kubectl drain` does, the nodes are cordoned first (all of them, for the duration of the
    step), so the evicted pod's replacement cannot become Ready and give the budget back before
    the next eviction is judged; on a local control plane it otherwise would within tens of
    milliseconds. Uncordoned, the Deployment is back at full strength and the budget restored."""
    pdb_name = ctx.fullname
    d = wait_rolled_out(ctx)
    replicas = d["spec"]["replicas"]

    def budget() -> dict[str, Any]:
        pdb: dict[str, Any] = ctx.cluster.get("pdb", pdb_name, ctx.namespace)
        st = pdb.get("status") or {}
        if st.get("observedGeneration") != pdb["metadata"]["generation"]:
            raise NotReady(f"pdb/{pdb_name} not observed yet")
        if st.get("currentHealthy") != replicas or st.get("disruptionsAllowed", 0) < 1:
            raise NotReady(f"pdb/{pdb_name}: {st}")
        return pdb

    pdb = ctx.cluster.wait_for(f"pdb/{pdb_name} to allow a disruption", budget)
    allowed = pdb["status"]["disruptionsAllowed"]
    assert allowed < replicas, f"the budget allows evicting all {replicas} pods: {pdb['spec']}"
    names = sorted(p["metadata"]["name"] for p in api_pods(ctx) if pod_ready(p))[: allowed + 1]
    nodes = [n["metadata"]["name"] for n in ctx.cluster.items("nodes")]
    try:
        for n in nodes:
            ctx.cluster.kubectl("cordon", n)
        results = [ctx.api.evict(ctx.namespace, n) for n in names]
        codes = [status for status, _ in results]
        assert codes == [201] * allowed + [429], list(zip(names, results, strict=True))
        refused = results[-1][1]
        assert refused.get("reason") == "TooManyRequests", refused
        assert "disruption budget" in refused.get("message", ""), refused
        kept = ctx.cluster.get("pod", names[-1], ctx.namespace)
        assert not kept["metadata"].get("deletionTimestamp"), "the refused pod is being deleted"
        assert pod_ready(kept)
    finally:
        for n in nodes:
            ctx.cluster.kubectl("uncordon", n, check=False)
    _, secs = timed(lambda: wait_rolled_out(ctx, replicas))
    ctx.cluster.wait_for("the budget restored", budget)
    ctx.progress(
        f"PDB (maxUnavailable {pdb['spec'].get('maxUnavailable')}): nodes cordoned, "
        f"{allowed} eviction(s) accepted, the next refused with 429; uncordoned, back to "
        f"{replicas} Ready in {secs:.1f}s"
    )


def hpa_accepted(ctx: Context, min_replicas: int = 2, max_replicas: int = 4) -> None:
    """`autoscaling.enabled=true`: the autoscaling/v2 HPA is accepted and the HPA controller
    takes the Deployment over (its replica count stays within min..max, every pod Ready).
    Neither tier has a metrics API, so the controller reports it cannot read CPU: the object is
    reconciled, no scaling on load is claimed."""
    extra = {
        "autoscaling": {"enabled": True, "minReplicas": min_replicas, "maxReplicas": max_replicas}
    }
    values = ctx.values_for(ctx.state["tag"], ctx.state.get("extra", {}), extra)
    before = ctx.cluster.get("deployment", ctx.fullname, ctx.namespace)["spec"]["replicas"]
    with Recorder(ctx.api, ctx.namespace, ["deployments"]) as rec:
        _, secs = timed(lambda: helm.upgrade(ctx, values))
    ctx.keep_values(extra)
    seen = [before] + [e.obj["spec"]["replicas"] for e in rec.events("deployments", ctx.fullname)]
    ctx.state["replicas_while_enabling_hpa"] = seen
    ctx.state["upgrades_since_passwords"] = ctx.state.get("upgrades_since_passwords", 0) + 1
    ctx.state["good_revision"] = helm.revision_states(ctx)[-1][0]
    hpa = ctx.cluster.get(HPA, ctx.fullname, ctx.namespace)
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", ctx.fullname), ref
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (min_replicas, max_replicas)

    def reconciled() -> dict[str, Any]:
        h: dict[str, Any] = ctx.cluster.get(HPA, ctx.fullname, ctx.namespace)
        if not condition(h, "AbleToScale"):
            raise NotReady(f"no conditions from the HPA controller yet: {h.get('status')}")
        n = ctx.cluster.get("deployment", ctx.fullname, ctx.namespace)["spec"]["replicas"]
        if not min_replicas <= n <= max_replicas:
            raise NotReady(f"deployment at {n} replicas, outside {min_replicas}..{max_replicas}")
        return h

    h = ctx.cluster.wait_for("the HPA controller to take the Deployment", reconciled, 90)
    d = wait_rolled_out(ctx)
    conds = {c["type"]: c.get("reason") for c in h["status"]["conditions"]}
    ctx.progress(
        f"HPA accepted in {secs:.1f}s; controller conditions {conds}; "
        f"{d['spec']['replicas']} Ready API pods"
    )


def hpa_switch_kept_capacity(ctx: Context, min_replicas: int = 2) -> None:
    """Turning autoscaling on for a running release never took the Deployment below
    `autoscaling.minReplicas` (it had more pods before). Reads the replica counts that
    `hpa_accepted` saw on the watch while `helm upgrade` ran."""
    seen = ctx.state["replicas_while_enabling_hpa"]
    low = min(seen)
    assert low >= min_replicas, (
        f"enabling autoscaling scaled the Deployment down to {low} (spec.replicas went "
        f"{' -> '.join(map(str, seen))}) before the HPA raised it: the new manifest has no "
        "`replicas`, and a client-side three-way merge (Helm 3) removes the field, so it "
        "defaults to 1"
    )
    ctx.progress(f"spec.replicas while autoscaling was turned on: {seen}")


def helm_test_passes(ctx: Context) -> None:
    """`helm test` runs the chart's test pod, which GETs the liveness and readiness paths
    through the Service, and reports success; the pod is removed after it passed.

    On kwok nothing runs: our stage `pod-complete-bare` completes the pod with exit 0, so this
    checks the hook wiring only. The kind tier runs the check for real."""
    name = f"{ctx.fullname[:52].rstrip('-')}-test-health"
    with Recorder(ctx.api, ctx.namespace, ["pods"]) as rec:
        p, secs = timed(lambda: helm.run_tests(ctx))
    assert re.search(r"Phase:\s+Succeeded", p.stdout), p.stdout
    (added,) = rec.events("pods", name, "ADDED")
    spec = added.obj["spec"]
    cmd = argv(container(spec, "health"))
    base = f"http://{ctx.fullname}:80"
    assert f"{base}/health" in cmd, cmd
    assert f"{base}/health/db" in cmd, cmd
    succeeded = [e for e in rec.events("pods", name) if e.obj["status"].get("phase") == "Succeeded"]
    assert succeeded, "the test pod never succeeded"
    ctx.cluster.wait_for(
        "the passed test pod removed",
        lambda: (
            "NotFound"
            in ctx.cluster.kubectl("get", "pod", name, "-n", ctx.namespace, check=False).stderr
        ),
    )
    ctx.progress(f"helm test passed in {secs:.1f}s ({name})")
