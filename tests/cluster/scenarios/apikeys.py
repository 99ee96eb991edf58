"""The bootstrap admin API key on a real API server (both tiers): the chart generates its Secret
once and keeps it across upgrades (`lookup`), the API pods read it from there, and GitOps mode
refuses to generate one. What a user reads to call the API (NOTES.txt) is this Secret."""

from __future__ import annotations

import re
import secrets
from typing import Any

from . import helm
from .context import Context
from .objects import b64, container, deployment, secret_data, secret_refs

# The service's key format (service/heliox/core/auth/keys.py), as the chart generates it.
KEY = re.compile(r"hx_[a-z0-9]{12}_[A-Za-z0-9]{43}")
SECRET_KEY = "api-key"


def secret_name(ctx: Context) -> str:
    return f"{ctx.fullname}-bootstrap-key"


def bootstrap_key(ctx: Context) -> str:
    """The key, read from its Secret as NOTES.txt tells users to (cached in ctx.state)."""
    if "api_key" not in ctx.state:
        data = secret_data(ctx, ctx.state.get("api_key_secret", secret_name(ctx)))
        ctx.state["api_key"] = b64(data[SECRET_KEY])
    return str(ctx.state["api_key"])


def remember_bootstrap_key(ctx: Context) -> None:
    """After install: the chart generated the key (the service's format) and the API pods read
    it from that Secret."""
    data = secret_data(ctx, secret_name(ctx))
    assert sorted(data) == [SECRET_KEY], sorted(data)
    assert KEY.fullmatch(b64(data[SECRET_KEY])), "the generated key is not in the service's format"
    api = container(deployment(ctx)["spec"]["template"]["spec"], "api")
    assert secret_refs(api)["BOOTSTRAP_API_KEY"] == (secret_name(ctx), SECRET_KEY)
    ctx.state["bootstrap_key"] = data[SECRET_KEY]
    ctx.progress(f"bootstrap key generated in Secret {secret_name(ctx)}")


def bootstrap_key_unchanged(ctx: Context) -> None:
    """Byte-identical after the upgrades since install (read back with `lookup`)."""
    now = secret_data(ctx, secret_name(ctx))[SECRET_KEY]
    assert now == ctx.state["bootstrap_key"], "the bootstrap key changed across upgrades"
    api = container(deployment(ctx)["spec"]["template"]["spec"], "api")
    assert secret_refs(api)["BOOTSTRAP_API_KEY"] == (secret_name(ctx), SECRET_KEY)
    ctx.progress("bootstrap key byte-identical after the upgrades")


def gitops_key_secret(ctx: Context) -> dict[str, Any]:
    """What a GitOps user does first: a Secret holding a key they made; the values naming it."""
    name = f"{ctx.release}-admin-key"
    key = f"hx_{secrets.token_hex(6)}_{secrets.token_hex(32)}"
    ctx.cluster.kubectl(
        "create", "secret", "generic", name, "-n", ctx.namespace, f"--from-literal=api-key={key}"
    )
    ctx.state["api_key_secret"] = name
    return {"auth": {"bootstrapKey": {"existingSecret": name}}}


def gitops_refuses_a_generated_key(ctx: Context, stores: dict[str, Any]) -> None:
    """GitOps mode with the stores' passwords in Secrets but no key Secret: `helm install`
    refuses, naming the value to set, and creates nothing."""
    values = ctx.values_for(None, {"migrations": {"useHelmHooks": False}}, stores)
    p = helm.install(ctx, values, check=False)
    assert p.returncode != 0, "GitOps mode installed with a generated bootstrap key"
    assert "auth.bootstrapKey.existingSecret" in p.stderr, p.stderr
    assert "GitOps mode" in p.stderr, p.stderr
    assert not ctx.cluster.items("secret", ctx.namespace, ctx.selector)
    no_release = ctx.cluster.run(
        [ctx.helm, "status", ctx.release, "-n", ctx.namespace], check=False
    )
    assert no_release.returncode != 0, no_release.stdout
    ctx.progress("GitOps mode without a key Secret: refused, nothing created")
