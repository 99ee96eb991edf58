"""The store images honour the contract the subcharts rely on (scripts/images/STANDINS.md).

Each image runs the way the chart's rendered StatefulSet runs it (tests/image/podrun.py: its
args or command, environment, user and fsGroup, read-only root, volumes, then its probe and
preStop commands), against the stand-ins built here or the official images where a registry
answers (tests/dockerenv.py decides). Needs Docker; the psql and redis-cli clients of this
machine connect through a published port, as the service would over the network.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests import dockerenv
from tests.image.helpers import find, render
from tests.image.podrun import PodContainer

# Passwords with the characters that break naive quoting (shell, URL, redis.conf, SQL).
SUPERUSER_PASSWORD = "su p@ss:/?#%+'\"\\"
APP_PASSWORD = "app p@ss:/?#%+'\"\\"
REDIS_PASSWORD = "r p@ss:/?#%+'\"\\"


@pytest.fixture(scope="module")
def stores(docker_engine: None, image_progress: Any) -> dict[str, str]:
    return dockerenv.store_images(image_progress)


@pytest.fixture(scope="module")
def chart() -> list[dict[str, Any]]:
    return render("hx", "stores")


def pod_spec(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, "StatefulSet", name)[0]["spec"]["template"]["spec"]
    return spec


def configmap(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    data: dict[str, str] = find(docs, "ConfigMap", name)[0]["data"]
    return data


# --- PostgreSQL --------------------------------------------------------------------------------


def run_store(
    image: str,
    chart: list[dict[str, Any]],
    name: str,
    container: str,
    port: int,
    passwords: dict[str, str],
    configmaps: list[str],
) -> Iterator[PodContainer]:
    """The store's container as its StatefulSet runs it, with `passwords` (key -> value) in the
    Secret its environment names; stopped and removed afterwards."""
    spec = pod_spec(chart, name)
    secrets: dict[str, dict[str, str]] = {}
    for e in spec["containers"][0]["env"]:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref and ref["key"] in passwords:
            secrets.setdefault(ref["name"], {})[ref["key"]] = passwords[ref["key"]]
    pod = PodContainer(
        image=image,
        pod_spec=spec,
        container=container,
        configmaps={cm: configmap(chart, cm) for cm in configmaps},
        secrets=secrets,
        publish=[port],
    ).start()
    try:
        pod.wait_probe("startup")
        yield pod
    finally:
        pod.cleanup()


@pytest.fixture(scope="module")
def postgres(stores: dict[str, str], chart: list[dict[str, Any]]) -> Iterator[PodContainer]:
    passwords = {"postgres-password": SUPERUSER_PASSWORD, "password": APP_PASSWORD}
    yield from run_store(
        stores["POSTGRES_IMAGE"], chart, "hx-postgresql", "postgresql", 5432, passwords,
        ["hx-postgresql-initdb"],
    )  # fmt: skip


def psql(pod: PodContainer, user: str, password: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(pod.host_port(5432)),
            "-U",
            user,
            "-d",
            "heliox",
            "-v",
            "ON_ERROR_STOP=1",
            "-XAtc",
            sql,
        ],
        capture_output=True,
        text=True,
        env={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5", "PATH": "/usr/bin:/bin"},
        timeout=30,
        check=False,
    )


def test_postgres_runs_as_the_chart_user_with_a_read_only_root(postgres: PodContainer) -> None:
    who = postgres.exec(["sh", "-c", "id -u; id -g; touch /probe-root 2>&1 || echo read-only"])
    assert who.stdout.split()[:2] == ["70", "70"], who.stdout
    assert "read-only" in who.stdout.lower(), who.stdout


def test_postgres_probes_pass(postgres: PodContainer) -> None:
    for kind in ("startup", "readiness"):
        assert postgres.probe(kind).returncode == 0, kind


def test_initdb_script_made_the_app_role_and_utf8_database(postgres: PodContainer) -> None:
    got = psql(
        postgres,
        "heliox",
        APP_PASSWORD,
        "SELECT current_user, rolsuper, pg_encoding_to_char(d.encoding), d.datcollate "
        "FROM pg_roles r, pg_database d WHERE r.rolname = current_user AND d.datname = 'heliox'",
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "heliox|f|UTF8|C.UTF-8"


def test_postgres_requires_the_password_over_tcp(postgres: PodContainer) -> None:
    assert psql(postgres, "postgres", SUPERUSER_PASSWORD, "SELECT 1").returncode == 0
    wrong = psql(postgres, "postgres", "not-the-password", "SELECT 1")
    assert wrong.returncode != 0
    assert "password authentication failed" in wrong.stderr


def test_postgres_args_reach_the_server(postgres: PodContainer) -> None:
    got = psql(postgres, "postgres", SUPERUSER_PASSWORD, "SHOW max_connections")
    args = postgres.spec["args"]
    assert f"max_connections={got.stdout.strip()}" in args


def test_postgres_prestop_stops_it_and_data_survives_a_restart(postgres: PodContainer) -> None:
    made = psql(
        postgres,
        "heliox",
        APP_PASSWORD,
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('x')",
    )
    assert made.returncode == 0, made.stderr
    stop = postgres.pre_stop()
    # The hook ends with the container it stopped (Docker kills what still runs in it: 137).
    assert stop.returncode in (0, 137), stop.stderr
    assert postgres.wait_exit() == 0, postgres.logs()
    assert "database system is shut down" in postgres.logs()
    again = postgres.restarted()
    again.wait_probe("readiness")
    got = psql(again, "heliox", APP_PASSWORD, "SELECT v FROM kept")
    assert got.stdout.strip() == "x", got.stderr
    assert "initializing" not in again.logs(), "initdb ran again on a volume that has data"
    postgres.name = again.name  # cleanup removes the one that runs now


# --- Redis -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis(stores: dict[str, str], chart: list[dict[str, Any]]) -> Iterator[PodContainer]:
    yield from run_store(
        stores["REDIS_IMAGE"], chart, "hx-redis", "redis", 6379,
        {"redis-password": REDIS_PASSWORD}, ["hx-redis"],
    )  # fmt: skip


def redis_cli(pod: PodContainer, *args: str, password: str | None = REDIS_PASSWORD) -> str:
    env = {"PATH": "/usr/bin:/bin"}
    if password is not None:
        env["REDISCLI_AUTH"] = password
    proc = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(pod.host_port(6379)), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    return proc.stdout.strip() + proc.stderr.strip()


def test_redis_runs_as_the_chart_user_with_a_read_only_root(redis: PodContainer) -> None:
    who = redis.exec(["sh", "-c", "id -u; id -g; touch /probe-root 2>&1 || echo read-only"])
    assert who.stdout.split()[:2] == ["999", "1000"], who.stdout
    assert "read-only" in who.stdout.lower(), who.stdout


def test_redis_probes_pass(redis: PodContainer) -> None:
    for kind in ("startup", "liveness", "readiness"):
        assert redis.probe(kind).returncode == 0, kind


def test_redis_requires_the_password_with_any_characters(redis: PodContainer) -> None:
    assert redis_cli(redis, "ping") == "PONG"
    assert "NOAUTH" in redis_cli(redis, "ping", password=None)
    assert "WRONGPASS" in redis_cli(redis, "ping", password="nope")


def test_redis_config_from_the_chart_applies(
    redis: PodContainer, chart: list[dict[str, Any]]
) -> None:
    conf = configmap(chart, "hx-redis")["redis.conf"]
    policy = next(
        line.split()[1] for line in conf.splitlines() if line.startswith("maxmemory-policy")
    )
    assert redis_cli(redis, "config", "get", "maxmemory-policy").splitlines()[-1] == policy
    assert redis_cli(redis, "config", "get", "appendonly").splitlines()[-1] == "yes"


def test_redis_data_survives_a_restart(redis: PodContainer) -> None:
    assert redis_cli(redis, "set", "kept", "x") == "OK"
    redis.exec(["sh", "-c", "sleep 1.5"])  # appendfsync everysec
    again = redis.restarted()
    again.wait_probe("readiness")
    assert redis_cli(again, "get", "kept") == "x"
    redis.name = again.name
