"""Secret wiring: generated passwords, existingSecret per credential, URL encoding, no leaks."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from .helpers import CHART, FULLNAME, container, decoded, env_map, install_notes, render, secret_ref

PG = "rel-postgresql"
REDIS = "rel-redis"


def _api_env(docs):
    return env_map(container(docs.get("Deployment"), "api"))


def test_default_wiring_urls_from_the_chart_secret_passwords_from_the_subcharts(helm: str) -> None:
    docs = render(helm)
    env = _api_env(docs)
    assert secret_ref(env["DATABASE_URL"]) == (FULLNAME, "DATABASE_URL")
    assert secret_ref(env["DATABASE_PASSWORD"]) == (PG, "password")
    assert secret_ref(env["REDIS_URL"]) == (FULLNAME, "REDIS_URL")
    assert secret_ref(env["REDIS_PASSWORD"]) == (REDIS, "redis-password")
    # Every connection variable comes from a Secret, none is a literal.
    assert all("valueFrom" in e and "value" not in e for e in env.values())
    urls = decoded(docs.get("Secret", FULLNAME))
    assert urls == {
        "DATABASE_URL": f"postgresql+psycopg://heliox@{PG}:5432/heliox",
        "REDIS_URL": f"redis://{REDIS}:6379/0",
    }


def test_generated_passwords(helm: str) -> None:
    docs = render(helm)
    pg = docs.get("Secret", PG)
    redis = docs.get("Secret", REDIS)
    pg_data = decoded(pg)
    assert set(pg_data) == {"password", "postgres-password"}
    assert re.fullmatch(r"[A-Za-z0-9]{32}", pg_data["password"])
    assert re.fullmatch(r"[A-Za-z0-9]{32}", pg_data["postgres-password"])
    assert pg_data["password"] != pg_data["postgres-password"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", decoded(redis)["redis-password"])
    # Kept on uninstall, like the volumes whose data only opens with them.
    assert pg["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert redis["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_generated_passwords_come_from_lookup_before_random() -> None:
    """Kept across upgrades: the template reads the live Secret back first (the cluster tier
    proves it on a real API server). `helm template` has no cluster, so each render shows fresh
    passwords: the reason GitOps users set existingSecret. (PostgreSQL's are worked out in
    its _helpers.tpl, once per render, for its Secret and the migration hook's copy.)"""
    for sub, file in (("postgresql", "_helpers.tpl"), ("redis", "secret.yaml")):
        text = (CHART / "charts" / sub / "templates" / file).read_text()
        assert re.search(r'lookup "v1" "Secret" \.Release\.Namespace \$name', text)
        assert text.index("lookup") < text.index("b64dec") < text.index("randAlphaNum")
    first = decoded(render("helm", sets={"podAnnotations.n": "one"}).get("Secret", PG))
    second = decoded(render("helm", sets={"podAnnotations.n": "two"}).get("Secret", PG))
    assert first["password"] != second["password"]


def test_values_password_is_url_encoded_into_the_url(helm: str) -> None:
    password = "p@ss w/rd+%:?#"
    docs = render(helm, sets={"postgresql.auth.password": password}, set_string=True)
    url = decoded(docs.get("Secret", FULLNAME))["DATABASE_URL"]
    parts = urlsplit(url)
    assert unquote(parts.password) == password
    assert " " not in url
    assert "+" not in parts.password  # a space is %20 in user-info, never "+"
    assert parts.hostname == PG
    assert decoded(docs.get("Secret", PG))["password"] == password
    assert "DATABASE_PASSWORD" not in _api_env(docs)


def test_external_stores_with_passwords_in_values(helm: str) -> None:
    docs = render(helm, "external")
    urls = decoded(docs.get("Secret", FULLNAME))
    db = urlsplit(urls["DATABASE_URL"])
    assert db.scheme == "postgresql+psycopg"
    assert (db.username, unquote(db.password)) == ("heliox_app", "s3cret p@ss/word+%")
    assert (db.hostname, db.port, db.path, db.query) == (
        "db.example.internal",
        5433,
        "/heliox",
        "sslmode=require",
    )
    redis = urlsplit(urls["REDIS_URL"])
    assert redis.scheme == "rediss"
    assert unquote(redis.password) == "r3dis:p@ss"
    assert (redis.hostname, redis.port, redis.path) == ("cache.example.internal", 6380, "/2")
    env = _api_env(docs)
    assert "DATABASE_PASSWORD" not in env
    assert "REDIS_PASSWORD" not in env
    assert not docs.of_kind("StatefulSet")
    assert docs.names("Secret") == [FULLNAME, f"{FULLNAME}-bootstrap-key"]


def test_existing_secrets_for_the_bundled_stores(helm: str) -> None:
    docs = render(helm, "existing-secret")
    # The subcharts make no Secret of their own.
    assert docs.names("Secret") == [FULLNAME, f"{FULLNAME}-bootstrap-key"]
    env = _api_env(docs)
    assert secret_ref(env["DATABASE_PASSWORD"]) == ("heliox-pg-auth", "app-password")
    assert secret_ref(env["REDIS_PASSWORD"]) == ("heliox-redis-auth", "pass")
    pg = env_map(container(docs.get("StatefulSet", PG), "postgresql"))
    assert secret_ref(pg["POSTGRES_PASSWORD"]) == ("heliox-pg-auth", "admin-password")
    assert secret_ref(pg["POSTGRES_APP_PASSWORD"]) == ("heliox-pg-auth", "app-password")
    redis = env_map(container(docs.get("StatefulSet", REDIS), "redis"))
    assert secret_ref(redis["REDIS_PASSWORD"]) == ("heliox-redis-auth", "pass")
    assert secret_ref(redis["REDISCLI_AUTH"]) == ("heliox-redis-auth", "pass")


def test_existing_secrets_for_the_external_stores(helm: str) -> None:
    docs = render(helm, "external-existing-secret")
    env = _api_env(docs)
    assert secret_ref(env["DATABASE_PASSWORD"]) == ("heliox-external-db", "db-password")
    assert secret_ref(env["REDIS_PASSWORD"]) == ("heliox-external-redis", "redis-password")
    urls = decoded(docs.get("Secret", FULLNAME))
    assert urls["DATABASE_URL"] == "postgresql+psycopg://heliox@db.example.internal:5432/heliox"
    assert urls["REDIS_URL"] == "redis://heliox@cache.example.internal:6379/0"


def test_existing_secret_with_complete_urls(helm: str) -> None:
    docs = render(helm, "existing-url-secret")
    assert docs.names("Secret") == [f"{FULLNAME}-bootstrap-key"]  # only the API key (test_auth.py)
    env = _api_env(docs)
    assert secret_ref(env["DATABASE_URL"]) == ("heliox-urls", "db-url")
    assert secret_ref(env["REDIS_URL"]) == ("heliox-urls", "redis-url")
    assert set(env) == {"DATABASE_URL", "REDIS_URL", "BOOTSTRAP_API_KEY"}
    job = docs.by_component("Job", "migrations")[0]
    assert secret_ref(env_map(container(job, "migrate"))["DATABASE_URL"]) == (
        "heliox-urls",
        "db-url",
    )
    # In hook mode too: the user's Secret is read directly; no chart Secret copy is made.
    upgrade = render(helm, "existing-url-secret", is_upgrade=True)
    assert upgrade.names("Secret") == [f"{FULLNAME}-bootstrap-key"]
    hook = upgrade.by_component("Job", "migrations")[0]
    assert secret_ref(env_map(container(hook, "migrate"))["DATABASE_URL"]) == (
        "heliox-urls",
        "db-url",
    )


def test_without_redis_there_is_no_redis_url(helm: str) -> None:
    docs = render(helm, sets={"redis.enabled": False})
    env = _api_env(docs)
    assert "REDIS_URL" not in env
    assert "REDIS_PASSWORD" not in env
    assert "REDIS_URL" not in decoded(docs.get("Secret", FULLNAME))


# -- nothing secret outside Secrets ---------------------------------------------------------------

LEAKY = {
    "postgresql.auth.password": "PgAppPassw0rd-leak",
    "postgresql.auth.postgresPassword": "PgAdminPassw0rd-leak",
    "redis.auth.password": "RedisPassw0rd-leak",
}


@pytest.mark.parametrize("upgrade", [False, True], ids=["install", "upgrade"])
def test_no_password_outside_secrets(helm: str, upgrade: bool) -> None:
    for values, sets, secrets in (
        ("defaults", LEAKY, list(LEAKY.values())),
        ("external", {}, ["s3cret p@ss/word+%", "r3dis:p@ss"]),
    ):
        docs = render(helm, values, sets, is_upgrade=upgrade)
        generated = [v for d in docs.of_kind("Secret") for v in decoded(d).values() if len(v) >= 16]
        needles = secrets + [s.replace(" ", "%20") for s in secrets] + generated
        for doc in docs:
            if doc["kind"] == "Secret":
                continue
            text = yaml.safe_dump(doc)
            for needle in needles:
                assert needle not in text, f"{needle!r} found in {doc['kind']}"


def test_no_password_in_notes() -> None:
    notes = install_notes(sets=LEAKY)
    assert "helm test rel" in notes
    for secret in LEAKY.values():
        assert secret not in notes


def test_checksum_annotations_do_not_carry_secrets(helm: str) -> None:
    docs = render(helm, "external")
    annotations = docs.get("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secret"])
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])
