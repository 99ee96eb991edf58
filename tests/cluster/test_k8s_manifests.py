"""k8s/ overlays against Kubernetes itself: kustomize (kubectl's own) builds them, they are the
chart's objects, and they apply to the cluster tier's control plane in a namespace labelled as
k8s/namespace.yaml labels it (Pod Security `restricted` enforced, audited, warned).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
from typing import Any

import pytest
import yaml
from controlplane import ROOT, Cluster

from tests.tooling import run_helm, tool

K8S = ROOT / "k8s"
OVERLAYS = ["dev", "production"]
MANAGED_BY = "app.kubernetes.io/managed-by"


def kustomize(overlay: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay}:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def chart(overlay: str) -> list[dict[str, Any]]:
    """The chart as the overlay claims to be: base.yaml + <overlay>.yaml, as k8s-render renders."""
    proc = run_helm(
        "helm", "template", "heliox", str(ROOT / "charts" / "heliox"),
        "--namespace", "heliox", "--kube-version", "1.37.0",
        "-f", str(K8S / "values" / "base.yaml"), "-f", str(K8S / "values" / f"{overlay}.yaml"),
    )  # fmt: skip
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_id(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def without_managed_by(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_managed_by(v) for k, v in value.items() if k != MANAGED_BY}
    if isinstance(value, list):
        return [without_managed_by(v) for v in value]
    return value


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kustomize(request.param)


def test_overlay_is_the_chart_with_its_values(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    """Object for object, the overlay is what the chart renders with k8s/values/base.yaml +
    <overlay>.yaml; only the managed-by label differs (kustomize, not Helm)."""
    name, built = overlay
    ours, helms = by_id(built), by_id(chart(name))
    assert sorted(ours) == sorted(helms)
    for key, obj in ours.items():
        assert without_managed_by(obj) == without_managed_by(helms[key]), key
        labels = obj["metadata"].get("labels") or {}
        assert labels.get(MANAGED_BY) == "kustomize", key


def test_dev_overlay_is_small() -> None:
    objects = by_id(kustomize("dev"))
    deployment = objects[("Deployment", "heliox")]
    assert deployment["spec"]["replicas"] == 1
    assert ("PodDisruptionBudget", "heliox") not in objects, "one pod: nothing to budget"
    assert ("HorizontalPodAutoscaler", "heliox") not in objects
    (claim,) = objects[("StatefulSet", "heliox-postgresql")]["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_production_overlay_is_highly_available() -> None:
    objects = by_id(kustomize("production"))
    deployment = objects[("Deployment", "heliox")]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = objects[("HorizontalPodAutoscaler", "heliox")]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "heliox",
    }
    assert hpa["spec"]["minReplicas"] >= 3
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = objects[("PodDisruptionBudget", "heliox")]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    policies = [o for (kind, _), o in objects.items() if kind == "NetworkPolicy"]
    api_policies = [
        p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    ]
    assert api_policies, "the API pods are covered by a NetworkPolicy"
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == ["topology.kubernetes.io/zone"]


# --- against the control plane ----------------------------------------------------------------


def namespace_labels() -> dict[str, str]:
    labels: dict[str, str] = yaml.safe_load((K8S / "namespace.yaml").read_text())["metadata"][
        "labels"
    ]
    return labels


def into(namespace: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects moved to another namespace (as a user's `namespace:` overlay would)."""
    moved = copy.deepcopy(docs)
    for d in moved:
        if "namespace" in d["metadata"]:
            d["metadata"]["namespace"] = namespace
    return moved


def pods_from_templates(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A Pod for every pod template: Pod Security enforces on Pods (it only warns on the
    workloads that make them)."""
    pods = []
    for d in docs:
        template = (d.get("spec") or {}).get("template")
        if template:
            spec = copy.deepcopy(template["spec"])
            # A StatefulSet's claim templates become the pod's volumes (claim <name>-<set>-0).
            for claim in d["spec"].get("volumeClaimTemplates", []):
                name = claim["metadata"]["name"]
                spec.setdefault("volumes", []).append(
                    {
                        "name": name,
                        "persistentVolumeClaim": {"claimName": f"{name}-{d['metadata']['name']}-0"},
                    }
                )
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{d['kind'].lower()}-{d['metadata']['name']}"[:63],
                        "labels": template["metadata"].get("labels", {}),
                    },
                    "spec": spec,
                }
            )
    return pods


@pytest.fixture
def labelled_namespace(namespace_factory: Any) -> str:
    """A fresh namespace carrying k8s/namespace.yaml's labels."""
    name: str = namespace_factory(labels=namespace_labels())
    return name


def test_namespace_manifest_applies(cluster: Cluster) -> None:
    out = cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        str(K8S / "namespace.yaml"),
        "-o",
        "json",
    )
    ns = json.loads(out.stdout)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_overlay_applies_server_side_in_a_restricted_namespace(
    cluster: Cluster, labelled_namespace: str, overlay: tuple[str, list[dict[str, Any]]]
) -> None:
    name, built = overlay
    docs = into(labelled_namespace, built)
    text = "\n---\n".join(json.dumps(d) for d in docs)
    result = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "-n", labelled_namespace, "-f", "-",
        input=text, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{name}:\n{result.stderr}"
    assert "PodSecurity" not in result.stderr, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(docs), result.stdout

    # Admission of a Pod looks its ServiceAccount up: those go in for real first.
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert accounts
    cluster.apply(accounts, labelled_namespace)
    pods = pods_from_templates(docs)
    assert {p["metadata"]["name"] for p in pods} >= {
        "deployment-heliox",
        "statefulset-heliox-postgresql",
        "statefulset-heliox-redis",
    }
    assert any(p["metadata"]["name"].startswith("job-heliox-migrate-") for p in pods)
    for p in pods:
        admitted = cluster.apply(p, labelled_namespace, ["--dry-run=server"], check=False)
        assert admitted.returncode == 0, f"{p['metadata']['name']}:\n{admitted.stderr}"


def test_dev_overlay_runs(cluster: Cluster, labelled_namespace: str) -> None:
    """Applied for real with the Secrets the README creates (two passwords, the bootstrap API
    key): the migration Job completes, the stores and the API become ready (kwok plays the
    kubelet), the API reading its key from that Secret."""
    ns = labelled_namespace
    api_key = f"hx_{os.urandom(6).hex()}_{os.urandom(32).hex()}"  # the README's openssl line
    for secret, data in (
        ("heliox-postgresql-auth", {"password": None, "postgres-password": None}),
        ("heliox-redis-auth", {"redis-password": None}),
        ("heliox-bootstrap-key", {"api-key": api_key}),
    ):
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret},
                "data": {
                    k: base64.b64encode(v.encode() if v else os.urandom(18)).decode()
                    for k, v in data.items()
                },
            },
            ns,
        )
    docs = into(ns, kustomize("dev"))
    cluster.kubectl(
        "apply", "--server-side", "-n", ns, "-f", "-",
        input="\n---\n".join(json.dumps(d) for d in docs),
    )  # fmt: skip
    (job,) = [d["metadata"]["name"] for d in docs if d["kind"] == "Job"]
    cluster.kubectl("wait", "--for=condition=complete", f"job/{job}", "-n", ns, "--timeout=120s")
    for sts in ("heliox-postgresql", "heliox-redis"):
        cluster.kubectl(
            "rollout", "status", f"statefulset/{sts}", "-n", ns, "--timeout=120s", timeout=150
        )
    cluster.kubectl(
        "wait", "--for=condition=available", "deployment/heliox", "-n", ns, "--timeout=120s",
        timeout=150,
    )  # fmt: skip
    api = cluster.get("deployment", "heliox", ns)["spec"]["template"]["spec"]["containers"][0]
    [key_env] = [e for e in api["env"] if e["name"] == "BOOTSTRAP_API_KEY"]
    assert key_env["valueFrom"]["secretKeyRef"] == {
        "name": "heliox-bootstrap-key",
        "key": "api-key",
    }
    claims = {c["metadata"]["name"]: c for c in cluster.items("pvc", ns)}
    assert {c["status"]["phase"] for c in claims.values()} == {"Bound"}
    (database,) = [c for name, c in claims.items() if "postgresql" in name]
    assert database["spec"]["resources"]["requests"]["storage"] == "1Gi"
