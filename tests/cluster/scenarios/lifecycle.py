"""One release through its life: install, migrations, upgrades, a failed upgrade, rollback,
generated passwords, uninstall. Each function is one step; it prints a progress line, asserts
what it can observe and leaves what later steps compare against in `ctx.state`."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from controlplane import CommandFailed, NotReady

from . import helm
from .context import Context, timed
from .kubeapi import Event, Recorder
from .objects import (
    argv,
    b64,
    condition,
    container,
    created,
    current_replicaset,
    deployment,
    hook_job_name,
    image_tag,
    job_outcome,
    job_pods,
    migration_jobs,
    pod_ready,
    pods_of,
    replicasets,
    secret_data,
    secret_refs,
    statefulsets_ready,
    ts,
    wait_rolled_out,
)

RESTRICTED = "restricted"


def install(ctx: Context, extra: dict[str, Any] | None = None, bundled: bool = True) -> None:
    """`helm install --wait` into a namespace that enforces Pod Security `restricted`.

    Admission is real on both tiers: a pod the namespace refuses is never created, so the
    ReplicaSets and StatefulSets could not reach their counts. Helm prints the API server's
    Pod Security warnings, and there must be none."""
    ns = ctx.cluster.get("namespace", ctx.namespace)["metadata"].get("labels") or {}
    assert ns.get("pod-security.kubernetes.io/enforce") == RESTRICTED, (
        f"namespace {ctx.namespace} does not enforce Pod Security restricted: {ns}"
    )
    values = ctx.values_for(None, extra or {})
    p, secs = timed(lambda: helm.install(ctx, values))
    ctx.state["installed_at"] = datetime.now(UTC)
    assert "PodSecurity" not in p.stderr, p.stderr
    assert helm.revision_states(ctx) == [(1, "deployed")]
    d = wait_rolled_out(ctx)
    assert image_tag(container(d["spec"]["template"]["spec"], "api")["image"]) == ctx.image[1]
    (stores,) = ctx.cluster.wait_for("the StatefulSets ready", lambda: (statefulsets_ready(ctx),))
    if bundled:
        assert stores == [f"{ctx.release}-postgresql", f"{ctx.release}-redis"], stores
        pvcs = ctx.cluster.items("pvc", ctx.namespace, ctx.selector)
        assert {c["status"]["phase"] for c in pvcs} == {"Bound"}, pvcs
        assert len(pvcs) == 2
    else:
        assert stores == [], f"external stores, yet StatefulSets: {stores}"
    ctx.state["extra"] = {}
    ctx.keep_values(extra)
    ctx.state["tag"] = ctx.image[1]
    ctx.state["good_revision"] = 1
    ctx.progress(f"installed (revision 1, {d['spec']['replicas']} API pods Ready) in {secs:.1f}s")


def install_migration_gates_pods(ctx: Context) -> None:
    """The install-time migration is a plain Job (part of the release, no hook), named after a
    hash of what it runs, and it completed; the API pods carry the `wait-for-schema` init
    container running `heliox-migrate ... check`, with the Job's image and database wiring.

    What the order proves depends on the tier. kwok does not run init containers: it reports
    them completed and the pod Ready at once, so on the cluster tier the API pods may be Ready
    before the Job completes, and only the wiring and the Job's outcome are checked (plus that
    `helm install --wait --wait-for-jobs` returned after the Job completed). With real pods
    (kind) the init container really waits, and its end must come after the migration started.
    """
    jobs = migration_jobs(ctx)
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    job = jobs[0]
    name, meta = job["metadata"]["name"], job["metadata"]
    assert re.fullmatch(rf"{re.escape(ctx.fullname[:46].rstrip('-'))}-migrate-[0-9a-f]{{10}}", name)
    assert "helm.sh/hook" not in (meta.get("annotations") or {}), meta.get("annotations")
    assert meta["annotations"]["meta.helm.sh/release-name"] == ctx.release  # a release object
    assert job_outcome(job) == "Complete", job["status"]
    done_at = ts(job["status"]["completionTime"])
    assert done_at <= ctx.state["installed_at"], (done_at, ctx.state["installed_at"])

    spec = job["spec"]["template"]["spec"]
    migrate = container(spec, "migrate")
    assert argv(migrate)[-2:] == ["heliox-migrate", "upgrade"], argv(migrate)
    job_db = {k: v for k, v in secret_refs(migrate).items() if k.startswith("DATABASE_")}
    assert "DATABASE_URL" in job_db, secret_refs(migrate)

    pods = pods_of(ctx, current_replicaset(ctx))
    assert pods
    for pod in pods:
        gate = container(pod["spec"], "wait-for-schema", init=True)
        cmd = argv(gate)
        assert "heliox-migrate" in cmd, cmd
        assert "check" in cmd, cmd
        assert gate["image"] == migrate["image"] == container(pod["spec"], "api")["image"]
        gate_db = {k: v for k, v in secret_refs(gate).items() if k.startswith("DATABASE_")}
        assert gate_db == job_db, (gate_db, job_db)  # the gate reads the database it migrates
        (status,) = pod["status"]["initContainerStatuses"]
        assert status["state"]["terminated"]["exitCode"] == 0, status

    if ctx.simulated:
        ctx.progress(
            f"install-time Job {name} Complete; {len(pods)} API pods carry the schema gate "
            "(kwok does not run it: ordering checked by the kind tier)"
        )
        return
    (jpod,) = [p for p in job_pods(ctx, job) if p["status"].get("phase") == "Succeeded"]
    migrate_started = ts(jpod["status"]["containerStatuses"][0]["state"]["terminated"]["startedAt"])
    for pod in pods:
        (status,) = pod["status"]["initContainerStatuses"]
        gate_done = ts(status["state"]["terminated"]["finishedAt"])
        assert gate_done >= migrate_started, (
            f"{pod['metadata']['name']}: schema gate opened at {gate_done}, before the "
            f"migration started at {migrate_started}"
        )
        ready = condition(pod, "Ready")
        assert ready is not None
        assert ts(ready["lastTransitionTime"]) >= migrate_started
    ctx.progress(f"install-time Job {name} Complete; API pods started after it ran")


def read_generated_passwords(ctx: Context) -> dict[str, dict[str, str]]:
    """The Secrets in which the subcharts keep the passwords they generated (base64, as stored),
    checked to look generated: 32 alphanumerics."""
    out = {}
    for name, keys in (
        (f"{ctx.release}-postgresql", ("password", "postgres-password")),
        (f"{ctx.release}-redis", ("redis-password",)),
    ):
        data = secret_data(ctx, name)
        assert sorted(data) == sorted(keys), (name, sorted(data))
        for k in keys:
            assert re.fullmatch(r"[A-Za-z0-9]{32}", b64(data[k])), f"{name}/{k} is not generated"
        out[name] = data
    return out


def remember_passwords(ctx: Context) -> None:
    ctx.state["passwords"] = read_generated_passwords(ctx)
    ctx.state["upgrades_since_passwords"] = 0


def passwords_unchanged(ctx: Context, min_upgrades: int = 2) -> None:
    """Generated passwords are byte-identical after upgrades (the subcharts read their live
    Secrets back with `lookup`). The API pods read them from those very Secrets."""
    n = ctx.state["upgrades_since_passwords"]
    assert n >= min_upgrades, f"only {n} upgrades since the passwords were read"
    now = read_generated_passwords(ctx)
    assert now == ctx.state["passwords"], "a generated password changed across upgrades"
    api = container(deployment(ctx)["spec"]["template"]["spec"], "api")
    refs = secret_refs(api)
    assert refs["DATABASE_PASSWORD"] == (f"{ctx.release}-postgresql", "password"), refs
    assert refs["REDIS_PASSWORD"] == (f"{ctx.release}-redis", "redis-password"), refs
    ctx.progress(f"generated passwords byte-identical after {n} upgrades")


def _first(events: list[Event], what: str) -> Event:
    if not events:
        raise AssertionError(f"no event seen for {what}")
    return events[0]


def upgrade_runs_hook_first(ctx: Context, tag: str, extra: dict[str, Any] | None = None) -> None:
    """`helm upgrade --wait` with a new image tag: the `pre-upgrade` hook Job runs (with the new
    image) and completes before any pod of the new ReplicaSet exists.

    Checked twice: by timestamps (whole seconds: hook Job completionTime <= creationTimestamp
    of the new ReplicaSet and of each of its pods), and by the order of the writes seen on watch
    streams (resourceVersions, one etcd: the Job's Complete status was written before the new
    ReplicaSet and its pods were created). The hook's ConfigMap/Secret copies were made before
    the Job and removed after it (hook-succeeded)."""
    old_rs = current_replicaset(ctx)
    old_jobs = {j["metadata"]["name"] for j in migration_jobs(ctx)}
    values = ctx.values_for(tag, ctx.state.get("extra", {}), extra or {})
    with Recorder(ctx.api, ctx.namespace, ["jobs", "pods", "replicasets", "secrets"]) as rec:
        _, secs = timed(lambda: helm.upgrade(ctx, values))
    revs = helm.revision_states(ctx)
    assert revs[-1][1] == "deployed", revs
    d = wait_rolled_out(ctx)
    assert image_tag(container(d["spec"]["template"]["spec"], "api")["image"]) == tag

    name = hook_job_name(ctx)
    job = ctx.cluster.get("job", name, ctx.namespace)
    ann = job["metadata"].get("annotations") or {}
    assert ann.get("helm.sh/hook") == "pre-upgrade", ann
    assert job_outcome(job) == "Complete", job["status"]
    assert image_tag(container(job["spec"]["template"]["spec"], "migrate")["image"]) == tag
    done_at = ts(job["status"]["completionTime"])
    job_uid = job["metadata"]["uid"]

    new_rs = current_replicaset(ctx)
    assert new_rs["metadata"]["name"] != old_rs["metadata"]["name"], "the pods were not replaced"
    new_pods = pods_of(ctx, new_rs)
    assert len(new_pods) == d["spec"]["replicas"]
    assert all(pod_ready(p) for p in new_pods)
    assert created(new_rs) >= done_at, (new_rs["metadata"]["creationTimestamp"], done_at)
    for p in new_pods:
        assert created(p) >= done_at, (
            f"pod {p['metadata']['name']} created {p['metadata']['creationTimestamp']}, before "
            f"the migration hook completed at {done_at}"
        )

    # This run's Job only: the previous upgrade's (same name) is deleted first, Complete too.
    runs = [e for e in rec.events("jobs", name) if e.obj["metadata"]["uid"] == job_uid]
    complete = _first(
        [e for e in runs if (c := condition(e.obj, "Complete")) and c["status"] == "True"],
        f"job/{name} Complete",
    )
    rs_added = _first(
        rec.events("replicasets", new_rs["metadata"]["name"], "ADDED"), "the new ReplicaSet"
    )
    assert rs_added.rv > complete.rv, "the new ReplicaSet was created before the hook completed"
    h = new_rs["metadata"]["labels"]["pod-template-hash"]
    added = [
        e
        for e in rec.events("pods", type="ADDED")
        if e.obj["metadata"].get("labels", {}).get("pod-template-hash") == h
    ]
    assert len(added) >= len(new_pods), "new pods were not seen on the watch"
    assert min(e.rv for e in added) > complete.rv, "a new pod was created before the hook ended"
    # The hook copies of the Secret (and ConfigMap): made before the Job, gone after it.
    job_added = _first([e for e in runs if e.type == "ADDED"], f"job/{name} created")
    copy_added = _first(rec.events("secrets", name, "ADDED"), f"the hook Secret {name}")
    copy_deleted = _first(rec.events("secrets", name, "DELETED"), f"the hook Secret {name} removed")
    assert copy_added.rv < job_added.rv < complete.rv < copy_deleted.rv
    left = ctx.cluster.kubectl("get", "secret,configmap", name, "-n", ctx.namespace, check=False)
    assert "NotFound" in left.stderr, left.stdout

    # The install-time plain Job is not part of this revision: Helm removed it.
    gone = {j["metadata"]["name"] for j in migration_jobs(ctx)} & (old_jobs - {name})
    assert not gone, f"plain migration Jobs of the previous revision still there: {gone}"

    ctx.state["tag"] = tag
    ctx.state["good_revision"] = revs[-1][0]
    ctx.state["upgrades_since_passwords"] = ctx.state.get("upgrades_since_passwords", 0) + 1
    ctx.keep_values(extra or {})
    ctx.progress(
        f"upgraded to {tag} (revision {revs[-1][0]}) in {secs:.1f}s: hook Job completed "
        f"{done_at:%H:%M:%S}, new ReplicaSet {new_rs['metadata']['name']} after it"
    )


def failing_hook_keeps_old_pods(ctx: Context, tag: str) -> None:
    """A migration that fails makes `helm upgrade` fail at its pre-upgrade hook: the release
    revision is `failed`, the Deployment is untouched (same ReplicaSet, same Ready pods, no pod
    with the new image was ever made), and the failed Job is kept for its logs.

    On kwok the hook pod fails through our failure stage (`ctx.failing_migration()`), in kind the
    runner really exits non-zero. Whether the old pods still *answer* is checked by the kind
    tier's traffic steps."""
    old_rs = current_replicaset(ctx)
    old_pods = {p["metadata"]["name"] for p in pods_of(ctx, old_rs)}
    before = helm.revision_states(ctx)
    values = ctx.values_for(tag, ctx.state.get("extra", {}), ctx.failing_migration())
    started = time.monotonic()
    try:
        helm.upgrade(ctx, values)
    except CommandFailed as e:
        failure = e
    else:
        raise AssertionError("helm upgrade succeeded although the migration hook failed")
    secs = time.monotonic() - started
    assert "pre-upgrade hooks failed" in failure.stderr, failure.stderr
    revs = helm.revision_states(ctx)
    assert revs[:-1] == before, (before, revs)
    assert revs[-1] == (before[-1][0] + 1, "failed"), revs
    assert helm.status(ctx)["info"]["status"] == "failed"

    rs = current_replicaset(ctx)
    assert rs["metadata"]["name"] == old_rs["metadata"]["name"], "the Deployment was changed"
    pods = pods_of(ctx, rs)
    assert {p["metadata"]["name"] for p in pods} == old_pods, "old pods were replaced"
    assert all(pod_ready(p) for p in pods), [p["status"].get("conditions") for p in pods]
    for r in replicasets(ctx):
        image = container(r["spec"]["template"]["spec"], "api")["image"]
        assert image_tag(image) != tag, f"a ReplicaSet with the failed image exists: {r}"
    job = ctx.cluster.get("job", hook_job_name(ctx), ctx.namespace)
    assert job_outcome(job) == "Failed", job["status"]
    assert image_tag(container(job["spec"]["template"]["spec"], "migrate")["image"]) == tag
    left = ctx.cluster.kubectl(
        "get", "secret,configmap", hook_job_name(ctx), "-n", ctx.namespace, check=False
    )
    assert "NotFound" in left.stderr, f"hook copies left after the failed hook: {left.stdout}"
    ctx.state["failed_revision"] = revs[-1][0]
    ctx.progress(
        f"upgrade to {tag} failed at its hook in {secs:.1f}s (revision {revs[-1][0]} failed); "
        f"{len(pods)} old pods still Ready"
    )


def rollback(ctx: Context) -> None:
    """`helm rollback` to the last good revision: a new revision, deployed, with that
    revision's image, every pod Ready; a rollback runs no migration (no new Job)."""
    target = ctx.state["good_revision"]
    jobs_before = {j["metadata"]["uid"] for j in migration_jobs(ctx)}
    _, secs = timed(lambda: helm.rollback(ctx, target))
    hist = helm.history(ctx)
    last = hist[-1]
    assert last["status"] == "deployed", hist
    assert f"Rollback to {target}" in last["description"], last
    assert [r["status"] for r in hist].count("deployed") == 1, hist
    d = wait_rolled_out(ctx)
    assert image_tag(container(d["spec"]["template"]["spec"], "api")["image"]) == ctx.state["tag"]
    new_jobs = {j["metadata"]["uid"] for j in migration_jobs(ctx)} - jobs_before
    assert not new_jobs, "the rollback started a migration Job"
    ctx.state["good_revision"] = int(last["revision"])
    ctx.progress(f"rolled back to revision {target} as revision {last['revision']} in {secs:.1f}s")


# --- uninstall ---------------------------------------------------------------------------------


def kept_after_uninstall(ctx: Context, bundled: bool = True) -> set[str]:
    """What charts/heliox/README.md ("Install") says `helm uninstall` leaves: the bundled stores'
    volumes (PVCs) and the Secrets with their generated passwords, and the last upgrade's
    migration hook Job (with its pod) until its TTL removes it."""
    kept = set()
    if bundled:
        for store in ("postgresql", "redis"):
            kept |= {
                f"persistentvolumeclaim/data-{ctx.release}-{store}-0",
                f"secret/{ctx.release}-{store}",
            }
    hooks = (ctx.state.get("extra", {}).get("migrations") or {}).get("useHelmHooks", True)
    upgraded = any(r["description"].startswith("Upgrade") for r in helm.history(ctx))
    if hooks and upgraded:
        kept.add(f"job.batch/{hook_job_name(ctx)}")
    return kept


def labelled_objects(ctx: Context) -> set[str]:
    kinds = ctx.cluster.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name")
    skip = ("events", "events.events.k8s.io")  # unlabelled, and they outlive their objects
    wanted = ",".join(k for k in kinds.stdout.split() if k not in skip)
    out = ctx.cluster.kubectl("get", wanted, "-n", ctx.namespace, "-l", ctx.selector, "-o", "name")
    return set(out.stdout.split())


def uninstall_leaves_only_documented(ctx: Context, bundled: bool = True) -> None:
    """After `helm uninstall --wait`, nothing labelled with the release is left in the namespace
    but what the chart's README documents as kept (pods of a kept Job aside), the Helm release
    records are gone, and the kept volumes are still Bound."""
    kept = kept_after_uninstall(ctx, bundled)
    _, secs = timed(lambda: helm.uninstall(ctx))

    def settled() -> set[str]:
        objs = labelled_objects(ctx)
        pods = {o for o in objs if o.startswith("pod/")}
        job = hook_job_name(ctx)
        extra = objs - kept - {p for p in pods if p.startswith(f"pod/{job}-")}
        if extra:
            raise NotReady(f"still there: {sorted(extra)}")
        return objs

    try:
        left = ctx.cluster.wait_for("the release's objects deleted", settled, timeout=60)
    except TimeoutError as e:
        raise AssertionError(
            f"helm uninstall left objects the chart does not document as kept ({e}); documented "
            f"(charts/heliox/README.md, Install): {sorted(kept)}"
        ) from e
    missing = kept - left
    assert not missing, f"documented as kept after uninstall, but gone: {sorted(missing)}"
    records = ctx.cluster.items("secrets", ctx.namespace, f"owner=helm,name={ctx.release}")
    assert not records, [s["metadata"]["name"] for s in records]
    for pvc in (o for o in left if o.startswith("persistentvolumeclaim/")):
        got = ctx.cluster.get("pvc", pvc.split("/", 1)[1], ctx.namespace)
        assert got["status"]["phase"] == "Bound", got["status"]
    for job in (o for o in left if o.startswith("job.batch/")):
        ttl = ctx.cluster.get("job", job.split("/", 1)[1], ctx.namespace)["spec"]
        assert (ttl.get("ttlSecondsAfterFinished") or 0) > 0, "a kept hook Job without a TTL"
    ctx.progress(f"uninstalled in {secs:.1f}s; left as documented: {', '.join(sorted(left))}")
