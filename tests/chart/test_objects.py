"""Everything around the Deployment: labels, Service, Ingress, HTTPRoute, HPA, PDB,
NetworkPolicy, ServiceMonitor, ServiceAccount, the `helm test` pod, NOTES.txt."""

from __future__ import annotations

import pytest

from .helpers import (
    CHART,
    FULLNAME,
    NAMESPACE,
    container,
    install_notes,
    pod_spec,
    render,
    values_files,
)

API_SELECTOR = {
    "app.kubernetes.io/name": "heliox",
    "app.kubernetes.io/instance": "rel",
    "app.kubernetes.io/component": "api",
}
STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}


@pytest.mark.parametrize("values", values_files())
def test_every_object_has_the_standard_labels(helm: str, values: str) -> None:
    for upgrade in (False, True):
        for doc in render(helm, values, is_upgrade=upgrade):
            labels = doc["metadata"].get("labels", {})
            missing = STANDARD_LABELS - set(labels)
            assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
            assert labels["app.kubernetes.io/instance"] == "rel"
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["app.kubernetes.io/part-of"] == "heliox"
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_common_labels_reach_every_heliox_object(helm: str) -> None:
    for doc in render(helm, "everything"):
        if doc["metadata"]["labels"]["app.kubernetes.io/name"] == "heliox":
            assert doc["metadata"]["labels"]["team"] == "platform", doc["kind"]


def test_workload_selectors_use_only_name_instance_component(helm: str) -> None:
    for doc in render(helm, "everything"):
        if doc["kind"] in ("Deployment", "StatefulSet"):
            assert set(doc["spec"]["selector"]["matchLabels"]) == {
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/component",
            }
        if doc["kind"] == "Service":
            assert set(doc["spec"]["selector"]) == {
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/component",
            }


def test_version_label_follows_the_image_tag(helm: str) -> None:
    deployment = render(helm, sets={"image.tag": "1.2.3+build.4"}).get("Deployment")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "1.2.3_build.4"


def test_fullname_rules(helm: str) -> None:
    assert render(helm).get("Deployment")["metadata"]["name"] == "rel-heliox"
    named = render(helm, sets={"fullnameOverride": "api"})
    assert named.get("Deployment")["metadata"]["name"] == "api"


# Pod Security Standards, "restricted" profile (v1.30+), checked on every pod template.
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def _restricted_violations(spec: dict) -> list[str]:
    problems = []
    problems += [key for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    pod_sc = spec.get("securityContext", {})
    if pod_sc.get("sysctls"):
        problems.append("sysctls")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    for c in containers:
        sc = c.get("securityContext", {})
        name = c["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities added")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccomp {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


@pytest.mark.parametrize("values", values_files())
def test_every_pod_meets_pod_security_restricted(helm: str, values: str) -> None:
    checked = 0
    for upgrade in (False, True):
        for doc in render(helm, values, is_upgrade=upgrade):
            if doc["kind"] in ("Deployment", "StatefulSet", "Job", "Pod"):
                problems = _restricted_violations(pod_spec(doc))
                assert not problems, f"{doc['kind']}/{doc['metadata']['name']}: {problems}"
                checked += 1
    assert checked >= 4


def test_the_restricted_check_can_fail() -> None:
    spec = pod_spec(
        render("helm", sets={"containerSecurityContext.runAsNonRoot": False}).get("Deployment")
    )
    spec["securityContext"].pop("runAsNonRoot")
    assert "api: runAsNonRoot" in _restricted_violations(spec)


# -- Service, Ingress, HTTPRoute -----------------------------------------------------------------


def test_service(helm: str) -> None:
    svc = render(helm).get("Service", FULLNAME)
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == API_SELECTOR


def test_service_node_port_is_fixed_only_outside_cluster_ip(helm: str) -> None:
    """The kind config maps NodePort 30080 to the host; the chart can pin it."""
    sets = {"service.type": "NodePort", "service.nodePort": 30080}
    port = render(helm, sets=sets).get("Service", FULLNAME)["spec"]["ports"][0]
    assert port["nodePort"] == 30080
    cluster_ip = render(helm, sets={"service.nodePort": 30080}).get("Service", FULLNAME)
    assert "nodePort" not in cluster_ip["spec"]["ports"][0]


def test_ingress_off_by_default(helm: str) -> None:
    docs = render(helm)
    assert not docs.of_kind("Ingress")
    assert not docs.of_kind("HTTPRoute")


def test_ingress_with_tls(helm: str) -> None:
    ingress = render(helm, "ingress-tls").get("Ingress")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["api.heliox.example.com"], "secretName": "heliox-tls"}]
    rule = spec["rules"][0]
    assert rule["host"] == "api.heliox.example.com"
    path = rule["http"]["paths"][0]
    assert path["path"] == "/"
    assert path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": FULLNAME, "port": {"name": "http"}}
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"


def test_httproute(helm: str) -> None:
    route = render(helm, "everything").get("HTTPRoute")
    spec = route["spec"]
    assert spec["parentRefs"] == [
        {"name": "public", "namespace": "gateways", "sectionName": "https"}
    ]
    assert spec["hostnames"] == ["api.heliox.example.com"]
    assert spec["rules"][0]["backendRefs"] == [{"name": FULLNAME, "port": 80}]
    assert spec["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]


# -- HPA and PDB ----------------------------------------------------------------------------------


def test_hpa(helm: str) -> None:
    hpa = render(helm, "ha").get("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 8)
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in spec["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": 65},
        "memory": {"type": "Utilization", "averageUtilization": 80},
    }
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert spec["behavior"]["scaleUp"]["policies"][0]["type"] == "Percent"


def test_hpa_memory_only(helm: str) -> None:
    hpa = render(helm, "everything").get("HorizontalPodAutoscaler")
    names = [m["resource"]["name"] for m in hpa["spec"]["metrics"]]
    assert names == ["cpu", "memory"]
    only = render(
        helm,
        sets={
            "autoscaling.enabled": True,
            "autoscaling.targetCPUUtilizationPercentage": 0,
            "autoscaling.targetMemoryUtilizationPercentage": 70,
        },
    ).get("HorizontalPodAutoscaler")
    assert [m["resource"]["name"] for m in only["spec"]["metrics"]] == ["memory"]


def test_pdb_with_several_replicas(helm: str) -> None:
    pdb = render(helm).get("PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": API_SELECTOR}}


def test_pdb_with_hpa_and_min_available(helm: str) -> None:
    pdb = render(helm, "ha").get("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert "maxUnavailable" not in pdb["spec"]


def test_no_pdb_for_a_single_replica(helm: str) -> None:
    assert not render(helm, sets={"replicaCount": 1}).of_kind("PodDisruptionBudget")
    one_but_hpa = render(helm, sets={"replicaCount": 1, "autoscaling.enabled": True})
    assert one_but_hpa.of_kind("PodDisruptionBudget")


# -- NetworkPolicy --------------------------------------------------------------------------------


def _policies(docs):
    return {p["metadata"]["name"]: p["spec"] for p in docs.of_kind("NetworkPolicy")}


def _peers(rule):
    return [
        p.get("podSelector", {}).get("matchLabels") for p in rule.get("from", rule.get("to", []))
    ]


def test_only_the_api_and_migrations_reach_postgres_and_only_the_api_reaches_redis(
    helm: str,
) -> None:
    policies = _policies(render(helm))
    pg = policies["rel-postgresql"]
    assert pg["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "postgresql",
        "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/component": "database",
    }
    assert pg["policyTypes"] == ["Ingress", "Egress"]
    assert len(pg["ingress"]) == 1
    assert [p["app.kubernetes.io/component"] for p in _peers(pg["ingress"][0])] == [
        "api",
        "migrations",
    ]
    assert pg["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert "egress" not in pg  # the database opens no connections
    redis = policies["rel-redis"]
    assert [p["app.kubernetes.io/component"] for p in _peers(redis["ingress"][0])] == ["api"]
    assert redis["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 6379}]


def test_database_pods_are_actually_selected(helm: str) -> None:
    """The policies' selectors match the subcharts' pod labels."""
    docs = render(helm)
    policies = _policies(docs)
    for name in ("rel-postgresql", "rel-redis"):
        labels = docs.get("StatefulSet", name)["spec"]["template"]["metadata"]["labels"]
        assert policies[name]["podSelector"]["matchLabels"].items() <= labels.items()


def test_api_policy(helm: str) -> None:
    policies = _policies(render(helm))
    api = policies[f"{FULLNAME}-api"]
    assert api["podSelector"]["matchLabels"] == API_SELECTOR
    assert api["ingress"] == [{"ports": [{"protocol": "TCP", "port": "http"}]}]  # anyone
    egress = api["egress"]
    dns = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    assert egress[0] == dns
    assert [r["ports"][0]["port"] for r in egress[1:]] == [5432, 6379]
    assert _peers(egress[1])[0]["app.kubernetes.io/name"] == "postgresql"
    assert _peers(egress[2])[0]["app.kubernetes.io/name"] == "redis"


TEST_SELECTOR = {**API_SELECTOR, "app.kubernetes.io/component": "test"}


def test_api_ingress_restricted_by_values(helm: str) -> None:
    """`ingressFrom` narrows who reaches the API port; the chart's own `helm test` pod is always
    among them, or `helm test` would fail on every release that sets it."""
    docs = render(helm, "ha")
    api = _policies(docs)[f"{FULLNAME}-api"]
    assert len(api["ingress"]) == 1
    assert api["ingress"][0]["ports"] == [{"protocol": "TCP", "port": "http"}]
    peers = api["ingress"][0]["from"]
    assert peers == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
        {"podSelector": {"matchLabels": TEST_SELECTOR}},
    ]
    # The peer selects the test pod (same namespace: a podSelector without namespaceSelector).
    (pod,) = docs.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert TEST_SELECTOR.items() <= pod["metadata"]["labels"].items()
    # ...which may in turn reach the API pods on their port.
    test = _policies(docs)[f"{FULLNAME}-test"]
    assert _peers(test["egress"][1]) == [API_SELECTOR]


def test_api_ingress_without_the_test_pod(helm: str) -> None:
    sets = {"tests.enabled": False}
    api = _policies(render(helm, "ha", sets))[f"{FULLNAME}-api"]
    assert api["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]


def test_api_ingress_for_prometheus_is_listed_by_the_user(helm: str) -> None:
    """A ServiceMonitor's scrapes come from Prometheus's namespace: with `ingressFrom` set, the
    user lists it there (values.yaml says so), and it is kept as given."""
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    label = "kubernetes\\.io/metadata\\.name"
    sets = {
        "metrics.serviceMonitor.enabled": True,
        f"networkPolicy.ingressFrom[0].namespaceSelector.matchLabels.{label}": "monitoring",
    }
    api = _policies(render(helm, sets=sets))[f"{FULLNAME}-api"]
    assert api["ingress"][0]["from"] == [
        prometheus,
        {"podSelector": {"matchLabels": TEST_SELECTOR}},
    ]
    text = (CHART / "values.yaml").read_text()
    doc = text[
        text.index("# -- Peers allowed to reach the API port") : text.index("ingressFrom: []")
    ]
    assert "serviceMonitor" in doc
    assert "helm test" in doc


def test_external_stores_open_their_ports_only(helm: str) -> None:
    policies = _policies(render(helm, "external"))
    assert set(policies) == {f"{FULLNAME}-api", f"{FULLNAME}-migrations", f"{FULLNAME}-test"}
    egress = policies[f"{FULLNAME}-api"]["egress"]
    ports = [r["ports"][0]["port"] for r in egress[1:]]
    assert ports == [5433, 6380]
    for rule in egress[1:]:
        assert [p["ipBlock"]["cidr"] for p in rule["to"]] == ["0.0.0.0/0", "::/0"]
    migrations = policies[f"{FULLNAME}-migrations"]["egress"]
    assert [r["ports"][0]["port"] for r in migrations[1:]] == [5433]


def test_migration_and_test_pods_are_fenced(helm: str) -> None:
    policies = _policies(render(helm))
    migrations = policies[f"{FULLNAME}-migrations"]
    assert "ingress" not in migrations
    assert migrations["policyTypes"] == ["Ingress", "Egress"]
    assert [r["ports"][0]["port"] for r in migrations["egress"]] == [53, 5432]
    test = policies[f"{FULLNAME}-test"]
    assert "ingress" not in test
    assert _peers(test["egress"][1]) == [API_SELECTOR]
    assert test["egress"][1]["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_extra_egress_and_allow_all(helm: str) -> None:
    api = _policies(render(helm, "everything"))[f"{FULLNAME}-api"]
    assert api["egress"][-1]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    open_ = _policies(render(helm, sets={"networkPolicy.allowAllEgress": True}))
    assert open_[f"{FULLNAME}-api"]["egress"] == [{}]


def test_network_policies_can_be_turned_off(helm: str) -> None:
    assert not render(helm, sets={"networkPolicy.enabled": False}).of_kind("NetworkPolicy")


# -- ServiceMonitor, ServiceAccount ---------------------------------------------------------------


def test_service_monitor(helm: str) -> None:
    assert not render(helm).of_kind("ServiceMonitor")
    sm = render(helm, "everything").get("ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert sm["spec"]["selector"]["matchLabels"] == API_SELECTOR
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    # The everything values protect /metrics with a token: the scrape sends it (test_auth.py).
    assert sm["spec"]["endpoints"] == [
        {
            "port": "http",
            "path": "/metrics",
            "interval": "30s",
            "scrapeTimeout": "10s",
            "bearerTokenSecret": {"name": "heliox-scrape-token", "key": "token"},
        }
    ]


def test_service_account_without_token(helm: str) -> None:
    docs = render(helm, "everything")
    sa = docs.get("ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws")
    for kind in ("Deployment", "Job", "StatefulSet"):
        for obj in docs.of_kind(kind):
            assert pod_spec(obj)["automountServiceAccountToken"] is False
    assert pod_spec(docs.get("Deployment"))["serviceAccountName"] == sa["metadata"]["name"]


def test_existing_service_account(helm: str) -> None:
    docs = render(helm, sets={"serviceAccount.create": False, "serviceAccount.name": "shared"})
    assert not docs.of_kind("ServiceAccount")
    assert pod_spec(docs.get("Deployment"))["serviceAccountName"] == "shared"


# -- helm test -----------------------------------------------------------------------------------


def test_helm_test_pod_checks_both_health_paths_through_the_service(helm: str) -> None:
    pod = render(helm).get("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
    health = container(pod, "health")
    assert health["args"][-2:] == [
        f"http://{FULLNAME}:80/health",
        f"http://{FULLNAME}:80/health/db",
    ]
    assert health["args"][:2] == ["python", "-c"]
    assert "sys.exit(1 if failed else 0)" in health["args"][2]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert health["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_helm_test_follows_the_readiness_path_and_service_port(helm: str) -> None:
    sets = {"probes.readiness.path": "/ready", "service.port": 8080}
    health = container(render(helm, sets=sets).get("Pod"), "health")
    assert health["args"][-1] == f"http://{FULLNAME}:8080/ready"


def test_helm_test_can_be_turned_off(helm: str) -> None:
    docs = render(helm, sets={"tests.enabled": False})
    assert not docs.of_kind("Pod")
    assert f"{FULLNAME}-test" not in _policies(docs)


# -- NOTES.txt (Helm 4 only: Helm 3's install --dry-run needs a cluster) -------------------------


def test_notes_tell_how_to_reach_the_api_and_check_the_migration() -> None:
    notes = install_notes()
    assert f"port-forward svc/{FULLNAME} 8080:80" in notes
    assert "app.kubernetes.io/component=migrations" in notes
    assert "heliox-migrate check" in notes
    assert "helm test rel" in notes
    assert "Generated passwords are kept" in notes


def test_notes_with_ingress_and_without_redis() -> None:
    notes = install_notes("ingress-tls", {"redis.enabled": False})
    assert "https://api.heliox.example.com/" in notes
    assert "No Redis is configured" in notes
    assert "port-forward" not in notes
