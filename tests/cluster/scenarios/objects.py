"""Reading the release's objects: pods, ReplicaSets, Jobs, timestamps, readiness."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from controlplane import NotReady

from .context import Context
from .kubeapi import Event, Recorder

Obj = dict[str, Any]


def ts(value: str) -> datetime:
    """A Kubernetes timestamp (RFC 3339, whole seconds: "2026-11-26T15:04:21Z")."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def created(obj: Obj) -> datetime:
    return ts(obj["metadata"]["creationTimestamp"])


def condition(obj: Obj, type_: str) -> Obj | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def pod_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return pod["status"].get("phase") == "Running" and c is not None and c["status"] == "True"


def job_outcome(job: Obj) -> str | None:
    """ "Complete", "Failed", or None while it runs."""
    for type_ in ("Complete", "Failed"):
        c = condition(job, type_)
        if c and c["status"] == "True":
            return type_
    return None


def image_tag(image: str) -> str:
    return image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""


def container(pod_spec: Obj, name: str, init: bool = False) -> Obj:
    key = "initContainers" if init else "containers"
    for c in pod_spec.get(key) or []:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"no {'init ' if init else ''}container {name!r} in {pod_spec.get(key)}")


def argv(c: Obj) -> list[str]:
    """What a container runs: its command and args (the chart puts heliox-migrate in args,
    behind the image's entrypoint)."""
    return [*(c.get("command") or []), *(c.get("args") or [])]


def secret_refs(c: Obj) -> dict[str, tuple[str, str]]:
    """env name -> (Secret, key) for each env entry read from a Secret."""
    refs = {}
    for e in c.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            refs[e["name"]] = (ref["name"], ref["key"])
    return refs


def secret_data(ctx: Context, name: str) -> dict[str, str]:
    """A Secret's data, base64 as stored (compare these for byte-identical values)."""
    data: dict[str, str] = ctx.cluster.get("secret", name, ctx.namespace).get("data") or {}
    return data


def b64(value: str) -> str:
    return base64.b64decode(value).decode()


# --- the API Deployment ----------------------------------------------------------------------


def deployment(ctx: Context) -> Obj:
    return ctx.cluster.get("deployment", ctx.fullname, ctx.namespace)


def replicasets(ctx: Context) -> list[Obj]:
    return ctx.cluster.items("replicasets", ctx.namespace, ctx.component("api"))


def current_replicaset(ctx: Context) -> Obj:
    """The ReplicaSet of the Deployment's current revision."""
    want = deployment(ctx)["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
    for rs in replicasets(ctx):
        if rs["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == want:
            return rs
    raise NotReady(f"no ReplicaSet for revision {want} yet")


def pods_of(ctx: Context, rs: Obj) -> list[Obj]:
    h = rs["metadata"]["labels"]["pod-template-hash"]
    pods = ctx.cluster.items("pods", ctx.namespace, f"{ctx.component('api')},pod-template-hash={h}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def api_pods(ctx: Context) -> list[Obj]:
    pods = ctx.cluster.items("pods", ctx.namespace, ctx.component("api"))
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def wait_rolled_out(ctx: Context, replicas: int | None = None, timeout: float = 120) -> Obj:
    """Wait until the Deployment has finished its rollout with every pod Ready; returns it."""

    def done() -> Obj:
        d = deployment(ctx)
        st, want = d["status"], replicas if replicas is not None else d["spec"]["replicas"]
        counts = (
            d["spec"]["replicas"],
            st.get("updatedReplicas", 0),
            st.get("readyReplicas", 0),
            st.get("replicas", 0),
        )
        if st.get("observedGeneration") != d["metadata"]["generation"] or counts != (want,) * 4:
            raise NotReady(f"deployment/{ctx.fullname}: spec/updated/ready/total {counts}")
        return d

    d: Obj = ctx.cluster.wait_for(f"deployment/{ctx.fullname} rolled out", done, timeout)
    return d


def wait_old_pods_gone(ctx: Context, timeout: float = 120) -> None:
    """Wait until no API pod is terminating: a rollout is complete for the Deployment while the
    old pods still answer through the Service during their preStop pause and drain."""

    def gone() -> bool:
        pods = ctx.cluster.items("pods", ctx.namespace, ctx.component("api"))
        leaving = [p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")]
        if leaving:
            raise NotReady(f"API pods still terminating: {leaving}")
        return True

    ctx.cluster.wait_for("old API pods gone", gone, timeout)


def statefulsets_ready(ctx: Context) -> list[str]:
    names = []
    for s in ctx.cluster.items("statefulsets", ctx.namespace, ctx.selector):
        want = s["spec"]["replicas"]
        if s["status"].get("readyReplicas", 0) != want:
            raise NotReady(f"statefulset/{s['metadata']['name']} not ready: {s['status']}")
        names.append(s["metadata"]["name"])
    return sorted(names)


def migration_jobs(ctx: Context) -> list[Obj]:
    return ctx.cluster.items("jobs", ctx.namespace, ctx.component("migrations"))


def hook_job_name(ctx: Context) -> str:
    """The pre-upgrade hook Job (and its ConfigMap/Secret copies): `<fullname>-migrate`."""
    return f"{ctx.fullname[:55].rstrip('-')}-migrate"


def hook_pod_run(ctx: Context, rec: Recorder) -> tuple[Obj, Event, Event]:
    """This upgrade's hook Job (asserted Complete): its one pod as created, the pod's creation
    and its successful end, from a Recorder watching pods during the upgrade."""
    name = hook_job_name(ctx)
    job = ctx.cluster.get("job", name, ctx.namespace)
    assert job_outcome(job) == "Complete", job["status"]
    uid = job["metadata"]["uid"]
    pods = [
        e
        for e in rec.events("pods")
        if any(o.get("uid") == uid for o in e.obj["metadata"].get("ownerReferences") or [])
    ]
    added = [e for e in pods if e.type == "ADDED"]
    assert len(added) == 1, f"expected one hook pod, saw {[e.name for e in added]}"
    done = [e for e in pods if e.obj["status"].get("phase") == "Succeeded"]
    assert done, "the hook pod never succeeded"
    return added[0].obj, added[0], done[0]


def job_pods(ctx: Context, job: Obj) -> list[Obj]:
    uid = job["metadata"]["uid"]
    return ctx.cluster.items("pods", ctx.namespace, f"batch.kubernetes.io/controller-uid={uid}")
