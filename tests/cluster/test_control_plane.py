"""Smoke tests of the cluster tier's substrate: the control plane the Helm scenarios run on.

Each test proves one thing the scenarios rely on, against the real apiserver, admission,
controllers and scheduler, with kwok playing the nodes (see docs/ARCHITECTURE.md, "Cluster tier").
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from controlplane import ROOT, SCRIPTS, TOOLS_BIN, Cluster, CommandFailed, NotReady

FAIL = "heliox.test/fail"  # the marker our kwok stage fails pods on (scripts/control-plane/stages)

RESTRICTED_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def container(name: str = "app", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "registry.invalid/heliox/test:1",
        "securityContext": RESTRICTED_SECURITY,
        **extra,
    }


def pod(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [container()], **spec},
    }


def deployment(
    name: str, replicas: int, pod_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, **(pod_labels or {})}},
                "spec": {"containers": [container(ports=[{"containerPort": 8000}])]},
            },
        },
    }


def job(
    name: str,
    backoff_limit: int = 0,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"labels": labels or {}, "annotations": annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [container("migrate")]},
            },
            **spec,
        },
    }


def pods_of(cluster: Cluster, ns: str, selector: str) -> list[dict[str, Any]]:
    return cluster.items("pods", ns, selector)


def running_ready(p: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in p["status"].get("conditions", [])}
    return p["status"].get("phase") == "Running" and conds.get("Ready") == "True"


def ready_replicas(cluster: Cluster, ns: str, name: str, want: int) -> bool:
    st = cluster.get("deployment", name, ns)["status"]
    if st.get("readyReplicas", 0) != want or st.get("replicas", 0) != want:
        raise NotReady(
            f"deployment/{name}: {st.get('readyReplicas', 0)}/{st.get('replicas', 0)} ready, "
            f"want {want}"
        )
    return True


def job_condition(cluster: Cluster, ns: str, name: str) -> str:
    j = cluster.get("job", name, ns)
    for c in j["status"].get("conditions") or []:
        if c["status"] == "True" and c["type"] in ("Complete", "Failed"):
            return str(c["type"])
    raise NotReady(f"job/{name} not finished: {j['status']}")


# --- the control plane itself -----------------------------------------------------------------


def test_versions_and_api_groups(cluster: Cluster) -> None:
    """The server is the pinned release, and the API groups the chart uses are served."""
    pinned_line = re.search(
        r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)$",
        (SCRIPTS / "kube" / "go.mod").read_text(),
        re.M,
    )
    assert pinned_line, "k8s.io/kubernetes not required by scripts/control-plane/kube/go.mod"
    pinned = pinned_line[1]
    server = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert server["serverVersion"]["gitVersion"] == pinned
    assert server["clientVersion"]["gitVersion"] == pinned
    for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        out = subprocess.run(
            [str(TOOLS_BIN / component), "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert out.strip() == f"Kubernetes {pinned}", component
    etcd = subprocess.run(
        [str(TOOLS_BIN / "etcd"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"etcd Version: 3\.7\.\d+", etcd), etcd

    versions = set(cluster.kubectl("api-versions").stdout.split())
    for gv in (
        "apps/v1",
        "batch/v1",
        "autoscaling/v2",
        "policy/v1",
        "networking.k8s.io/v1",
        "rbac.authorization.k8s.io/v1",
        "storage.k8s.io/v1",
        "discovery.k8s.io/v1",
    ):
        assert gv in versions, f"{gv} not served: {sorted(versions)}"
    resources = cluster.kubectl("api-resources", "-o", "name").stdout.split()
    for r in (
        "ingresses.networking.k8s.io",
        "networkpolicies.networking.k8s.io",
        "poddisruptionbudgets.policy",
        "horizontalpodautoscalers.autoscaling",
        "cronjobs.batch",
    ):
        assert r in resources


def test_nodes_are_kwok_nodes(cluster: Cluster) -> None:
    nodes = cluster.items("nodes")
    assert [n["metadata"]["name"] for n in nodes] == cluster.info["nodes"]
    for n in nodes:
        assert cluster.condition(n, "Ready") == "True"
        assert n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert n["status"]["allocatable"]["cpu"] == "8"
    zones = {n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in nodes}
    assert len(zones) == min(3, len(nodes))


# --- admission -------------------------------------------------------------------------------


def test_pod_security_restricted_is_enforced(
    cluster: Cluster, restricted_namespace: str, namespace: str
) -> None:
    privileged = pod("privileged")
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}

    rejected = cluster.apply(privileged, restricted_namespace, check=False)
    assert rejected.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in rejected.stderr
    assert "privileged" in rejected.stderr

    cluster.apply(pod("restricted"), restricted_namespace)
    p = cluster.wait_for(
        "the restricted pod Running",
        lambda: running_ready(q := cluster.get("pod", "restricted", restricted_namespace)) and q,
    )
    assert p["status"]["podIP"]

    # Same pod, namespace without a level: accepted, so the rejection above was Pod Security's.
    cluster.apply(privileged, namespace)
    assert cluster.get("pod", "privileged", namespace)["spec"]["containers"][0]["securityContext"][
        "privileged"
    ]


def test_server_side_dry_run(cluster: Cluster, restricted_namespace: str) -> None:
    d = deployment("dry", 1)
    out = cluster.apply(d, restricted_namespace, ["--dry-run=server", "-o", "json"])
    assert (
        json.loads(out.stdout)["metadata"]["name"] == "dry"
    )  # defaulted and admitted by the server
    assert (
        cluster.kubectl(
            "get", "deployment", "dry", "-n", restricted_namespace, check=False
        ).returncode
        != 0
    )

    bad = deployment("bad", -1)
    result = cluster.apply(bad, restricted_namespace, ["--dry-run=server"], check=False)
    assert result.returncode != 0
    assert "spec.replicas" in result.stderr

    privileged = deployment("priv", 1)
    privileged["spec"]["template"]["spec"]["hostNetwork"] = True
    result = cluster.apply(privileged, restricted_namespace, ["--dry-run=server"], check=False)
    # Pod Security admission only warns on workload objects; the warning proves it ran in dry run.
    assert 'would violate PodSecurity "restricted:latest"' in result.stderr


# --- workloads -------------------------------------------------------------------------------


def test_deployment_runs_and_scales(cluster: Cluster, restricted_namespace: str) -> None:
    ns = restricted_namespace
    cluster.apply(deployment("web", 2), ns)
    cluster.wait_for("2 ready replicas", lambda: ready_replicas(cluster, ns, "web", 2))
    pods = pods_of(cluster, ns, "app=web")
    assert len(pods) == 2
    assert all(running_ready(p) for p in pods)
    assert {p["spec"]["nodeName"] for p in pods} <= set(cluster.info["nodes"])
    assert all(p["status"]["podIP"] for p in pods)

    cluster.kubectl("scale", "deployment/web", "--replicas=4", "-n", ns)
    cluster.wait_for("4 ready replicas", lambda: ready_replicas(cluster, ns, "web", 4))
    cluster.kubectl("scale", "deployment/web", "--replicas=1", "-n", ns)
    cluster.wait_for("1 ready replica", lambda: ready_replicas(cluster, ns, "web", 1))
    cluster.wait_for(
        "pods of the scaled-down replicas gone", lambda: len(pods_of(cluster, ns, "app=web")) == 1
    )
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s")

    # The garbage collector removes the ReplicaSet and pods of a deleted Deployment.
    cluster.kubectl("delete", "deployment", "web", "-n", ns)
    cluster.wait_for(
        "ReplicaSets and pods collected",
        lambda: not cluster.items("replicasets,pods", ns, "app=web"),
    )


def test_rollout_of_crashing_pods_stalls(cluster: Cluster, namespace: str) -> None:
    """Pods marked heliox.test/fail with restartPolicy Always crash-loop and never get Ready."""
    cluster.apply(deployment("crash", 1, pod_labels={FAIL: "true"}), namespace)
    p = cluster.wait_for(
        "a crash-looping pod",
        lambda: [
            q
            for q in pods_of(cluster, namespace, "app=crash")
            if (q["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting")
        ],
    )[0]
    status = p["status"]["containerStatuses"][0]
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert cluster.condition(p, "Ready") == "False"
    stalled = cluster.kubectl(
        "rollout", "status", "deployment/crash", "-n", namespace, "--timeout=3s", check=False
    )
    assert stalled.returncode != 0
    assert cluster.get("deployment", "crash", namespace)["status"].get("readyReplicas", 0) == 0


def test_job_completes_and_is_cleaned_up(cluster: Cluster, restricted_namespace: str) -> None:
    ns = restricted_namespace
    cluster.apply(job("migrate", ttlSecondsAfterFinished=3), ns)
    assert (
        cluster.wait_for("the Job to finish", lambda: job_condition(cluster, ns, "migrate"))
        == "Complete"
    )
    (p,) = pods_of(cluster, ns, "job-name=migrate")
    assert p["status"]["phase"] == "Succeeded"
    assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
    # ttl-after-finished controller
    cluster.wait_for(
        "the finished Job deleted by its TTL",
        lambda: cluster.kubectl("get", "job", "migrate", "-n", ns, check=False).returncode != 0,
    )


@pytest.mark.parametrize("how", ["label", "annotation"])
def test_job_fails_on_demand(cluster: Cluster, restricted_namespace: str, how: str) -> None:
    ns = restricted_namespace
    marker = {FAIL: "true"}
    spec = job(
        "migrate",
        backoff_limit=1,
        **({"labels": marker} if how == "label" else {"annotations": marker}),
    )
    cluster.apply(spec, ns)
    assert (
        cluster.wait_for("the Job to finish", lambda: job_condition(cluster, ns, "migrate"))
        == "Failed"
    )
    j = cluster.get("job", "migrate", ns)
    assert j["status"].get("failed") == 2  # backoffLimit 1: two tries
    assert not j["status"].get("succeeded")
    for p in pods_of(cluster, ns, "job-name=migrate"):
        assert p["status"]["phase"] == "Failed"
        term = p["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (term["exitCode"], term["reason"]) == (1, "Error")

    # Unmarked, the same Job succeeds: the marker, not the Job, made it fail.
    cluster.apply(job("control"), ns)
    assert (
        cluster.wait_for("the control Job", lambda: job_condition(cluster, ns, "control"))
        == "Complete"
    )


def test_pdb_blocks_eviction_beyond_its_budget(cluster: Cluster, namespace: str) -> None:
    ns = namespace
    # Bare pods: nothing replaces an evicted one, so the budget stays spent.
    cluster.apply([pod("db-0", {"app": "db"}), pod("db-1", {"app": "db"})], ns)
    cluster.wait_for(
        "both pods ready",
        lambda: len([p for p in pods_of(cluster, ns, "app=db") if running_ready(p)]) == 2,
    )
    cluster.apply(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "db"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
        },
        ns,
    )
    cluster.wait_for(
        "the disruption controller's verdict",
        lambda: cluster.get("pdb", "db", ns)["status"].get("disruptionsAllowed") == 1,
    )

    def evict(name: str) -> subprocess.CompletedProcess[str]:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": ns},
        }
        return cluster.kubectl(
            "create",
            "--raw",
            f"/api/v1/namespaces/{ns}/pods/{name}/eviction",
            "-f",
            "-",
            input=json.dumps(body),
            check=False,
        )

    first = evict("db-0")
    assert first.returncode == 0, first.stderr
    second = evict("db-1")
    assert second.returncode != 0
    assert "TooManyRequests" in second.stderr
    assert "disruption budget" in second.stderr
    cluster.wait_for(
        "the evicted pod gone",
        lambda: cluster.kubectl("get", "pod", "db-0", "-n", ns, check=False).returncode != 0,
    )
    assert cluster.get("pod", "db-1", ns)["metadata"].get("deletionTimestamp") is None


def test_hpa_v2_is_accepted_and_reconciled(cluster: Cluster, namespace: str) -> None:
    ns = namespace
    d = deployment("api", 2)
    d["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "250m"}}
    cluster.apply(d, ns)
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "api"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
            "minReplicas": 2,
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }
    cluster.apply(hpa, ns)
    got = cluster.get("horizontalpodautoscalers.v2.autoscaling", "api", ns)
    assert got["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    # The horizontalpodautoscaling controller picks it up (there is no metrics API, so it reports
    # that it cannot compute a replica count: the object is handled, not ignored).
    conds = cluster.wait_for(
        "HPA conditions from the controller",
        lambda: cluster.get("horizontalpodautoscalers.v2.autoscaling", "api", ns)["status"].get(
            "conditions"
        ),
        timeout=60,
    )
    assert {c["type"] for c in conds} >= {"AbleToScale"}


def test_statefulset_gets_a_bound_volume(cluster: Cluster, restricted_namespace: str) -> None:
    ns = restricted_namespace
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "pg"},
        "spec": {
            "serviceName": "pg",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "pg"}},
            "template": {
                "metadata": {"labels": {"app": "pg"}},
                "spec": {
                    "containers": [
                        container(
                            "postgres",
                            volumeMounts=[
                                {"name": "data", "mountPath": "/var/lib/postgresql/data"}
                            ],
                        )
                    ]
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        },
    }
    cluster.apply(sts, ns)
    pvc = cluster.wait_for(
        "the PVC Bound",
        lambda: (c := cluster.get("pvc", "data-pg-0", ns))["status"].get("phase") == "Bound" and c,
    )
    assert (
        pvc["spec"]["storageClassName"] == cluster.info["storage_class"]
    )  # set by DefaultStorageClass admission
    pv = cluster.get("pv", pvc["spec"]["volumeName"])
    assert pv["spec"]["claimRef"]["name"] == "data-pg-0"
    assert pv["status"]["phase"] == "Bound"
    p = cluster.wait_for(
        "pg-0 Running", lambda: running_ready(q := cluster.get("pod", "pg-0", ns)) and q
    )
    (data,) = [v for v in p["spec"]["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == "data-pg-0"

    # Deleting the claim releases and deletes the volume (reclaimPolicy Delete).
    cluster.kubectl("delete", "statefulset", "pg", "-n", ns)
    cluster.wait_for(
        "pg-0 gone",
        lambda: cluster.kubectl("get", "pod", "pg-0", "-n", ns, check=False).returncode != 0,
    )
    cluster.kubectl("delete", "pvc", "data-pg-0", "-n", ns)
    cluster.wait_for(
        "the PV deleted",
        lambda: cluster.kubectl("get", "pv", pv["metadata"]["name"], check=False).returncode != 0,
    )


def test_service_gets_endpoints(cluster: Cluster, namespace: str) -> None:
    ns = namespace
    cluster.apply(deployment("web", 2), ns)
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]},
        },
        ns,
    )
    cluster.wait_for("2 ready replicas", lambda: ready_replicas(cluster, ns, "web", 2))
    pod_ips = {p["status"]["podIP"] for p in pods_of(cluster, ns, "app=web")}

    def endpoint_ips() -> set[str]:
        slices = cluster.items(
            "endpointslices.discovery.k8s.io", ns, "kubernetes.io/service-name=web"
        )
        ips = {
            a
            for s in slices
            for e in s.get("endpoints") or []
            if e["conditions"].get("ready")
            for a in e["addresses"]
        }
        if ips != pod_ips:
            raise NotReady(f"endpoints {ips} != pod IPs {pod_ips}")
        return ips

    assert cluster.wait_for("EndpointSlices with both pods", endpoint_ips) == pod_ips
    svc = cluster.get("service", "web", ns)
    assert svc["spec"]["clusterIP"].startswith("10.96.")
    # Networking objects are accepted too (nothing enforces them here; kind's tier has a CNI).
    cluster.apply(
        [
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "web"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"ports": [{"port": 8000}]}],
                },
            },
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "web"},
                "spec": {
                    "rules": [
                        {
                            "host": "heliox.test",
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {
                                            "service": {"name": "web", "port": {"number": 80}}
                                        },
                                    }
                                ]
                            },
                        }
                    ]
                },
            },
        ],
        ns,
    )


# --- Helm end to end on the substrate --------------------------------------------------------

TINY_CHART = {
    "Chart.yaml": """
        apiVersion: v2
        name: tiny
        version: 0.1.0
        appVersion: "1"
    """,
    "values.yaml": """
        failHook: false
        replicas: 2
    """,
    "templates/all.yaml": """
        {{- $sc := dict "runAsNonRoot" true "runAsUser" 10001 "allowPrivilegeEscalation" false }}
        {{- $_ := set $sc "capabilities" (dict "drop" (list "ALL")) }}
        {{- $_ := set $sc "seccompProfile" (dict "type" "RuntimeDefault") }}
        apiVersion: batch/v1
        kind: Job
        metadata:
          name: {{ .Release.Name }}-migrate
          annotations:
            helm.sh/hook: pre-install,pre-upgrade
            helm.sh/hook-delete-policy: before-hook-creation
        spec:
          backoffLimit: 0
          template:
            metadata:
              labels:
                {{- if .Values.failHook }}
                heliox.test/fail: "true"
                {{- end }}
            spec:
              restartPolicy: Never
              containers:
              - name: migrate
                image: registry.invalid/tiny:1
                securityContext: {{ toJson $sc }}
        ---
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {{ .Release.Name }}-web
        spec:
          replicas: {{ .Values.replicas }}
          selector:
            matchLabels: {app: {{ .Release.Name }}-web}
          template:
            metadata:
              labels: {app: {{ .Release.Name }}-web}
            spec:
              containers:
              - name: web
                image: registry.invalid/tiny:1
                ports: [{containerPort: 8000}]
                readinessProbe: {httpGet: {path: /health, port: 8000}}
                securityContext: {{ toJson $sc }}
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: {{ .Release.Name }}-web
        spec:
          selector: {app: {{ .Release.Name }}-web}
          ports: [{port: 80, targetPort: 8000}]
    """,
}


@pytest.fixture(scope="module")
def tiny_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("chart") / "tiny"
    for name, text in TINY_CHART.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(textwrap.dedent(text).lstrip())
    return d


@pytest.mark.parametrize("helm", ["helm", "helm3"])
def test_helm_install_wait_and_failing_hook(
    cluster: Cluster, restricted_namespace: str, tiny_chart: Path, helm: str
) -> None:
    subprocess.run([str(ROOT / "scripts" / "tools.sh"), helm], check=True, capture_output=True)
    ns = restricted_namespace
    wait = ["--wait", "--wait-for-jobs", "--timeout", "90s"]
    cluster.run([helm, "install", "ok", str(tiny_chart), "-n", ns, *wait])
    assert cluster.get("deployment", "ok-web", ns)["status"]["readyReplicas"] == 2
    assert cluster.items("endpointslices.discovery.k8s.io", ns, "kubernetes.io/service-name=ok-web")
    assert "STATUS: deployed" in cluster.run([helm, "status", "ok", "-n", ns]).stdout

    # The pre-upgrade hook fails on demand: the upgrade fails, the release keeps serving.
    started = time.monotonic()
    with pytest.raises(CommandFailed) as failed:
        cluster.run(
            [
                helm,
                "upgrade",
                "ok",
                str(tiny_chart),
                "-n",
                ns,
                "--set",
                "failHook=true",
                "--set",
                "replicas=3",
                *wait,
            ]
        )
    assert time.monotonic() - started < 80, "the hook failure should be reported, not time out"
    assert "pre-upgrade hooks failed" in failed.value.stderr, failed.value.stderr
    assert cluster.get("deployment", "ok-web", ns)["spec"]["replicas"] == 2  # never applied
    history = json.loads(cluster.run([helm, "history", "ok", "-n", ns, "-o", "json"]).stdout)
    assert [(r["revision"], r["status"]) for r in history] == [(1, "deployed"), (2, "failed")]


def running(pid: int) -> bool:
    try:  # a zombie (exited, not yet reaped by its parent) is not running
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_teardown_leaves_nothing_behind(cluster: Cluster) -> None:
    """A second, one-node control plane (the `cluster` fixture made sure the binaries exist):
    when its owner dies, the watcher stops every process and removes the state directory."""
    owner = subprocess.Popen(["sleep", "600"])
    state = Path(tempfile.mkdtemp(prefix="heliox-cluster-teardown-"))
    cmd = [sys.executable, str(SCRIPTS / "cluster.py")]
    try:
        subprocess.run(
            [*cmd, "up", "--state-dir", str(state), "--nodes", "1", "--owner-pid", str(owner.pid)],
            check=True,
            capture_output=True,
            text=True,
            timeout=180,
        )
        pids = [int(f.read_text()) for f in (state / "pids").iterdir()]
        assert len(pids) == 6  # five components and the watcher
        assert all(running(p) for p in pids)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (state.exists() or any(running(p) for p in pids)):
            time.sleep(0.5)
        assert not state.exists()
        assert not [p for p in pids if running(p)]
    finally:
        owner.kill()
        subprocess.run([*cmd, "down", "--state-dir", str(state)], capture_output=True, check=False)
