"""The bundled PostgreSQL and Redis subcharts."""

from __future__ import annotations

import re

from .helpers import container, env_map, mounts, pod_spec, render, volumes

PG = "rel-postgresql"
REDIS = "rel-redis"


def _sts(helm: str, name: str, values=None, sets=None):
    return render(helm, values, sets).get("StatefulSet", name)


def test_postgres_statefulset(helm: str) -> None:
    sts = _sts(helm, PG)
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == f"{PG}-hl"
    pg = container(sts, "postgresql")
    assert pg["image"] == "docker.io/library/postgres:17-alpine"
    assert pg["imagePullPolicy"] == "IfNotPresent"
    assert pg["ports"] == [{"name": "postgresql", "containerPort": 5432, "protocol": "TCP"}]
    assert pg["args"][:2] == ["postgres", "-c"]
    assert "max_connections=100" in pg["args"]


def test_postgres_probes(helm: str) -> None:
    pg = container(_sts(helm, PG), "postgresql")
    isready = ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
    assert pg["readinessProbe"]["exec"]["command"] == isready
    assert pg["startupProbe"]["exec"]["command"] == isready
    assert pg["livenessProbe"]["tcpSocket"] == {"port": "postgresql"}
    assert pg["startupProbe"]["periodSeconds"] * pg["startupProbe"]["failureThreshold"] >= 300


def test_postgres_utf8_and_app_role(helm: str) -> None:
    docs = render(helm)
    env = env_map(container(docs.get("StatefulSet", PG), "postgresql"))
    assert env["POSTGRES_INITDB_ARGS"]["value"] == "--encoding=UTF8 --locale=C.UTF-8"
    assert env["POSTGRES_USER"]["value"] == "postgres"
    assert env["POSTGRES_APP_USER"]["value"] == "heliox"
    assert env["POSTGRES_APP_DATABASE"]["value"] == "heliox"
    assert env["PGDATA"]["value"] == "/var/lib/postgresql/data/pgdata"
    script = docs.get("ConfigMap", f"{PG}-initdb")["data"]["10-heliox-app.sh"]
    assert "CREATE ROLE :\"app_user\" LOGIN PASSWORD :'app_password';" in script
    assert "ENCODING 'UTF8' TEMPLATE template0" in script
    assert "SUPERUSER" not in script


def test_postgres_persistence(helm: str) -> None:
    sts = _sts(helm, PG, "everything")
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    assert mounts(container(sts, "postgresql"))["/var/lib/postgresql/data"] == "data"
    default = _sts(helm, PG)["spec"]["volumeClaimTemplates"][0]
    assert "storageClassName" not in default["spec"]
    assert default["spec"]["resources"]["requests"]["storage"] == "8Gi"


def test_postgres_extra_config_and_fast_shutdown(helm: str) -> None:
    pg = container(_sts(helm, PG, "everything"), "postgresql")
    assert "log_min_duration_statement=500" in pg["args"]
    assert "pg_ctl stop" in pg["lifecycle"]["preStop"]["exec"]["command"][2]
    assert "-m fast" in pg["lifecycle"]["preStop"]["exec"]["command"][2]


def test_redis_statefulset_aof_and_password(helm: str) -> None:
    docs = render(helm)
    sts = docs.get("StatefulSet", REDIS)
    redis = container(sts, "redis")
    assert redis["image"] == "docker.io/library/redis:7.4-alpine"
    conf = docs.get("ConfigMap", REDIS)["data"]["redis.conf"]
    assert "appendonly yes" in conf
    assert "appendfsync everysec" in conf
    assert "dir /data" in conf
    # Only keys with a TTL are evicted: the cache's generation keys have none and must stay
    # (tests/integration/test_cache_eviction.py shows the API correct without it, too).
    assert "\nmaxmemory 160mb\n" in conf
    assert "\nmaxmemory-policy volatile-lru\n" in conf
    assert "requirepass" not in conf  # the password stays in the Secret
    script = redis["command"][2]
    assert "requirepass" in script
    assert "exec redis-server /run/redis/redis.conf" in script
    assert "$REDIS_PASSWORD" in script
    assert mounts(redis)["/data"] == "data"
    assert volumes(sts)["run"]["emptyDir"]["medium"] == "Memory"


def test_redis_eviction_policy_is_a_value(helm: str) -> None:
    sets = {"redis.maxmemoryPolicy": "allkeys-lru", "redis.maxmemory": "64mb"}
    conf = render(helm, sets=sets).get("ConfigMap", REDIS)["data"]["redis.conf"]
    assert "\nmaxmemory 64mb\nmaxmemory-policy allkeys-lru\n" in conf


def _pod_annotations(sts):
    return sts["spec"]["template"]["metadata"].get("annotations") or {}


def test_redis_rolls_when_its_password_changes(helm: str) -> None:
    """Redis reads its password only when it starts (`requirepass`, written at start): a new
    password must change the pod template, or Redis keeps the old one while the API pods get
    the new one."""

    def checksum(sets=None, values=None):
        sts = _sts(helm, REDIS, values, sets)
        value = _pod_annotations(sts)["checksum/secret"]
        assert re.fullmatch(r"[0-9a-f]{64}", value)
        return value

    base = checksum({"redis.auth.password": "first"})
    assert checksum({"redis.auth.password": "second"}) != base
    assert checksum({"redis.auth.password": "first"}) == base
    # A generated password is kept (lookup): not part of it, so `helm template` is repeatable.
    generated = checksum()
    assert checksum({"podAnnotations.x": "y"}) == generated
    assert generated != base
    # Moving to, or between, the user's Secrets rolls it too.
    mine = checksum({"redis.auth.existingSecret": "mine"})
    assert mine not in (base, generated)
    assert checksum({"redis.auth.existingSecret": "theirs"}) != mine
    assert (
        checksum({"redis.auth.existingSecret": "mine", "redis.auth.existingSecretPasswordKey": "k"})
        != mine
    )
    # Unrelated Redis settings do not (the config has its own checksum).
    assert checksum({"redis.auth.password": "first", "redis.maxmemory": "100mb"}) == base


def test_redis_checksum_does_not_carry_the_password(helm: str) -> None:
    docs = render(helm, sets={"redis.auth.password": "RedisPassw0rd-leak"})
    annotations = _pod_annotations(docs.get("StatefulSet", REDIS))
    assert "RedisPassw0rd-leak" not in str(annotations)


def test_postgres_does_not_roll_on_a_password_change(helm: str) -> None:
    """By design: PostgreSQL applies its passwords in initdb only, on an empty volume; a restart
    would not change the role's password, only cost an outage. The README says to `ALTER ROLE`
    first. Its initdb script's checksum still rolls it."""
    first = _pod_annotations(_sts(helm, PG, sets={"postgresql.auth.password": "first"}))
    second = _pod_annotations(_sts(helm, PG, sets={"postgresql.auth.password": "second"}))
    assert "checksum/secret" not in first
    assert first == second
    assert "checksum/initdb" in first


def test_redis_probes_use_redis_cli_ping(helm: str) -> None:
    redis = container(_sts(helm, REDIS), "redis")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "redis-cli -h 127.0.0.1 -p 6379 ping" in redis[probe]["exec"]["command"][2]
    assert redis["readinessProbe"]["exec"]["command"][2].endswith('" = PONG')
    assert "REDISCLI_AUTH" in env_map(redis)


def test_redis_without_persistence(helm: str) -> None:
    sts = _sts(helm, REDIS, "everything")
    assert "volumeClaimTemplates" not in sts["spec"]
    assert volumes(sts)["data"] == {"name": "data", "emptyDir": {}}


def test_subchart_resources_default_to_the_seed(helm: str) -> None:
    pg = container(_sts(helm, PG), "postgresql")["resources"]
    assert (pg["limits"]["memory"], pg["limits"]["cpu"]) == ("1Gi", "500m")
    assert (pg["requests"]["memory"], pg["requests"]["cpu"]) == ("1Gi", "250m")
    redis = container(_sts(helm, REDIS), "redis")["resources"]
    assert (redis["limits"]["memory"], redis["limits"]["cpu"]) == ("256Mi", "250m")
    assert (redis["requests"]["memory"], redis["requests"]["cpu"]) == ("256Mi", "100m")


def test_subcharts_are_restricted(helm: str) -> None:
    for name, uid in ((PG, 70), (REDIS, 999)):
        sts = _sts(helm, name)
        spec = pod_spec(sts)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        c = spec["containers"][0]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert "/tmp" in mounts(c)


def test_subcharts_turn_off(helm: str) -> None:
    docs = render(helm, "external")
    assert not docs.of_kind("StatefulSet")
    assert "rel-postgresql" not in docs.names("Service")
    assert "rel-redis" not in docs.names("Service")


def test_headless_services_for_the_statefulsets(helm: str) -> None:
    docs = render(helm)
    for name, port in ((PG, 5432), (REDIS, 6379)):
        hl = docs.get("Service", f"{name}-hl")
        assert hl["spec"]["clusterIP"] == "None"
        assert hl["spec"]["ports"][0]["port"] == port
        assert docs.get("Service", name)["spec"]["ports"][0]["port"] == port


def test_common_labels_per_chart(helm: str) -> None:
    """`commonLabels` labels the parent chart's objects; each bundled store takes its own from
    `postgresql.commonLabels` / `redis.commonLabels` (as Bitnami's charts do), never over a
    standard or selector label."""
    sets = {
        "commonLabels.team": "api",
        "postgresql.commonLabels.team": "data",
        "postgresql.commonLabels.app\\.kubernetes\\.io/component": "other",
        "redis.commonLabels.cost-center": "ops",
    }
    docs = render(helm, sets=sets)
    seen = set()
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        chart = labels.get("helm.sh/chart", "").rsplit("-", 1)[0]
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        seen.add(chart)
        if chart == "postgresql":
            assert labels.get("team") == "data", what
            assert labels["app.kubernetes.io/component"] == "database", what
        elif chart == "redis":
            assert labels.get("cost-center") == "ops", what
            assert "team" not in labels, what
        else:
            assert labels.get("team") == "api", what
    assert seen == {"heliox", "postgresql", "redis"}, seen
    pg = _sts(helm, PG, sets=sets)
    assert pg["spec"]["template"]["metadata"]["labels"]["team"] == "data"
