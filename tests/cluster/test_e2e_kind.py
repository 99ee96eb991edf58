"""kind end-to-end tier (`make e2e`): the real image in real pods, on a throwaway kind cluster.

The same scenario steps as the cluster tier (tests/cluster/scenarios), so what CI runs on the
kwok control plane is what users run here, with `simulated=False`: the steps that kwok can only
wire up are checked for real (init container gating, the `helm test` HTTP checks, a migration
that fails in the runner itself), plus what only real pods show (scenarios/traffic.py): /health
and /health/db through the Service (its NodePort, mapped to the host by the kind config, or a
port-forward), an item written and read back, a rolling restart under load from a thread here
with no failed request, an upgrade whose hook really migrates the schema, 3 replicas.

Needs Docker (a running engine), kind (`scripts/tools.sh kind`), kubectl and helm; without them
the module skips with one line saying what is missing. The cluster comes from
k8s/kind/cluster.yaml, is named heliox-e2e-<random> and is deleted at the end
(HELIOX_E2E_KEEP=1 keeps it, printing how to reach it and how to run the tier on it again:
HELIOX_E2E_REUSE=<its state directory>).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from controlplane import ROOT, Cluster
from kindcluster import BROKEN_TAG, IMAGE, NEXT_TAG, NODE_PORT, store_values
from scenarios import (
    Context,
    Walk,
    apikeys,
    isolation,
    lifecycle,
    operations,
    proxied,
    traffic,
    underload,
    variants,
)

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def release(cluster: Cluster, what: str, node_port: bool = False) -> Iterator[tuple[Context, Walk]]:
    """A release in a fresh restricted namespace, its stores on the images in use; with
    node_port, its Service is the NodePort the kind config maps to the host (one release at a
    time can have it), and the steps reach it there instead of through a port-forward."""
    ns = cluster.create_namespace(f"e2e-{what}-{uuid.uuid4().hex[:6]}", RESTRICTED)
    values = store_values(cluster.info["stores"])
    if node_port:
        values["service"] = {"type": "NodePort", "nodePort": NODE_PORT}
    ctx = Context(
        cluster=cluster,
        namespace=ns,
        release="hx",
        helm="helm",
        image=IMAGE,
        values=values,
        simulated=False,
        timeout="10m",
    )
    if node_port:
        ctx.state["url"] = cluster.info["url"]
    try:
        yield ctx, Walk(f"e2e {what}")
    finally:
        cluster.delete_namespace(ns, wait=True)  # its pods' CPU is the next release's


# One release per class, its namespace deleted when the class is done: a 2-CPU node has room
# for one release at a time (the control plane requests about 0.9 CPU of it).
Rel = tuple[Context, Walk]


@pytest.fixture(scope="class")
def life(kind_cluster: Cluster) -> Iterator[Rel]:
    yield from release(kind_cluster, "lifecycle", node_port=True)


@pytest.fixture(scope="class")
def behind_proxy(kind_cluster: Cluster) -> Iterator[Rel]:
    yield from release(kind_cluster, "proxied")


@pytest.fixture(scope="class")
def external(kind_cluster: Cluster) -> Iterator[Rel]:
    yield from release(kind_cluster, "external")


@pytest.fixture(scope="class")
def gitops(kind_cluster: Cluster) -> Iterator[Rel]:
    yield from release(kind_cluster, "gitops")


def show_namespace(ctx: Context) -> None:
    """On a failed step: what the namespace holds, and the logs of pods that are not well."""
    c = ctx.cluster
    out = c.kubectl("get", "all,pvc,events", "-n", ctx.namespace, "-o", "wide", check=False)
    ctx.progress(f"namespace {ctx.namespace}:\n{out.stdout}{out.stderr}")
    for p in c.items("pods", ctx.namespace):
        if p["status"].get("phase") not in ("Running", "Succeeded") or not all(
            s.get("ready") for s in p["status"].get("containerStatuses") or []
        ):
            logs = c.kubectl(
                "logs", p["metadata"]["name"], "-n", ctx.namespace, "--all-containers",
                "--tail=40", check=False,
            )  # fmt: skip
            ctx.progress(f"logs of {p['metadata']['name']}:\n{logs.stdout}{logs.stderr}")


class Step:
    """walk.step plus, when it fails, the namespace's state and logs on the terminal."""

    def __init__(self, rel: Rel, name: str) -> None:
        self.ctx, self.walk, self.name = rel[0], rel[1], name

    def __enter__(self) -> Context:
        self._cm = self.walk.step(self.name, pytest.skip)
        self._cm.__enter__()
        return self.ctx

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: Any) -> Any:
        if err is not None and not isinstance(err, pytest.skip.Exception):
            show_namespace(self.ctx)
        return self._cm.__exit__(kind, err, tb)


@pytest.mark.e2e
class TestLifecycle:
    def test_01_install_default_in_restricted_namespace(self, life: Rel) -> None:
        with Step(life, "install") as ctx:
            lifecycle.install(ctx)
            lifecycle.remember_passwords(ctx)

    def test_02_migration_ran_before_the_api_pods_started(self, life: Rel) -> None:
        with Step(life, "install-time migration") as ctx:
            lifecycle.install_migration_gates_pods(ctx)

    def test_03_health_through_the_service(self, life: Rel) -> None:
        with Step(life, "health") as ctx:
            traffic.health_through_service(ctx)

    def test_04_create_and_read_an_item(self, life: Rel) -> None:
        with Step(life, "items") as ctx:
            ctx.state["item"] = traffic.items_round_trip(ctx)

    def test_04b_pod_security_restricted_admitted_every_pod(self, life: Rel) -> None:
        with Step(life, "Pod Security") as ctx:
            isolation.pod_security_admitted_every_pod(ctx)

    def test_04c_network_policy_keeps_strangers_from_the_stores(self, life: Rel) -> None:
        with Step(life, "NetworkPolicy") as ctx:
            isolation.network_policy_enforced(ctx)

    def test_05_rolling_restart_under_load(self, life: Rel) -> None:
        with Step(life, "rolling restart") as ctx:
            traffic.rolling_restart_under_load(ctx, ctx.state["url"])

    def test_06_upgrade_with_a_migration(self, life: Rel) -> None:
        with Step(life, "upgrade with a migration") as ctx:
            before = traffic.schema_revision(ctx)
            assert before == traffic.head_revision(ROOT / "migrations-job" / "versions")
            lifecycle.upgrade_runs_hook_first(ctx, NEXT_TAG)
            assert traffic.schema_revision(ctx) == "e2e_marker"
            traffic.health_through_service(ctx)

    def test_07_failing_migration_keeps_old_pods_serving(self, life: Rel) -> None:
        with Step(life, "failing hook") as ctx:
            lifecycle.failing_hook_keeps_old_pods(ctx, BROKEN_TAG)
            traffic.health_through_service(ctx)  # the old pods still answer

    def test_08_rollback(self, life: Rel) -> None:
        with Step(life, "rollback") as ctx:
            lifecycle.rollback(ctx)
            traffic.health_through_service(ctx)

    def test_09_scale_to_3_replicas(self, life: Rel) -> None:
        with Step(life, "scale") as ctx:
            operations.kubectl_scale(ctx, 3)
            traffic.health_through_service(ctx)

    def test_10_pdb_refuses_eviction_beyond_budget(self, life: Rel) -> None:
        with Step(life, "eviction") as ctx:
            operations.pdb_refuses_eviction(ctx)

    def test_11_hpa_accepted(self, life: Rel) -> None:
        with Step(life, "HPA") as ctx:
            operations.hpa_accepted(ctx)
            operations.hpa_switch_kept_capacity(ctx)
            lifecycle.passwords_unchanged(ctx, min_upgrades=2)

    def test_12_helm_test_checks_health_for_real(self, life: Rel) -> None:
        with Step(life, "helm test") as ctx:
            operations.helm_test_passes(ctx)

    def test_12b_memory_under_load_within_the_limit(self, life: Rel) -> None:
        with Step(life, "memory") as ctx:
            underload.memory_under_load(ctx)

    def test_12c_postgres_pod_lost_under_load(self, life: Rel) -> None:
        with Step(life, "PostgreSQL pod lost") as ctx:
            underload.postgres_pod_loss_under_load(ctx)

    def test_12d_redis_pod_lost_under_load(self, life: Rel) -> None:
        with Step(life, "Redis pod lost") as ctx:
            underload.redis_pod_loss_under_load(ctx)

    def test_13_the_item_survived_everything(self, life: Rel) -> None:
        with Step(life, "item kept") as ctx, traffic.service_url(ctx) as url:
            status, got = traffic.http(
                "GET", f"{url}/api/v1/items/{ctx.state['item']}", key=apikeys.bootstrap_key(ctx)
            )
            assert status == 200, (status, got)

    def test_14_uninstall_leaves_only_documented_objects(self, life: Rel) -> None:
        with Step(life, "uninstall") as ctx:
            lifecycle.uninstall_leaves_only_documented(ctx)


@pytest.mark.e2e
class TestRateLimitBehindAProxy:
    def test_limit_counts_each_client_only_when_the_proxy_is_trusted(
        self, behind_proxy: Rel
    ) -> None:
        with Step(behind_proxy, "rate limit behind a proxy") as ctx:
            proxied.rate_limit_counts_each_client_behind_the_proxy(ctx)


STORES_SUPERUSER = "e2e-superuser-pw"  # the external PostgreSQL's `postgres` password


def install_stores(ctx: Context) -> None:
    """The "external" PostgreSQL and Redis: the chart's own subcharts, each its own release."""
    stores = {
        ("postgresql", "ext-pg"): {
            "password": "e2e-first-pw",
            "postgresPassword": STORES_SUPERUSER,
        },
        ("redis", "ext-redis"): {"password": "e2e-redis-pw"},
    }
    for (chart, rel), auth in stores.items():
        values = [f"auth.{k}={v}" for k, v in auth.items()]
        image = ctx.values[chart]["image"]
        values += [f"image.repository={image['repository']}", f"image.tag={image['tag']}"]
        ctx.cluster.run(
            ["helm", "install", rel, str(ctx.chart / "charts" / chart), "-n", ctx.namespace]
            + [a for v in values for a in ("--set", v)]
            + ["--wait", "--timeout", ctx.timeout],
            timeout=900,
        )
    ctx.progress("external PostgreSQL and Redis running (the subcharts as their own releases)")


def alter_role(ctx: Context, password: str) -> Callable[[], None]:
    """What the chart's README says to do before changing a database password: ALTER ROLE."""

    def run() -> None:
        ctx.cluster.kubectl(
            "exec", "-i", "ext-pg-postgresql-0", "-c", "postgresql", "-n", ctx.namespace, "--",
            "env", f"PGPASSWORD={STORES_SUPERUSER}", "psql", "-h", "127.0.0.1", "-U", "postgres",
            "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-v", f"pw={password}",
            input="ALTER ROLE heliox PASSWORD :'pw';\n",
        )  # fmt: skip

    return run


@pytest.mark.e2e
class TestExternalStores:
    def test_01_install_against_external_servers(self, external: Rel) -> None:
        with Step(external, "install") as ctx:
            install_stores(ctx)
            variants.install_external(
                ctx, "ext-pg-postgresql", "ext-redis-redis", "e2e-first-pw", "e2e-redis-pw"
            )
            traffic.health_through_service(ctx)
            traffic.items_round_trip(ctx)

    def test_02_new_password_reaches_the_migration_hook(self, external: Rel) -> None:
        with Step(external, "new password") as ctx:
            variants.upgrade_with_new_password(
                ctx, "e2e-second-pw", before=alter_role(ctx, "e2e-second-pw")
            )
            traffic.health_through_service(ctx)

    def test_03_existing_secret_reaches_the_migration_hook(self, external: Rel) -> None:
        with Step(external, "existing Secret") as ctx:
            variants.upgrade_to_existing_secret(ctx, "hx-db-credentials", "e2e-second-pw")
            traffic.health_through_service(ctx)


@pytest.mark.e2e
class TestGitOpsMode:
    def test_install_and_upgrade_without_helm_hooks(self, gitops: Rel) -> None:
        with Step(gitops, "gitops") as ctx:
            variants.gitops_install_and_upgrade(ctx, NEXT_TAG)
            assert traffic.schema_revision(ctx) == "e2e_marker"
            traffic.health_through_service(ctx)
