"""Other ways to run the chart: an external database and Redis (and changing its credentials on
upgrade), and GitOps mode (`migrations.useHelmHooks=false`)."""

from __future__ import annotations

import re
import secrets
import urllib.parse
from collections.abc import Callable
from typing import Any

from . import apikeys, helm
from .context import Context, timed
from .kubeapi import Event, Recorder
from .lifecycle import install
from .objects import (
    b64,
    container,
    hook_job_name,
    hook_pod_run,
    image_tag,
    job_outcome,
    migration_jobs,
    secret_data,
    secret_refs,
    wait_rolled_out,
)


def external_values(
    db_host: str, redis_host: str, db_password: str, redis_password: str
) -> dict[str, Any]:
    return {
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "externalDatabase": {"host": db_host, "password": db_password},
        "externalRedis": {"host": redis_host, "password": redis_password},
    }


def install_external(
    ctx: Context, db_host: str, redis_host: str, db_password: str, redis_password: str
) -> None:
    """`helm install --wait` with the bundled stores off and `externalDatabase` /
    `externalRedis` set: no StatefulSet, the chart's Secret holds URLs to those hosts (password
    URL-encoded), the migration Job completes and the API pods are Ready.

    On kwok the hosts need not exist (no pod connects to anything); the kind tier points them
    at real servers (the subcharts installed as releases of their own)."""
    extra = external_values(db_host, redis_host, db_password, redis_password)
    install(ctx, extra, bundled=False)
    data = secret_data(ctx, ctx.fullname)
    db_url = urllib.parse.urlsplit(b64(data["DATABASE_URL"]))
    redis_url = urllib.parse.urlsplit(b64(data["REDIS_URL"]))
    assert (db_url.hostname, urllib.parse.unquote(db_url.password or "")) == (
        db_host,
        db_password,
    )
    assert redis_url.hostname == redis_host
    (job,) = migration_jobs(ctx)
    assert job_outcome(job) == "Complete", job["status"]
    ctx.state["db_password"] = db_password
    ctx.progress(f"external stores {db_host} and {redis_host}: installed and Ready")


def _seen_at(events: list[Event], rv: int) -> Event | None:
    """The last event of an object at or before a write (resourceVersion)."""
    before = [e for e in events if e.rv <= rv]
    return before[-1] if before else None


def _secret_during(rec: Recorder, secret: str, start: Event, end: Event) -> dict[str, Any] | None:
    """Asserts the Secret existed when the pod was created and was not deleted before the pod
    ended; returns it as it was at the pod's creation (None: made before the watch began and
    not written since, so its content was not seen)."""
    events = rec.events("secrets", secret)
    at_start = _seen_at(events, start.rv)
    if at_start is None and events:
        assert events[0].type != "ADDED", f"Secret {secret} was created after the hook pod"
    assert at_start is None or at_start.type != "DELETED", f"Secret {secret} gone at hook time"
    deleted = [e for e in events if e.type == "DELETED" and start.rv < e.rv < end.rv]
    assert not deleted, f"Secret {secret} was deleted while the hook pod ran"
    return at_start.obj if at_start else None


def upgrade_with_new_password(
    ctx: Context, new_password: str, before: Callable[[], None] | None = None
) -> None:
    """An upgrade that changes `externalDatabase.password` still gives the migration hook a
    Secret with the *new* credentials: its pod reads the hook copy `<fullname>-migrate` (made
    just before it), which existed from before the pod was created until after it finished,
    while the release's own Secret still held the old password (it is updated only after the
    hooks), and the hook Job completed. Afterwards the release's Secret holds the new one and
    the API pods rolled.

    On kwok nothing reads the Secret (no container starts), so its presence is proven from the
    watch streams; in kind the kubelet must resolve it, or the pod would not start at all.
    `before` runs first (the kind tier changes the role's password in the server there)."""
    if before:
        before()
    old = ctx.state["db_password"]
    extra = {"externalDatabase": {"password": new_password}}
    values = ctx.values_for(ctx.state["tag"], ctx.state.get("extra", {}), extra)
    old_hash = _pod_secret_checksum(ctx)
    with Recorder(ctx.api, ctx.namespace, ["pods", "secrets"]) as rec:
        _, secs = timed(lambda: helm.upgrade(ctx, values))
    ctx.keep_values(extra)
    ctx.state["db_password"] = new_password

    pod, start, end = hook_pod_run(ctx, rec)
    refs = secret_refs(container(pod["spec"], "migrate"))
    copy = hook_job_name(ctx)
    assert refs["DATABASE_URL"] == (copy, "DATABASE_URL"), refs
    state = _secret_during(rec, copy, start, end)
    assert state is not None, f"the hook copy {copy} was not made during the upgrade"
    url = urllib.parse.urlsplit(b64(state["data"]["DATABASE_URL"]))
    assert urllib.parse.unquote(url.password or "") == new_password, "hook copy has the old URL"
    main = _seen_at(rec.events("secrets", ctx.fullname), end.rv)
    if main is not None:  # the release's Secret, if it was written before the hook ended
        url = urllib.parse.urlsplit(b64(main.obj["data"]["DATABASE_URL"]))
        assert urllib.parse.unquote(url.password or "") == old, "the Secret changed before hooks"
    now = urllib.parse.urlsplit(b64(secret_data(ctx, ctx.fullname)["DATABASE_URL"]))
    assert urllib.parse.unquote(now.password or "") == new_password
    wait_rolled_out(ctx)
    assert _pod_secret_checksum(ctx) != old_hash, "the API pods did not roll on the new password"
    ctx.progress(f"password changed in {secs:.1f}s: the hook read its own copy {copy}")


def upgrade_to_existing_secret(ctx: Context, secret: str, password: str) -> None:
    """An upgrade that moves the password into a user's Secret (`externalDatabase.existingSecret`,
    created just before, as the README says): the hook pod reads `DATABASE_PASSWORD` from that
    Secret, which existed throughout its run, and the Job completed; the URL in the hook copy
    and the release's Secret no longer carries a password."""
    ctx.cluster.kubectl(
        "create",
        "secret",
        "generic",
        secret,
        f"--from-literal=password={password}",
        "-n",
        ctx.namespace,
    )
    extra = {"externalDatabase": {"password": "", "existingSecret": secret}}
    values = ctx.values_for(ctx.state["tag"], ctx.state.get("extra", {}), extra)
    with Recorder(ctx.api, ctx.namespace, ["pods", "secrets"]) as rec:
        _, secs = timed(lambda: helm.upgrade(ctx, values))
    ctx.keep_values(extra)
    pod, start, end = hook_pod_run(ctx, rec)
    refs = secret_refs(container(pod["spec"], "migrate"))
    assert refs["DATABASE_PASSWORD"] == (secret, "password"), refs
    _secret_during(rec, secret, start, end)
    state = _secret_during(rec, hook_job_name(ctx), start, end)
    assert state is not None, "the hook copy was not made during the upgrade"
    assert urllib.parse.urlsplit(b64(state["data"]["DATABASE_URL"])).password is None
    assert (
        urllib.parse.urlsplit(b64(secret_data(ctx, ctx.fullname)["DATABASE_URL"])).password is None
    )
    api = container(wait_rolled_out(ctx)["spec"]["template"]["spec"], "api")
    assert secret_refs(api)["DATABASE_PASSWORD"] == (secret, "password")
    ctx.progress(f"password moved to Secret {secret} in {secs:.1f}s; the hook read it")


def _pod_secret_checksum(ctx: Context) -> str:
    d = ctx.cluster.get("deployment", ctx.fullname, ctx.namespace)
    return str(d["spec"]["template"]["metadata"]["annotations"]["checksum/secret"])


# --- GitOps mode -------------------------------------------------------------------------------

GITOPS = {"migrations": {"useHelmHooks": False, "ttlSecondsAfterFinished": None}}


def gitops_store_secrets(ctx: Context) -> dict[str, Any]:
    """The bundled stores' password Secrets, made in the namespace; the values naming them."""
    pg, redis = f"{ctx.release}-pg-auth", f"{ctx.release}-redis-auth"
    for name, keys in ((pg, ("password", "postgres-password")), (redis, ("redis-password",))):
        literals = [f"--from-literal={k}={secrets.token_hex(16)}" for k in keys]
        ctx.cluster.kubectl("create", "secret", "generic", name, "-n", ctx.namespace, *literals)
    return {
        "postgresql": {"auth": {"existingSecret": pg}},
        "redis": {"auth": {"existingSecret": redis}},
    }


def gitops_secrets(ctx: Context) -> dict[str, Any]:
    """What a GitOps user does first (the chart refuses to generate passwords and keys in GitOps
    mode): the stores' password Secrets and the bootstrap API key's; the values naming them.
    The stores' are made once per release (a refused install may have made them already)."""
    stores = ctx.state.get("gitops_stores") or gitops_store_secrets(ctx)
    ctx.state["gitops_stores"] = stores
    return {**stores, **apikeys.gitops_key_secret(ctx)}


PLAIN_JOB = re.compile(r".+-migrate-[0-9a-f]{10}")


def _plain_job(ctx: Context) -> dict[str, Any]:
    jobs = migration_jobs(ctx)
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    job = jobs[0]
    assert PLAIN_JOB.fullmatch(job["metadata"]["name"]), job["metadata"]["name"]
    assert "helm.sh/hook" not in (job["metadata"].get("annotations") or {})
    assert job_outcome(job) == "Complete", job["status"]
    assert "ttlSecondsAfterFinished" not in job["spec"]
    return job


def gitops_install_and_upgrade(ctx: Context, new_tag: str) -> None:
    """`migrations.useHelmHooks=false`, the stores' passwords in Secrets made first (as GitOps
    needs): install and an upgrade to a new image tag both complete
    with `--wait`; each revision has one plain, hash-named migration Job (no hook), the upgrade's
    under a new name (a changed Job spec is a new Job, so no immutable-field error), the old one
    removed with its revision."""
    gitops = {**GITOPS, **gitops_secrets(ctx)}
    install(ctx, gitops)
    first = _plain_job(ctx)
    values = ctx.values_for(new_tag, gitops)
    p, secs = timed(lambda: helm.upgrade(ctx, values))
    assert "field is immutable" not in p.stderr, p.stderr
    assert helm.revision_states(ctx)[-1] == (2, "deployed")
    second = _plain_job(ctx)
    assert second["metadata"]["name"] != first["metadata"]["name"]
    assert image_tag(container(second["spec"]["template"]["spec"], "migrate")["image"]) == new_tag
    d = wait_rolled_out(ctx)
    assert image_tag(container(d["spec"]["template"]["spec"], "api")["image"]) == new_tag
    ctx.state["tag"] = new_tag
    ctx.progress(
        f"gitops mode: Job {first['metadata']['name']} -> {second['metadata']['name']}, "
        f"upgrade in {secs:.1f}s"
    )
