"""The API Deployment: probes, resources and workers, security, draining, rollout, checksums."""

from __future__ import annotations

import pytest

from .helpers import (
    FULLNAME,
    container,
    env_map,
    mounts,
    pod_spec,
    render,
    render_error,
    volumes,
)

# More workers need more database connections than the default max_connections allows.
ROOMY_DB = {"postgresql.maxConnections": 1000}


def _deployment(helm: str, values: str | list[str] | None = None, sets: dict | None = None):
    return render(helm, values, sets).get("Deployment", FULLNAME)


def _config(helm: str, values: str | list[str] | None = None, sets: dict | None = None):
    return render(helm, values, sets).get("ConfigMap", FULLNAME)["data"]


# -- probes ----------------------------------------------------------------------------------


def test_probes_paths_ports_and_thresholds(helm: str) -> None:
    api = container(_deployment(helm), "api")
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert api["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/health/db", "port": "http"}
    # A database outage makes every pod unready at once: readiness is slow to give up.
    ready = api["readinessProbe"]
    assert ready["periodSeconds"] * ready["failureThreshold"] >= 30
    # The service answers /health/db within its own 2 s timeout (HEALTH_DB_TIMEOUT).
    assert ready["timeoutSeconds"] > 2
    startup = api["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_probes_are_tunable_and_follow_the_port(helm: str) -> None:
    sets = {
        "probes.readiness.path": "/ready",
        "probes.readiness.failureThreshold": 12,
        "probes.liveness.periodSeconds": 20,
        "probes.startup.enabled": False,
        "config.port": 9000,
    }
    deployment = _deployment(helm, sets=sets)
    api = container(deployment, "api")
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert api["readinessProbe"]["failureThreshold"] == 12
    assert api["livenessProbe"]["periodSeconds"] == 20
    assert "startupProbe" not in api
    assert api["ports"][0]["containerPort"] == 9000
    assert _config(helm, sets=sets)["PORT"] == "9000"


# -- resources and gunicorn workers ------------------------------------------------------------


def test_resources_default_to_the_seed(helm: str) -> None:
    """The seed's limits; memory requested in full, CPU below the limit so that the bundle's
    defaults schedule on a 2-CPU node (the kind tier's), with room for a rollout's surge."""
    resources = container(_deployment(helm), "api")["resources"]
    assert resources["requests"]["memory"] == "256Mi"
    assert resources["requests"]["cpu"] == "100m"
    assert resources["limits"]["memory"] == "256Mi"
    assert resources["limits"]["cpu"] == "250m"


@pytest.mark.parametrize(
    ("cpu", "workers"),
    [
        ("250m", 1),  # below 0.5 CPU: still one worker
        ("499m", 1),
        ("500m", 1),
        ("999m", 1),
        ("1", 2),
        ("1500m", 3),
        ("1.5", 3),
        ("2", 4),
        ("4", 8),
    ],
)
def test_web_concurrency_is_one_worker_per_half_cpu_of_the_limit(
    helm: str, cpu: str, workers: int
) -> None:
    sets = {"resources.limits.cpu": cpu, "resources.requests.cpu": "100m", **ROOMY_DB}
    data = _config(helm, sets=sets)
    assert data["WEB_CONCURRENCY"] == str(workers)


def test_web_concurrency_numeric_cpu_limit(helm: str) -> None:
    """A CPU limit written as a YAML number (cpu: 2) counts the same as the string."""
    data = _config(helm, sets={"resources.limits.cpu": 2, **ROOMY_DB})
    assert data["WEB_CONCURRENCY"] == "4"


def test_web_concurrency_without_cpu_limit_is_one(helm: str) -> None:
    data = _config(helm, sets={"resources.limits.cpu": None})
    assert data["WEB_CONCURRENCY"] == "1"


def test_web_concurrency_explicit_value_wins(helm: str) -> None:
    data = _config(helm, sets={"config.webConcurrency": 5, **ROOMY_DB})
    assert data["WEB_CONCURRENCY"] == "5"


def test_configmap_carries_the_service_settings(helm: str) -> None:
    data = _config(helm)
    assert data == {
        "ENV": "production",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "kv",
        "PORT": "8000",
        "CORS_ENABLED": "false",
        "CORS_ORIGINS": "[]",
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "10",
        "DB_POOL_RECYCLE": "3600",
        "DB_POOL_PRE_PING": "true",
        "GRACEFUL_TIMEOUT": "30",
        "WEB_CONCURRENCY": "1",
        "HEALTH_DB_TIMEOUT": "2",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_REQUESTS": "100",
        "RATE_LIMIT_WINDOW_SECONDS": "60",
        "RATE_LIMIT_AUTH_FAILURES": "20",
        "MAX_BODY_SIZE": "1048576",
        "AUTH_ENABLED": "true",
        "AUTH_CACHE_SECONDS": "3",
    }
    # Unset unless given: the service's own default (127.0.0.1) applies.
    assert "FORWARDED_ALLOW_IPS" not in data


def test_config_extra_adds_variables(helm: str) -> None:
    data = _config(helm, "everything")
    assert data["KEEPALIVE_TIMEOUT"] == "90"
    assert data["CACHE_TTL_SECONDS"] == "30"
    assert data["RATE_LIMIT_REQUESTS"] == "200"
    assert data["MAX_BODY_SIZE"] == "2097152"
    assert data["DOCS_ENABLED"] == "false"
    assert data["FORWARDED_ALLOW_IPS"] == "*"
    assert data["CORS_ORIGINS"] == '["https://app.heliox.example.com"]'
    assert data["ENV"] == "staging"


def test_api_docs_are_left_to_the_service_unless_set(helm: str) -> None:
    """Unset, DOCS_ENABLED is not rendered and the service decides by ENV: off in staging and
    production (the chart's default ENV), on in development. Set, it is passed on."""
    assert "DOCS_ENABLED" not in _config(helm)
    assert "DOCS_ENABLED" not in _config(helm, sets={"config.env": "development"})
    assert _config(helm, sets={"config.docsEnabled": True})["DOCS_ENABLED"] == "true"
    assert _config(helm, sets={"config.docsEnabled": False})["DOCS_ENABLED"] == "false"
    # Still a setting of the chart's own: config.extra and extraEnv may not set it.
    for sets in ({"config.extra.DOCS_ENABLED": "true"}, {"extraEnv[0].name": "DOCS_ENABLED"}):
        assert "DOCS_ENABLED" in render_error(helm, sets=sets)


def test_api_reads_config_from_the_configmap(helm: str) -> None:
    api = container(_deployment(helm), "api")
    assert api["envFrom"][0] == {"configMapRef": {"name": FULLNAME}}


# -- security ----------------------------------------------------------------------------------


def test_restricted_pod_security(helm: str) -> None:
    deployment = _deployment(helm)
    spec = pod_spec(deployment)
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    for c in spec["containers"] + spec["initContainers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["privileged"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "add" not in sc["capabilities"]


def test_writable_tmp_and_shm_on_a_read_only_root(helm: str) -> None:
    deployment = _deployment(helm)
    vols = volumes(deployment)
    assert "emptyDir" in vols["tmp"]
    assert vols["shm"]["emptyDir"]["medium"] == "Memory"
    for name in ("api", "wait-for-schema"):
        assert mounts(container(deployment, name)) == {"/tmp": "tmp", "/dev/shm": "shm"}


def test_extra_volumes_and_mounts(helm: str) -> None:
    deployment = _deployment(helm, "everything")
    assert volumes(deployment)["certs"]["secret"]["secretName"] == "heliox-certs"
    assert mounts(container(deployment, "api"))["/etc/heliox/certs"] == "certs"


# -- draining -------------------------------------------------------------------------------------


def test_prestop_native_sleep_and_grace_period(helm: str) -> None:
    deployment = _deployment(helm)
    api = container(deployment, "api")
    assert api["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    graceful = int(_config(helm)["GRACEFUL_TIMEOUT"])
    assert grace > 5 + graceful
    assert grace == 5 + 30 + 10


def test_prestop_exec_fallback(helm: str) -> None:
    api = container(_deployment(helm, "everything"), "api")
    assert api["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "10"]}}


def test_graceful_timeout_follows_the_value_and_moves_the_grace_period(helm: str) -> None:
    sets = {"config.gracefulTimeout": 60, "preStop.sleepSeconds": 8}
    assert _config(helm, sets=sets)["GRACEFUL_TIMEOUT"] == "60"
    assert pod_spec(_deployment(helm, sets=sets))["terminationGracePeriodSeconds"] == 78


def test_explicit_grace_period_is_kept(helm: str) -> None:
    deployment = _deployment(helm, sets={"terminationGracePeriodSeconds": 120})
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] == 120


# -- rollout and scheduling ---------------------------------------------------------------------


def test_rolling_update_never_drops_capacity(helm: str) -> None:
    deployment = _deployment(helm)
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] == "25%"
    assert deployment["spec"]["replicas"] == 2


def test_hpa_owns_replicas(helm: str) -> None:
    assert "replicas" not in _deployment(helm, "ha")["spec"]


def test_selector_is_name_instance_component_only(helm: str) -> None:
    deployment = _deployment(helm, "everything")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "heliox",
        "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/component": "api",
    }
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert labels["tier"] == "backend"  # podLabels
    assert labels["team"] == "platform"  # commonLabels


def test_pod_labels_cannot_override_the_selector(helm: str) -> None:
    sets = {"podLabels.app\\.kubernetes\\.io/component": "other"}
    labels = _deployment(helm, sets=sets)["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "api"


def test_soft_anti_affinity_by_default(helm: str) -> None:
    affinity = pod_spec(_deployment(helm))["affinity"]["podAntiAffinity"]
    term = affinity["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


def test_hard_anti_affinity_and_topology_spread(helm: str) -> None:
    hard = pod_spec(_deployment(helm, sets={"podAntiAffinityPreset": "hard"}))
    required = hard["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    assert required[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert "affinity" not in pod_spec(_deployment(helm, sets={"podAntiAffinityPreset": "none"}))
    spec = pod_spec(_deployment(helm, "ha"))
    spread = spec["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    # An entry without a labelSelector gets the API pods' selector.
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


def test_explicit_affinity_replaces_the_preset(helm: str) -> None:
    sets = {
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].key": "disk",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].operator": "Exists",
    }
    affinity = pod_spec(_deployment(helm, sets=sets))["affinity"]
    assert "podAntiAffinity" not in affinity
    assert "nodeAffinity" in affinity


def test_scheduling_knobs(helm: str) -> None:
    spec = pod_spec(_deployment(helm, "everything"))
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert spec["priorityClassName"] == "high"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]


def test_image_tag_defaults_to_app_version_and_digest_wins(helm: str) -> None:
    assert container(_deployment(helm), "api")["image"] == "ghcr.io/heliox-ai/heliox:0.1.0"
    assert container(_deployment(helm), "api")["imagePullPolicy"] == "IfNotPresent"
    digest = container(_deployment(helm, "everything"), "api")["image"]
    assert digest.startswith("ghcr.io/heliox-ai/heliox@sha256:0123")


def test_no_command_override_the_image_cmd_runs_gunicorn(helm: str) -> None:
    api = container(_deployment(helm), "api")
    assert "command" not in api
    assert "args" not in api


# -- extra env ---------------------------------------------------------------------------------


def test_extra_env_and_env_from(helm: str) -> None:
    api = container(_deployment(helm, "everything"), "api")
    env = env_map(api)
    assert env["FEATURE_FLAG"]["value"] == "on"
    assert {"secretRef": {"name": "heliox-extra"}} in api["envFrom"]
    # Job-only variables stay out of the API pods.
    assert "MIGRATION_VERBOSE" not in env


# -- checksums roll the pods -------------------------------------------------------------------


def _annotations(helm: str, sets: dict | None = None, values: str | None = None) -> dict:
    return _deployment(helm, values, sets)["spec"]["template"]["metadata"]["annotations"]


def test_config_change_rolls_the_pods(helm: str) -> None:
    base = _annotations(helm)
    changed = _annotations(helm, {"config.logLevel": "DEBUG"})
    assert changed["checksum/config"] != base["checksum/config"]
    assert changed["checksum/secret"] == base["checksum/secret"]


def test_secret_change_rolls_the_pods(helm: str) -> None:
    base = _annotations(helm, values="external")
    changed = _annotations(helm, {"externalDatabase.password": "rotated"}, "external")
    assert changed["checksum/secret"] != base["checksum/secret"]
    assert changed["checksum/config"] == base["checksum/config"]
    moved = _annotations(helm, {"externalRedis.existingSecret": "other"}, "external")
    assert moved["checksum/secret"] != base["checksum/secret"]


def test_unrelated_change_does_not_roll_the_pods(helm: str) -> None:
    trusted = {"config.forwardedAllowIps": "10.42.0.0/16"}  # needed with an Ingress
    base = _annotations(helm, trusted)
    other = _annotations(helm, {**trusted, "service.port": 8080, "ingress.enabled": True})
    assert other["checksum/config"] == base["checksum/config"]
    assert other["checksum/secret"] == base["checksum/secret"]


def test_checksums_are_stable_across_renders(helm: str) -> None:
    """Generated passwords are random per render, but they never enter the checksums."""
    first = render(helm, sets={"podAnnotations.a": "one"}).get("Deployment")
    second = render(helm, sets={"podAnnotations.a": "two"}).get("Deployment")
    a = first["spec"]["template"]["metadata"]["annotations"]
    b = second["spec"]["template"]["metadata"]["annotations"]
    assert a["checksum/secret"] == b["checksum/secret"]
    assert a["checksum/config"] == b["checksum/config"]
