"""Who may call the API, as the chart wires it: the bootstrap admin key's Secret (generated once,
or the user's), BOOTSTRAP_API_KEY in the API container only, the auth settings, the metrics
bearer token through the ServiceMonitor, the GitOps refusal and NOTES (never the key)."""

from __future__ import annotations

import re

import pytest

from heliox.core.auth.keys import parse

from .helpers import (
    FULLNAME,
    container,
    decoded,
    env_map,
    install_notes,
    render,
    render_error,
    secret_ref,
)

BOOTSTRAP = f"{FULLNAME}-bootstrap-key"


def _api(docs):  # type: ignore[no-untyped-def]
    return container(docs.get("Deployment"), "api")


def test_the_bootstrap_key_is_generated_in_the_services_format(helm: str) -> None:
    docs = render(helm)
    secret = docs.get("Secret", BOOTSTRAP)
    key = decoded(secret)["api-key"]
    assert parse(key) is not None, "the service would refuse it at start"
    assert len(key.rsplit("_", 1)[1]) == 43  # about 256 random bits
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    assert secret_ref(env_map(_api(docs))["BOOTSTRAP_API_KEY"]) == (BOOTSTRAP, "api-key")


def test_only_the_api_container_gets_the_key(helm: str) -> None:
    docs = render(helm)
    holders = []
    for kind in ("Deployment", "Job"):
        for obj in docs.of_kind(kind):
            spec = obj["spec"]["template"]["spec"]
            for c in spec.get("initContainers", []) + spec["containers"]:
                if "BOOTSTRAP_API_KEY" in env_map(c):
                    holders.append(f"{obj['metadata']['name']}/{c['name']}")
    assert holders == [f"{FULLNAME}/api"]


def test_the_generated_key_comes_from_lookup_before_random() -> None:
    """Kept across upgrades: the live Secret is read back first (the cluster tier proves it)."""
    from .helpers import CHART  # noqa: PLC0415

    text = (CHART / "templates" / "_helpers.tpl").read_text()
    body = text[text.index('define "heliox.bootstrapKeyValue"') :]
    body = body[: body.index("{{- end -}}\n\n")]
    assert body.index("lookup") < body.index("b64dec") < body.index("randAlphaNum")


def test_an_existing_secret_is_used_as_it_is(helm: str) -> None:
    docs = render(
        helm,
        sets={
            "auth.bootstrapKey.existingSecret": "my-admin-key",
            "auth.bootstrapKey.existingSecretKey": "key",
        },
    )
    assert not docs.has("Secret", BOOTSTRAP)
    assert secret_ref(env_map(_api(docs))["BOOTSTRAP_API_KEY"]) == ("my-admin-key", "key")


@pytest.mark.parametrize("off", ["auth.bootstrapKey.enabled", "auth.enabled"])
def test_no_bootstrap_key_when_off(helm: str, off: str) -> None:
    docs = render(helm, sets={off: False})
    assert not docs.has("Secret", BOOTSTRAP)
    assert "BOOTSTRAP_API_KEY" not in env_map(_api(docs))


def test_the_secret_checksum_follows_where_the_key_comes_from(helm: str) -> None:
    def checksum(sets: dict) -> str:
        deployment = render(helm, sets=sets).get("Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]

    plain = checksum({})
    assert checksum({}) == plain  # the generated value is not in it: renders stay repeatable
    assert checksum({"auth.bootstrapKey.existingSecret": "mine"}) != plain


def test_auth_settings_reach_the_configmap(helm: str) -> None:
    data = render(helm).get("ConfigMap", FULLNAME)["data"]
    assert (data["AUTH_ENABLED"], data["AUTH_CACHE_SECONDS"]) == ("true", "3")
    assert data["RATE_LIMIT_AUTH_FAILURES"] == "20"
    optional = {"OIDC_ISSUER", "OIDC_AUDIENCE", "OIDC_ROLE_CLAIM", "OIDC_JWKS_URL"}
    optional |= {f"RATE_LIMIT_{role}_REQUESTS" for role in ("READER", "WRITER", "ADMIN")}
    assert not optional & set(data)  # unset: the service's own defaults apply
    data = render(
        helm,
        sets={
            "auth.oidc.issuer": "https://idp.example/realms/heliox",
            "auth.oidc.audience": "heliox-api",
            "auth.oidc.roleClaim": "realm_access.roles",
            "config.rateLimit.readerRequests": 600,
            "auth.cacheSeconds": 1,
        },
    ).get("ConfigMap", FULLNAME)["data"]
    assert data["OIDC_ISSUER"] == "https://idp.example/realms/heliox"
    assert (data["OIDC_AUDIENCE"], data["OIDC_ROLE_CLAIM"]) == ("heliox-api", "realm_access.roles")
    assert (data["RATE_LIMIT_READER_REQUESTS"], data["AUTH_CACHE_SECONDS"]) == ("600", "1")
    assert "RATE_LIMIT_WRITER_REQUESTS" not in data


def test_oidc_issuer_without_audience_is_refused(helm: str) -> None:
    stderr = render_error(helm, sets={"auth.oidc.issuer": "https://idp.example"})
    assert "auth.oidc.issuer needs auth.oidc.audience" in stderr


def test_gitops_mode_refuses_a_generated_key_naming_the_value(helm: str) -> None:
    sets = {
        "migrations.useHelmHooks": False,
        "postgresql.auth.existingSecret": "pg",
        "redis.auth.existingSecret": "rd",
    }
    stderr = render_error(helm, sets=sets)
    assert "GitOps mode" in stderr
    assert "auth.bootstrapKey.existingSecret" in stderr
    assert render(helm, sets={**sets, "auth.bootstrapKey.existingSecret": "bk"}).has("Job")
    assert render(helm, sets={**sets, "auth.bootstrapKey.enabled": False}).has("Job")


def test_the_metrics_token_reaches_the_pods_and_the_servicemonitor(helm: str) -> None:
    docs = render(
        helm,
        sets={"metrics.serviceMonitor.enabled": True, "metrics.auth.existingSecret": "scrape"},
    )
    assert secret_ref(env_map(_api(docs))["METRICS_TOKEN"]) == ("scrape", "token")
    [endpoint] = docs.get("ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["bearerTokenSecret"] == {"name": "scrape", "key": "token"}
    open_metrics = render(helm, sets={"metrics.serviceMonitor.enabled": True})
    assert "bearerTokenSecret" not in open_metrics.get("ServiceMonitor")["spec"]["endpoints"][0]
    assert "METRICS_TOKEN" not in env_map(_api(open_metrics))


def test_notes_say_how_to_read_the_key_and_never_print_it() -> None:
    notes = install_notes()
    assert f"get secret {BOOTSTRAP} -o jsonpath='{{.data.api-key}}' | base64 -d" in notes
    assert "heliox-admin keys create --name ci --role writer" in notes
    assert not re.search(r"hx_[a-z0-9]{12}_", notes)
    assert "open to whoever reaches it" in install_notes(sets={"auth.enabled": False})
