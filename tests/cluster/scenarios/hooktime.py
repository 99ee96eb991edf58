"""What the pre-upgrade migration hook reads exists, and is current, when it runs.

Helm runs pre-upgrade hooks before it makes or updates any of the release's own objects. So an
upgrade that turns on `serviceAccount.create` would leave the hook pod naming a ServiceAccount
that is not there yet (the API server refuses such a pod, and the upgrade times out), and an
upgrade that turns on or changes the network policies would leave the migration under the old
rules. The chart makes what the hook reads as hooks of their own, just before the Job: copies of
the ConfigMap and Secret (the Secret with the password the PostgreSQL subchart generated), of the
migrations NetworkPolicy, and the ServiceAccount when it does not exist yet; a ServiceAccount
that exists is left alone.

kwok runs no container, so what a pod reads is checked from the API: the pod exists at all (the
ServiceAccount admission passed), and the watch streams show each object made before the pod
and kept until it ended. The API server does not enforce NetworkPolicies (no CNI here): their
order of events is what is checked.
"""

from __future__ import annotations

from . import helm
from .context import Context, timed
from .kubeapi import Event, Recorder
from .lifecycle import install, read_generated_passwords
from .objects import (
    container,
    hook_job_name,
    hook_pod_run,
    secret_data,
    secret_refs,
    wait_rolled_out,
)

HOOK = "helm.sh/hook"
BARE = {"serviceAccount": {"create": False}, "networkPolicy": {"enabled": False}}
FULL = {"serviceAccount": {"create": True}, "networkPolicy": {"enabled": True}}
KINDS = ["jobs", "pods", "secrets", "serviceaccounts", "networkpolicies"]


def install_without_service_account_or_policies(ctx: Context) -> None:
    """`helm install --wait` with `serviceAccount.create=false` and `networkPolicy.enabled=false`:
    the pods run as the namespace's `default` ServiceAccount and no policy exists."""
    install(ctx, BARE)
    sa = ctx.cluster.kubectl("get", "sa", ctx.fullname, "-n", ctx.namespace, check=False)
    assert "NotFound" in sa.stderr, sa.stdout
    assert not ctx.cluster.items("networkpolicies", ctx.namespace, ctx.selector)
    ctx.state["passwords"] = read_generated_passwords(ctx)
    ctx.progress("installed without a ServiceAccount of its own and without NetworkPolicies")


def _there_throughout(rec: Recorder, kind: str, name: str, start: Event, end: Event) -> Event:
    """The object was made (during the upgrade) before the pod and not deleted before the pod
    ended; returns its event as of the pod's creation."""
    events = rec.events(kind, name)
    before = [e for e in events if e.rv <= start.rv]
    assert before, f"{kind}/{name} was not made before the hook pod ({[e.type for e in events]})"
    assert before[-1].type != "DELETED", f"{kind}/{name} was gone when the hook pod was made"
    gone = [e for e in events if e.type == "DELETED" and start.rv < e.rv < end.rv]
    assert not gone, f"{kind}/{name} was deleted while the hook pod ran"
    return before[-1]


def upgrade_turning_on_service_account_and_policies(ctx: Context, tag: str) -> None:
    """`helm upgrade --wait` that turns on `serviceAccount.create` and `networkPolicy.enabled`
    completes: the hook pod was admitted (its ServiceAccount, a hook under the release's
    ServiceAccount name, existed before it and until it ended), the hook copy of the migrations
    NetworkPolicy existed throughout the pod's run, and the hook copy of the Secret held the
    generated PostgreSQL password, byte-identical to the subchart's Secret. After the hooks the
    hook objects are gone and the release's own ServiceAccount (not a hook, a release object)
    and policies are there; the generated passwords did not change."""
    values = ctx.values_for(tag, ctx.state.get("extra", {}), FULL)
    with Recorder(ctx.api, ctx.namespace, KINDS) as rec:
        _, secs = timed(lambda: helm.upgrade(ctx, values))
    ctx.keep_values(FULL)
    revs = helm.revision_states(ctx)
    assert revs[-1][1] == "deployed", revs
    pod, start, end = hook_pod_run(ctx, rec)
    copy = hook_job_name(ctx)

    # The ServiceAccount: made for the hook, under the release's name, then the release's own.
    sa_name = pod["spec"]["serviceAccountName"]
    assert sa_name == ctx.fullname, sa_name
    sa = _there_throughout(rec, "serviceaccounts", sa_name, start, end)
    assert (sa.obj["metadata"].get("annotations") or {}).get(HOOK) == "pre-upgrade", sa.obj
    sa_events = rec.events("serviceaccounts", sa_name)
    deleted = [e for e in sa_events if e.type == "DELETED" and e.rv > end.rv]
    assert deleted, f"the hook ServiceAccount was not removed after the hook: {sa_events}"
    remade = [e for e in sa_events if e.type == "ADDED" and e.rv > deleted[0].rv]
    assert remade, "the release's ServiceAccount was not made after the hooks"
    live = ctx.cluster.get("sa", sa_name, ctx.namespace)
    assert HOOK not in (live["metadata"].get("annotations") or {}), live["metadata"]
    assert live["metadata"]["annotations"]["meta.helm.sh/release-name"] == ctx.release
    assert live["metadata"]["uid"] == remade[-1].obj["metadata"]["uid"]
    manifest = ctx.cluster.run(
        [ctx.helm, "get", "manifest", ctx.release, "-n", ctx.namespace]
    ).stdout
    assert f"kind: ServiceAccount\nmetadata:\n  name: {sa_name}\n" in manifest

    # The migrations NetworkPolicy: its hook copy throughout, the release's own afterwards.
    _there_throughout(rec, "networkpolicies", copy, start, end)
    policies = {p["metadata"]["name"] for p in ctx.cluster.items("networkpolicies", ctx.namespace)}
    assert f"{ctx.fullname}-migrations" in policies, policies
    assert copy not in policies, policies

    # The generated password: read from the hook's own Secret copy, equal to the subchart's.
    refs = secret_refs(container(pod["spec"], "migrate"))
    assert refs["DATABASE_PASSWORD"] == (copy, "DATABASE_PASSWORD"), refs
    secret = _there_throughout(rec, "secrets", copy, start, end)
    pg = secret_data(ctx, f"{ctx.release}-postgresql")
    assert secret.obj["data"]["DATABASE_PASSWORD"] == pg["password"], "the copy's password differs"
    assert read_generated_passwords(ctx) == ctx.state["passwords"]

    wait_rolled_out(ctx)
    ctx.state["tag"] = tag
    ctx.state["service_account_uid"] = live["metadata"]["uid"]
    ctx.progress(
        f"upgrade turning on the ServiceAccount and NetworkPolicies in {secs:.1f}s: the hook ran "
        f"as {sa_name} (a hook until the release made its own), beside policy {copy}"
    )


def upgrade_keeps_an_existing_service_account(ctx: Context, tag: str) -> None:
    """Once the ServiceAccount exists (found with `lookup`), an upgrade makes no hook of it: the
    live one is never deleted or replaced (a same-named hook would delete it first, cutting off
    pods that use it, and a new one would void its bound tokens)."""
    values = ctx.values_for(tag, ctx.state.get("extra", {}))
    with Recorder(ctx.api, ctx.namespace, KINDS) as rec:
        _, secs = timed(lambda: helm.upgrade(ctx, values))
    assert helm.revision_states(ctx)[-1][1] == "deployed"
    pod, _, _ = hook_pod_run(ctx, rec)
    assert pod["spec"]["serviceAccountName"] == ctx.fullname
    touched = [(e.type, e.name) for e in rec.events("serviceaccounts") if e.type != "MODIFIED"]
    assert not touched, f"ServiceAccounts made or deleted by the upgrade: {touched}"
    live = ctx.cluster.get("sa", ctx.fullname, ctx.namespace)
    assert live["metadata"]["uid"] == ctx.state["service_account_uid"]
    wait_rolled_out(ctx)
    ctx.state["tag"] = tag
    ctx.progress(f"upgraded in {secs:.1f}s; the live ServiceAccount was left as it was")
