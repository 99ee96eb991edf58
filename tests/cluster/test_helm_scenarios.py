"""Cluster tier: the chart's Helm scenarios on the kwok control plane, under Helm 4 and Helm 3.

The scenario steps live in tests/cluster/scenarios/ and are the ones the kind tier
(test_e2e_kind.py) runs too. Installs are shared: one release per class and Helm version walks
through its life, one test per step, in order; when a step fails, the steps after it are
skipped naming it (in CI a skip is a failure, see tests/conftest.py).

What is real here and what kwok simulates: docs/ARCHITECTURE.md, "Cluster tier". Each step's
docstring says what it cannot see on kwok (init containers, the test pod's HTTP checks, traffic);
the kind tier checks those.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest
from controlplane import ROOT, Cluster
from scenarios import (
    Context,
    Walk,
    apikeys,
    hooktime,
    isolation,
    lifecycle,
    operations,
    variants,
)

HELMS = [pytest.param("helm", id="helm4"), pytest.param("helm3", id="helm3")]
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
IMAGE = ("heliox", "scenario-1")  # never pulled: kwok starts no container
Rel = tuple[Context, Walk]


@pytest.fixture(scope="module", params=HELMS)
def helm_bin(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    subprocess.run([str(ROOT / "scripts" / "tools.sh"), name], check=True, capture_output=True)
    return name


def release(cluster: Cluster, helm_bin: str, what: str) -> Iterator[Rel]:
    version = "helm4" if helm_bin == "helm" else helm_bin
    ns = cluster.create_namespace(f"{what}-{version}-{uuid.uuid4().hex[:6]}", RESTRICTED)
    ctx = Context(
        cluster=cluster, namespace=ns, release="hx", helm=helm_bin, image=IMAGE, timeout="120s"
    )
    try:
        yield ctx, Walk(f"{what} under {version}")
    finally:
        cluster.delete_namespace(ns)


@pytest.fixture(scope="module")
def lifecycle_release(cluster: Cluster, helm_bin: str) -> Iterator[Rel]:
    yield from release(cluster, helm_bin, "lifecycle")


@pytest.fixture(scope="module")
def external_release(cluster: Cluster, helm_bin: str) -> Iterator[Rel]:
    yield from release(cluster, helm_bin, "external")


@pytest.fixture(scope="module")
def gitops_release(cluster: Cluster, helm_bin: str) -> Iterator[Rel]:
    yield from release(cluster, helm_bin, "gitops")


@pytest.fixture(scope="module")
def hooktime_release(cluster: Cluster, helm_bin: str) -> Iterator[Rel]:
    yield from release(cluster, helm_bin, "hooktime")


def _shown(rel: Rel, report_namespace: Callable[[str], None]) -> Rel:
    report_namespace(rel[0].namespace)
    return rel


@pytest.fixture
def life(lifecycle_release: Rel, report_namespace: Callable[[str], None]) -> Rel:
    return _shown(lifecycle_release, report_namespace)


@pytest.fixture
def external(external_release: Rel, report_namespace: Callable[[str], None]) -> Rel:
    return _shown(external_release, report_namespace)


@pytest.fixture
def gitops(gitops_release: Rel, report_namespace: Callable[[str], None]) -> Rel:
    return _shown(gitops_release, report_namespace)


@pytest.fixture
def hooktime_rel(hooktime_release: Rel, report_namespace: Callable[[str], None]) -> Rel:
    return _shown(hooktime_release, report_namespace)


class TestLifecycle:
    """The default chart (bundled PostgreSQL and Redis) from install to uninstall."""

    def test_01_install_default_in_restricted_namespace(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("install", pytest.skip):
            lifecycle.install(ctx)
            lifecycle.remember_passwords(ctx)
            apikeys.remember_bootstrap_key(ctx)

    def test_02_install_time_migration_job_gates_api_pods(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("install-time migration", pytest.skip):
            lifecycle.install_migration_gates_pods(ctx)

    def test_02b_pod_security_restricted_admitted_every_pod(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("Pod Security", pytest.skip):
            isolation.pod_security_admitted_every_pod(ctx)

    def test_03_upgrade_runs_pre_upgrade_hook_before_new_pods(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("upgrade with a new image tag", pytest.skip):
            lifecycle.upgrade_runs_hook_first(ctx, "scenario-2")

    def test_04_generated_passwords_identical_after_two_upgrades(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("second upgrade", pytest.skip):
            lifecycle.upgrade_runs_hook_first(ctx, "scenario-2", {"config": {"logLevel": "DEBUG"}})
            lifecycle.passwords_unchanged(ctx, min_upgrades=2)
            apikeys.bootstrap_key_unchanged(ctx)

    def test_05_failing_migration_hook_fails_upgrade_old_pods_stay(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("failing hook", pytest.skip):
            lifecycle.failing_hook_keeps_old_pods(ctx, "scenario-3-broken")

    def test_06_rollback_after_failed_upgrade(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("rollback", pytest.skip):
            lifecycle.rollback(ctx)

    def test_07_kubectl_scale_reaches_replicas(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("kubectl scale", pytest.skip):
            operations.kubectl_scale(ctx, 3)

    def test_08_pdb_refuses_eviction_beyond_budget(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("eviction", pytest.skip):
            operations.pdb_refuses_eviction(ctx)

    def test_09_hpa_accepted(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("HPA", pytest.skip):
            operations.hpa_accepted(ctx)
            lifecycle.passwords_unchanged(ctx, min_upgrades=3)

    def test_10_enabling_hpa_keeps_capacity(self, life: Rel) -> None:
        """Under Helm 3 this needs the chart's `lookup` of the live count: its three-way merge
        removes `spec.replicas` when the manifest leaves it to the HPA, dropping the Deployment
        to 1 pod. Helm 4's server-side apply leaves the field alone either way."""
        ctx, walk = life
        with walk.step("HPA capacity", pytest.skip):
            operations.hpa_switch_kept_capacity(ctx)

    def test_11_helm_test(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("helm test", pytest.skip):
            operations.helm_test_passes(ctx)

    def test_12_uninstall_leaves_only_documented_objects(self, life: Rel) -> None:
        ctx, walk = life
        with walk.step("uninstall", pytest.skip):
            lifecycle.uninstall_leaves_only_documented(ctx)


class TestExternalStores:
    """`postgresql.enabled=false`, `redis.enabled=false`, external hosts; credentials changed
    by upgrades. No pod connects to the hosts on kwok; the kind tier gives them real servers."""

    def test_01_install_with_external_database_and_redis(self, external: Rel) -> None:
        ctx, walk = external
        with walk.step("install", pytest.skip):
            variants.install_external(
                ctx, "pg.example.internal", "redis.example.internal", "first p@ss", "r-pass"
            )

    def test_02_new_password_reaches_the_migration_hook(self, external: Rel) -> None:
        ctx, walk = external
        with walk.step("new password", pytest.skip):
            variants.upgrade_with_new_password(ctx, "second p@ss/+")

    def test_03_existing_secret_reaches_the_migration_hook(self, external: Rel) -> None:
        ctx, walk = external
        with walk.step("existing Secret", pytest.skip):
            variants.upgrade_to_existing_secret(ctx, "hx-db-credentials", "second p@ss/+")

    def test_04_uninstall_leaves_only_documented_objects(self, external: Rel) -> None:
        ctx, walk = external
        with walk.step("uninstall", pytest.skip):
            lifecycle.uninstall_leaves_only_documented(ctx, bundled=False)


class TestGitOpsMode:
    def test_refuses_a_generated_bootstrap_key(self, gitops: Rel) -> None:
        ctx, walk = gitops
        with walk.step("gitops key refusal", pytest.skip):
            stores = variants.gitops_store_secrets(ctx)
            ctx.state["gitops_stores"] = stores
            apikeys.gitops_refuses_a_generated_key(ctx, stores)

    def test_install_and_upgrade_without_helm_hooks(self, gitops: Rel) -> None:
        ctx, walk = gitops
        with walk.step("gitops", pytest.skip):
            variants.gitops_install_and_upgrade(ctx, "scenario-2")


class TestHookTimeObjects:
    """The pre-upgrade hook runs before the release's objects are made or updated: what it reads
    is made for it first (scenarios/hooktime.py)."""

    def test_01_install_without_service_account_or_policies(self, hooktime_rel: Rel) -> None:
        ctx, walk = hooktime_rel
        with walk.step("install", pytest.skip):
            hooktime.install_without_service_account_or_policies(ctx)

    def test_02_upgrade_turning_them_on_runs_the_hook(self, hooktime_rel: Rel) -> None:
        ctx, walk = hooktime_rel
        with walk.step("turn on ServiceAccount and policies", pytest.skip):
            hooktime.upgrade_turning_on_service_account_and_policies(ctx, "scenario-2")

    def test_03_next_upgrade_leaves_the_service_account_alone(self, hooktime_rel: Rel) -> None:
        ctx, walk = hooktime_rel
        with walk.step("existing ServiceAccount", pytest.skip):
            hooktime.upgrade_keeps_an_existing_service_account(ctx, "scenario-3")
