"""What the chart refuses to render: `fail` with a one-line reason, and schema rejections."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .helpers import render, render_error


def _reason(stderr: str) -> str:
    """The one line helm prints for a template `fail`."""
    lines = [line for line in stderr.splitlines() if "heliox:" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def test_no_database(helm: str) -> None:
    reason = _reason(render_error(helm, sets={"postgresql.enabled": False}))
    assert "no database configured" in reason
    assert "externalDatabase.host" in reason
    assert "secrets.databaseUrl.existingSecret" in reason


@pytest.mark.parametrize(
    "sets",
    [
        {"postgresql.enabled": False, "externalDatabase.host": "db"},
        {"postgresql.enabled": False, "secrets.databaseUrl.existingSecret": "urls"},
    ],
    ids=["external", "url-secret"],
)
def test_a_database_is_enough(helm: str, sets: dict) -> None:
    assert render(helm, sets=sets).has("Deployment")


def test_hpa_min_above_max(helm: str) -> None:
    sets = {"autoscaling.enabled": True, "autoscaling.minReplicas": 5, "autoscaling.maxReplicas": 3}
    reason = _reason(render_error(helm, sets=sets))
    assert "autoscaling.minReplicas (5) is greater than autoscaling.maxReplicas (3)" in reason


def test_hpa_without_any_target(helm: str) -> None:
    sets = {"autoscaling.enabled": True, "autoscaling.targetCPUUtilizationPercentage": 0}
    assert "without a target" in _reason(render_error(helm, sets=sets))


def test_connection_budget_with_replicas(helm: str) -> None:
    # 7 pods + 2 surge (25%) = 9 pods x 1 worker x 15 + 1 = 136 > 100 - 3.
    reason = _reason(render_error(helm, sets={"replicaCount": 7}))
    assert "connection budget 136 exceeds 97" in reason
    assert "9 pods at peak" in reason
    assert "postgresql.maxConnections 100 - 3 reserved" in reason


def test_connection_budget_with_hpa_max_and_workers(helm: str) -> None:
    sets = {
        "autoscaling.enabled": True,
        "autoscaling.maxReplicas": 10,
        "resources.limits.cpu": "1",
    }
    # 10 + 3 surge = 13 pods x 2 workers x 15 + 1 = 391.
    reason = _reason(render_error(helm, sets=sets))
    assert "connection budget 391 exceeds 97" in reason
    assert "13 pods at peak" in reason
    assert "x 2 workers x (5 pool + 10 overflow)" in reason


def test_connection_budget_fits_after_raising_max_connections(helm: str) -> None:
    sets = {
        "autoscaling.enabled": True,
        "autoscaling.maxReplicas": 10,
        "resources.limits.cpu": "1",
        "postgresql.maxConnections": 400,
    }
    docs = render(helm, sets=sets)
    assert (
        "-c"
        in docs.get("StatefulSet", "rel-postgresql")["spec"]["template"]["spec"]["containers"][0][
            "args"
        ]
    )
    assert "max_connections=400" in str(docs.get("StatefulSet", "rel-postgresql"))


def test_connection_budget_boundary(helm: str) -> None:
    # 3 pods (2 + 1 surge) x 1 worker x (pool + 10) + 1 migration against 100 - 3 = 97:
    # pool 22 -> 3 x 32 + 1 = 97 fits; pool 23 -> 100 does not.
    assert render(helm, sets={"config.dbPoolSize": 22}).has("Deployment")
    assert "budget 100 exceeds 97" in _reason(render_error(helm, sets={"config.dbPoolSize": 23}))


def test_connection_budget_for_an_external_database_when_its_limit_is_given(helm: str) -> None:
    sets = {"externalDatabase.maxConnections": 20}
    assert "externalDatabase.maxConnections 20" in _reason(render_error(helm, "external", sets))
    # Without a stated limit, an external database is not checked.
    unlimited = {"replicaCount": 50, "externalDatabase.maxConnections": 0}
    assert render(helm, "external", unlimited).has("Deployment")


def test_grace_period_too_short(helm: str) -> None:
    reason = _reason(render_error(helm, sets={"terminationGracePeriodSeconds": 30}))
    assert "terminationGracePeriodSeconds (30) must be greater than" in reason
    assert "(35)" in reason


@pytest.mark.parametrize(
    ("name", "where"),
    [("DATABASE_URL", "extraEnv"), ("LOG_LEVEL", "extraEnv"), ("REDIS_PASSWORD", "extraEnv")],
)
def test_extra_env_cannot_shadow_chart_variables(helm: str, name: str, where: str) -> None:
    sets = {f"{where}[0].name": name, f"{where}[0].value": "x"}
    reason = _reason(render_error(helm, sets=sets))
    assert f"extraEnv sets {name}, which the chart sets itself" in reason


def test_extra_env_duplicates(helm: str) -> None:
    sets = {
        "extraEnv[0].name": "A",
        "extraEnv[0].value": "1",
        "extraEnv[1].name": "A",
        "extraEnv[1].value": "2",
    }
    assert "extraEnv lists A twice" in _reason(render_error(helm, sets=sets))
    job_dup = {"extraEnv[0].name": "A", "migrations.extraEnv[0].name": "A"}
    assert "migrations.extraEnv lists A" in _reason(render_error(helm, sets=job_dup))
    reserved = {"migrations.extraEnv[0].name": "MIGRATE_DB_WAIT_TIMEOUT"}
    assert "MIGRATE_DB_WAIT_TIMEOUT" in _reason(render_error(helm, sets=reserved))


def test_config_extra_cannot_shadow_chart_keys(helm: str) -> None:
    reason = _reason(render_error(helm, sets={"config.extra.WEB_CONCURRENCY": "8"}))
    assert "config.extra sets WEB_CONCURRENCY" in reason


def test_readiness_timeout_must_exceed_the_services_db_check(helm: str, tmp_path: Path) -> None:
    reason = _reason(render_error(helm, sets={"probes.readiness.timeoutSeconds": 2}))
    assert "readiness.timeoutSeconds (2) must be greater than config.healthDbTimeout" in reason
    # --set turns 1.5 into a string; a values file keeps it a number.
    values = tmp_path / "fast-check.yaml"
    values.write_text("config: {healthDbTimeout: 1.5}\nprobes: {readiness: {timeoutSeconds: 2}}\n")
    config = render(helm, str(values)).get("ConfigMap", "rel-heliox")
    assert config["data"]["HEALTH_DB_TIMEOUT"] == "1.5"


def test_config_extra_cannot_shadow_first_class_settings(helm: str) -> None:
    for name in ("RATE_LIMIT_REQUESTS", "FORWARDED_ALLOW_IPS", "HEALTH_DB_TIMEOUT"):
        reason = _reason(render_error(helm, sets={f"config.extra.{name}": "1"}))
        assert f"config.extra sets {name}" in reason


def test_cors_without_origins(helm: str) -> None:
    assert "corsOrigins" in _reason(render_error(helm, sets={"config.corsEnabled": True}))


def test_httproute_without_parent(helm: str) -> None:
    sets = {"httpRoute.enabled": True, "config.forwardedAllowIps": "10.42.0.0/16"}
    assert "parentRefs" in _reason(render_error(helm, sets=sets))


@pytest.mark.parametrize("proxy", ["ingress.enabled", "httpRoute.enabled"])
def test_rate_limit_behind_a_proxy_needs_trusted_proxy_addresses(helm: str, proxy: str) -> None:
    """Behind an Ingress or a Gateway every request comes from the proxy: without trusting it
    to name the client, the limit would count the whole world as one client."""
    sets = {proxy: True, "httpRoute.parentRefs[0].name": "gw"}
    reason = _reason(render_error(helm, sets=sets))
    assert f"{proxy} with the rate limit on needs config.forwardedAllowIps" in reason
    assert "config.rateLimit.enabled=false" in reason
    for fix in (
        {"config.forwardedAllowIps": "10.42.0.0/16"},
        {"config.rateLimit.enabled": False},
        {"redis.enabled": False},  # no Redis, no limiter
    ):
        assert render(helm, sets={**sets, **fix}).has("Deployment"), fix


@pytest.mark.parametrize(
    ("sets", "names"),
    [
        (
            {},
            [
                "postgresql.auth.existingSecret",
                "redis.auth.existingSecret",
                "auth.bootstrapKey.existingSecret",
            ],
        ),
        ({"postgresql.auth.password": "p"}, ["postgresql.auth.postgresPassword"]),
        ({"postgresql.auth.existingSecret": "pg"}, ["redis.auth.existingSecret"]),
    ],
    ids=["both", "superuser-generated", "redis-generated"],
)
def test_gitops_mode_refuses_generated_passwords(helm: str, sets: dict, names: list) -> None:
    """Argo CD renders with `helm template`: no cluster to look a generated password up in,
    so each render would make new ones."""
    reason = _reason(render_error(helm, sets={"migrations.useHelmHooks": False, **sets}))
    assert "migrations.useHelmHooks=false (GitOps mode)" in reason
    for name in names:
        assert name in reason


def test_gitops_mode_with_passwords_from_secrets_or_values(helm: str) -> None:
    secrets = {"postgresql.auth.existingSecret": "pg", "redis.auth.existingSecret": "rd"}
    values = {
        "postgresql.auth.password": "a",
        "postgresql.auth.postgresPassword": "b",
        "redis.auth.password": "c",
    }
    external = {"postgresql.enabled": False, "redis.enabled": False, "externalDatabase.host": "db"}
    key = {"auth.bootstrapKey.existingSecret": "bk"}  # the bootstrap key: tests/chart/test_auth.py
    for sets in (secrets, values, external):
        assert render(helm, sets={"migrations.useHelmHooks": False, **key, **sets}).has("Job"), sets


# -- values.schema.json ---------------------------------------------------------------------------


def _schema_error(stderr: str) -> str:
    assert "values don't meet the specifications of the schema" in stderr, stderr
    return stderr


def test_unknown_top_level_key_is_rejected_readably(helm: str) -> None:
    err = _schema_error(render_error(helm, sets={"replicas": 3}))
    assert re.search(r"additional propert(y|ies) '?replicas'? (is )?not allowed", err), err


def test_subchart_and_global_keys_are_allowed(helm: str) -> None:
    sets = {"global.foo": "bar", "postgresql.maxConnections": 150, "redis.maxmemory": "100mb"}
    assert render(helm, sets=sets).has("Deployment")


def test_unknown_subchart_key_is_rejected(helm: str) -> None:
    err = _schema_error(render_error(helm, sets={"postgresql.maxConnection": 150}))
    assert "maxConnection" in err
    assert "postgresql" in err


@pytest.mark.parametrize(
    ("sets", "path"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"config.port": 70000}, "/config/port"),
        ({"config.env": "prod"}, "/config/env"),
        ({"config.logFormat": "xml"}, "/config/logFormat"),
        ({"image.pullPolicy": "Sometimes"}, "/image/pullPolicy"),
        ({"preStop.mode": "wait"}, "/preStop/mode"),
        ({"autoscaling.enabled": "yes"}, "/autoscaling/enabled"),
        ({"externalDatabase.sslmode": "on"}, "/externalDatabase/sslmode"),
        ({"probes.readiness.path": "health"}, "/probes/readiness/path"),
        ({"resources.limits.cpu": "lots"}, "/resources/limits/cpu"),
        ({"migrations.ttlSecondsAfterFinished": -1}, "/migrations/ttlSecondsAfterFinished"),
        ({"config.bogus": 1}, "/config"),
    ],
)
def test_wrong_types_and_values_are_rejected_with_their_path(
    helm: str, sets: dict, path: str
) -> None:
    err = _schema_error(
        render_error(helm, sets=sets, set_string=isinstance(next(iter(sets.values())), str))
    )
    assert f"'{path}'" in err or f"{path.strip('/').replace('/', '.')}" in err, err
