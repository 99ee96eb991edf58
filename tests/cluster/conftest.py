"""Fixtures of the cluster tier: one real control plane per session, a fresh namespace per test.

    def test_something(cluster, namespace):
        cluster.apply(manifest, namespace)
        cluster.kubectl("scale", "deployment/web", "--replicas=3", "-n", namespace)
        cluster.run(["helm", "install", ...])          # KUBECONFIG and .tools/bin are set
        cluster.wait_for("3 ready pods", lambda: ...)
        cluster.progress("upgraded")                    # one line on the terminal

`cluster` (session) is a `controlplane.Cluster`. The binaries are built on first use (needs Go;
`make cluster-tools` does it ahead, with its output shown). Set HELIOX_CLUSTER_REUSE=1 to run
against the cluster of `make cluster-up` instead of starting one (faster while iterating).
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Callable, Generator
from pathlib import Path

import pytest
from controlplane import (
    Cluster,
    binaries_present,
    build_binaries,
    go_available,
    reuse_control_plane,
    start_control_plane,
)
from kindcluster import kind_test_cluster
from scenarios.kindenv import find_tool
from scenarios.kindenv import missing as e2e_missing

from tests.progress import terminal_writer


@pytest.fixture(scope="session")
def cluster_progress(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Writes one line to the terminal, outside pytest's output capture."""
    return terminal_writer(pytestconfig, "cluster")


@pytest.fixture(scope="session")
def cluster(cluster_progress: Callable[[str], None]) -> Generator[Cluster, None, None]:
    if os.environ.get("HELIOX_CLUSTER_REUSE") == "1":
        default = Path(tempfile.gettempdir()) / "heliox-cluster"  # as cluster.py's
        state = Path(os.environ.get("HELIOX_CLUSTER_DIR", default))
        if not (state / "cluster.json").exists():
            pytest.fail(f"HELIOX_CLUSTER_REUSE=1 but no cluster in {state}: run `make cluster-up`")
        cluster_progress(f"reusing the cluster in {state}")
        yield reuse_control_plane(state, cluster_progress)
        return
    if go_available():
        build_binaries(cluster_progress)
    elif not binaries_present():
        pytest.skip(
            "the cluster tier needs Go (>= 1.26) to build its pinned control plane "
            "(etcd, Kubernetes, kwok); `go` is not on PATH"
        )
    c = start_control_plane(cluster_progress, owner_pid=os.getpid())
    try:
        yield c
    finally:
        cluster_progress("tearing the control plane down")
        c.stop()


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what will not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The kind tier (`-m e2e`) skips as a whole, with one summary line, when this machine lacks
    Docker, kind, kubectl or helm; the probe runs only when e2e tests were selected."""
    e2e = [i for i in items if i.get_closest_marker("e2e")]
    if not e2e:
        return
    reason = e2e_missing()
    if reason:
        for item in e2e:
            item.add_marker(pytest.mark.skip(reason=reason))


_namespaces = pytest.StashKey[tuple[Cluster, list[str]]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """When a test fails, its report shows what its namespaces held (pods, events, ...)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and _namespaces in item.stash:
        cluster, names = item.stash[_namespaces]
        for ns in names:
            dump = cluster.kubectl("get", "all,pvc,events", "-n", ns, "-o", "wide", check=False)
            report.sections.append((f"namespace {ns}", dump.stdout + dump.stderr))


@pytest.fixture
def namespace_factory(
    cluster: Cluster, request: pytest.FixtureRequest
) -> Generator[Callable[..., str], None, None]:
    """make(labels=None, prefix=None) -> a new namespace named after the test; all are deleted
    afterwards (without waiting). When the test fails, its report shows their content."""
    made: list[str] = []
    request.node.stash[_namespaces] = (cluster, made)
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().removeprefix("test_"))[:40].strip(
        "-"
    )

    def make(labels: dict[str, str] | None = None, prefix: str | None = None) -> str:
        name = f"{(prefix or base)[:40].strip('-')}-{uuid.uuid4().hex[:6]}"
        made.append(cluster.create_namespace(name, labels))
        return name

    yield make
    for ns in made:
        cluster.delete_namespace(ns)


@pytest.fixture
def report_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Callable[[str], None]:
    """report_namespace(ns): when this test fails, its report shows that namespace's content too
    (for namespaces that outlive one test, made by module-scoped fixtures)."""

    def add(ns: str) -> None:
        if _namespaces not in request.node.stash:
            request.node.stash[_namespaces] = (cluster, [])
        request.node.stash[_namespaces][1].append(ns)

    return add


@pytest.fixture
def namespace(namespace_factory: Callable[..., str]) -> str:
    """A fresh namespace for this test (no Pod Security level enforced)."""
    return namespace_factory()


@pytest.fixture
def restricted_namespace(namespace_factory: Callable[..., str]) -> str:
    """A fresh namespace enforcing Pod Security `restricted`, as the chart's users run it."""
    return namespace_factory(
        labels={
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }
    )


@pytest.fixture(scope="session")
def kind_cluster(cluster_progress: Callable[[str], None]) -> Generator[Cluster, None, None]:
    """The kind tier's cluster (kindcluster.kind_test_cluster), shared by its modules."""
    lacking = e2e_missing()  # pytest_collection_modifyitems skips every e2e test first
    if lacking:
        pytest.skip(lacking)
    kind, kubectl = find_tool("kind"), find_tool("kubectl")
    assert kind
    assert kubectl
    with kind_test_cluster(kind, kubectl, cluster_progress) as c:
        yield c
