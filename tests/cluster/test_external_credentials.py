"""Cluster tier: the external-store install path carries a user name and password full of
URL-reserved characters intact, to an IPv6 host, under Helm 4 and Helm 3.

kwok runs no container, so what the pods would connect with is worked out from what the API
server holds after `helm install --wait`: each Heliox container's environment (the chart's
ConfigMap and Secret, the user's Secret) resolved as the kubelet resolves it, read by the
service's own settings as in the pod, and parsed by the clients' URL parsers (SQLAlchemy's
`make_url`, redis-py's `parse_url`). The password comes from values (URL-encoded into the URL
by the chart) or from the user's existing Secret (joined to the URL by the service).
"""

from __future__ import annotations

import base64
import subprocess
from typing import Any

import pytest
from controlplane import ROOT, Cluster
from redis.connection import parse_url
from scenarios import Context
from scenarios.lifecycle import install
from scenarios.objects import container, migration_jobs
from sqlalchemy.engine import make_url

from heliox.core.config import load_settings
from tests.helpers import clear_settings_env

USER = "app@srv:a/b?c#d%e+f g"
PASSWORD = "p@ss:w/o?r#d%25+ x"
CREDENTIALS_SECRET = "store-credentials"


@pytest.fixture(params=["helm", "helm3"], ids=["helm4", "helm3"])
def helm_bin(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    subprocess.run([str(ROOT / "scripts" / "tools.sh"), name], check=True, capture_output=True)
    return name


def _values(password_from: str, db_host: str, redis_host: str) -> dict[str, Any]:
    if password_from == "values":
        password: dict[str, Any] = {"password": PASSWORD}
    else:
        password = {"existingSecret": CREDENTIALS_SECRET, "existingSecretPasswordKey": "pw"}
    return {
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "externalDatabase": {"host": db_host, "user": USER, **password},
        "externalRedis": {"host": redis_host, "username": USER, **password},
    }


def _decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _resolved_env(cluster: Cluster, namespace: str, c: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would give it: envFrom, then env."""

    def config_map(name: str) -> dict[str, str]:
        return dict(cluster.get("configmap", name, namespace).get("data") or {})

    def secret(name: str) -> dict[str, str]:
        return _decoded(cluster.get("secret", name, namespace))

    env: dict[str, str] = {}
    for source in c.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(config_map(source["configMapRef"]["name"]))
        if "secretRef" in source:
            env.update(secret(source["secretRef"]["name"]))
    for entry in c.get("env") or []:
        ref = entry.get("valueFrom") or {}
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in ref:
            env[entry["name"]] = secret(ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            key_ref = ref["configMapKeyRef"]
            env[entry["name"]] = config_map(key_ref["name"])[key_ref["key"]]
    return env


def _what_the_service_connects_with(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> dict[str, tuple[Any, ...]]:
    """(user, password, host, port) per store, from the service's settings in that env."""
    with monkeypatch.context() as patched:
        clear_settings_env(patched)
        for name, value in env.items():
            patched.setenv(name, value)
        settings = load_settings()
    db = make_url(settings.effective_database_url)
    found = {"database": (db.username, db.password, db.host, db.port)}
    if settings.effective_redis_url is not None:
        redis = parse_url(settings.effective_redis_url)
        found["redis"] = (redis["username"], redis["password"], redis["host"], redis["port"])
    return found


@pytest.mark.parametrize(
    ("password_from", "db_host", "redis_host"),
    [
        ("values", "fd00::1", "fd00::2"),
        ("existingSecret", "db.example.internal", "cache.example.internal"),
        ("existingSecret", "fd00::1", "fd00::2"),
    ],
)
def test_external_stores_get_reserved_characters_intact(
    cluster: Cluster,
    restricted_namespace: str,
    helm_bin: str,
    password_from: str,
    db_host: str,
    redis_host: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ns = restricted_namespace
    if password_from == "existingSecret":
        cluster.kubectl(
            "create", "secret", "generic", CREDENTIALS_SECRET, f"--from-literal=pw={PASSWORD}",
            "-n", ns,
        )  # fmt: skip
    ctx = Context(
        cluster=cluster, namespace=ns, release="hx", helm=helm_bin,
        image=("heliox", "credentials-1"), timeout="120s",
    )  # fmt: skip
    install(ctx, _values(password_from, db_host, redis_host), bundled=False)

    api = cluster.get("deployment", ctx.fullname, ns)["spec"]["template"]["spec"]
    (job,) = migration_jobs(ctx)
    containers = {
        "api": container(api, "api"),
        "wait-for-schema": container(api, "wait-for-schema", init=True),
        "migrate": container(job["spec"]["template"]["spec"], "migrate"),
    }
    database = (USER, PASSWORD, db_host, 5432)
    redis = (USER, PASSWORD, redis_host, 6379)
    expected = {
        "api": {"database": database, "redis": redis},
        "wait-for-schema": {"database": database},  # only the API talks to Redis
        "migrate": {"database": database},
    }
    for name, c in containers.items():
        found = _what_the_service_connects_with(_resolved_env(cluster, ns, c), monkeypatch)
        assert found == expected[name], (name, found)
    ctx.progress(
        f"password from {password_from}, hosts {db_host} and {redis_host}: user and password "
        "intact in every container"
    )
