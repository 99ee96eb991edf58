"""Whole-chart checks: lint, offline schema validation, Helm 3/4 parity, kube-score.

kube-score stands in for kube-linter, which cannot be installed here (its Go module path is not
served by the Go module proxy and it has no other package); see kube-score.yaml beside this file.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.tooling import run_helm, tool

from .helpers import (
    CHART,
    KUBE_NEWEST,
    KUBE_OLDEST,
    VALUES_DIR,
    render,
    render_text,
    values_files,
)

HERE = Path(__file__).resolve().parent
VALUES = values_files()
# Kinds outside kubernetes-validate's core schemas, checked against trimmed vendored schemas.
CRD_SCHEMAS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HERE / "schemas" / "httproute-gateway-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): HERE
    / "schemas"
    / "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): HERE
    / "schemas"
    / "prometheusrule-monitoring-v1.json",
}


def test_values_files_cover_the_required_scenarios() -> None:
    required = {
        "defaults",
        "external",
        "existing-secret",
        "ha",
        "ingress-tls",
        "gitops",
        "everything",
    }
    assert required <= set(VALUES), f"missing values files: {sorted(required - set(VALUES))}"


# -- helm lint --strict ----------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUES)
def test_lint_strict(helm: str, values: str) -> None:
    proc = run_helm(
        helm, "lint", "--strict", str(CHART), "-f", str(VALUES_DIR / f"{values}.yaml"), check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout, proc.stdout
    assert "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("subchart", ["postgresql", "redis"])
def test_subcharts_lint_strict_on_their_own(helm: str, subchart: str) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART / "charts" / subchart), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout, proc.stdout
    assert "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("kube", [KUBE_OLDEST, KUBE_NEWEST])
def test_lint_strict_with_subcharts_at_both_ends_of_kube_version(helm: str, kube: str) -> None:
    """Deprecated-API checks run against the oldest and newest Kubernetes the chart claims."""
    proc = run_helm(
        helm,
        "lint",
        "--strict",
        "--with-subcharts",
        "--kube-version",
        kube,
        str(CHART),
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 chart(s) linted, 0 chart(s) failed" in proc.stdout, proc.stdout
    assert "[WARNING]" not in proc.stdout, proc.stdout


# -- schema validation, oldest and newest Kubernetes -----------------------------------------


def _validate(doc: dict[str, Any], kube: str) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in CRD_SCHEMAS:
        schema = json.loads(CRD_SCHEMAS[key].read_text())
        jsonschema.validate(doc, schema)
        return
    kubernetes_validate.validate(doc, kube, strict=True)


@pytest.mark.parametrize("kube", [KUBE_OLDEST, KUBE_NEWEST])
@pytest.mark.parametrize("upgrade", [False, True], ids=["install", "upgrade"])
@pytest.mark.parametrize("values", VALUES)
def test_every_document_validates_against_kubernetes_schemas(
    values: str, upgrade: bool, kube: str
) -> None:
    docs = render("helm", values, kube_version=kube, is_upgrade=upgrade)
    assert len(docs) >= 8
    problems = []
    for doc in docs:
        try:
            _validate(doc, kube)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{doc['kind']}: no schema ({exc.message})")
    assert not problems, "\n".join(problems)


def test_crd_schemas_reject_a_wrong_field() -> None:
    """The vendored CRD schemas are strict, so the check above can fail."""
    docs = render("helm", "everything")
    route = docs.get("HTTPRoute")
    broken = json.loads(json.dumps(route))
    broken["spec"]["rules"][0]["backendRefs"][0]["prot"] = 80
    with pytest.raises(jsonschema.ValidationError):
        _validate(broken, KUBE_NEWEST)
    monitor = json.loads(json.dumps(docs.get("ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["interval"] = "thirty seconds"
    with pytest.raises(jsonschema.ValidationError):
        _validate(monitor, KUBE_NEWEST)
    rules = docs.get("PrometheusRule")
    _validate(rules, KUBE_NEWEST)
    for breakage in (
        lambda r: r["spec"]["groups"][1]["rules"][0].update({"for": "two minutes"}),
        lambda r: r["spec"]["groups"][1]["rules"][0].update({"record": "both:kinds"}),
        lambda r: r["spec"]["groups"][0]["rules"][0].update({"exprr": "up"}),
        lambda r: r["spec"]["groups"][1]["rules"][0]["annotations"].update({"n": 1}),
    ):
        broken = json.loads(json.dumps(rules))
        breakage(broken)
        with pytest.raises(jsonschema.ValidationError):
            _validate(broken, KUBE_NEWEST)


def test_kubernetes_schemas_are_strict() -> None:
    deployment = render("helm").get("Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_OLDEST, strict=True)


def test_native_sleep_prestop_exists_in_the_oldest_schema() -> None:
    """kubeVersion starts at 1.30 because the native preStop sleep action is there."""
    deployment = render("helm", kube_version=KUBE_OLDEST).get("Deployment")
    prestop = deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]
    assert prestop == {"sleep": {"seconds": 5}}
    kubernetes_validate.validate(deployment, KUBE_OLDEST, strict=True)


def test_kube_version_below_the_range_is_refused(helm: str) -> None:
    proc = run_helm(helm, "template", "x", str(CHART), "--kube-version", "1.29.0", check=False)
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr or "incompatible" in proc.stderr, proc.stderr


# -- Helm 4 and Helm 3 render the same ---------------------------------------------------------

_GENERATED_KEYS = {"password", "postgres-password", "redis-password"}


def _normalised(text: str) -> list[dict[str, Any]]:
    """Parsed documents with the subcharts' random passwords and the generated bootstrap API key
    blanked (they differ per render), also where the migration hook's Secret copy holds the
    generated PostgreSQL one."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:
        if d["kind"] == "Secret" and d["metadata"]["name"].endswith(("-postgresql", "-redis")):
            for key in _GENERATED_KEYS & set(d.get("data", {})):
                d["data"][key] = "<generated>"
        if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-bootstrap-key"):
            d["data"] = dict.fromkeys(d["data"], "<generated>")
        hook_copy = d["kind"] == "Secret" and d["metadata"]["name"].endswith("-migrate")
        if hook_copy and "DATABASE_PASSWORD" in d.get("data", {}):
            d["data"]["DATABASE_PASSWORD"] = "<generated>"
    return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))


@pytest.mark.parametrize("upgrade", [False, True], ids=["install", "upgrade"])
@pytest.mark.parametrize("values", VALUES)
def test_helm3_and_helm4_render_the_same(values: str, upgrade: bool) -> None:
    v4 = _normalised(render_text("helm", values, is_upgrade=upgrade))
    v3 = _normalised(render_text("helm3", values, is_upgrade=upgrade))
    assert [(d["kind"], d["metadata"]["name"]) for d in v4] == [
        (d["kind"], d["metadata"]["name"]) for d in v3
    ]
    assert v4 == v3


# -- kube-score (the static linter) --------------------------------------------------------------

KUBE_SCORE_CONFIG = yaml.safe_load((HERE / "kube-score.yaml").read_text())


def _kube_score(text: str, tmp_path: Path) -> list[dict[str, Any]]:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    cfg = KUBE_SCORE_CONFIG
    args = [tool("kube-score"), "score", "-o", "json"]
    args += ["--kubernetes-version", cfg["kubernetesVersion"]]
    for test in cfg.get("enableOptional", []):
        args += ["--enable-optional-test", test]
    proc = subprocess.run(
        [*args, str(manifest)], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.stdout.strip(), proc.stderr
    findings = []
    for obj in json.loads(proc.stdout):
        for check in obj["checks"]:
            if check["skipped"] or check["grade"] >= 10:
                continue
            findings.append(
                {
                    "check": check["check"]["id"],
                    "kind": obj["type_meta"]["kind"],
                    "name": obj["object_meta"]["name"],
                    "comments": [
                        f"({c.get('path') or '-'}) {c['summary']}" for c in check["comments"] or []
                    ],
                }
            )
    return findings


def _excluded(finding: dict[str, Any]) -> dict[str, Any] | None:
    for rule in KUBE_SCORE_CONFIG["exclusions"]:
        if rule["check"] != finding["check"]:
            continue
        if "kinds" in rule and finding["kind"] not in rule["kinds"]:
            continue
        if "names" in rule and not re.fullmatch(rule["names"], finding["name"]):
            continue
        return rule
    return None


def test_kube_score_config_justifies_every_exclusion() -> None:
    for rule in KUBE_SCORE_CONFIG["exclusions"]:
        assert len(rule.get("reason", "").split()) >= 12, f"exclusion without a real reason: {rule}"


@pytest.mark.parametrize("values", ["defaults", "ha"])
def test_kube_score_has_no_findings_beyond_justified_exclusions(
    values: str, tmp_path: Path
) -> None:
    # Hooks included: the upgrade render adds the hook Job; --is-upgrade=False the plain one.
    findings = []
    for upgrade in (False, True):
        findings += _kube_score(render_text("helm", values, is_upgrade=upgrade), tmp_path)
    unexcused = [f for f in findings if _excluded(f) is None]
    assert not unexcused, json.dumps(unexcused, indent=2)
    used = {id(_excluded(f)) for f in findings}
    stale = [r["check"] for r in KUBE_SCORE_CONFIG["exclusions"] if id(r) not in used]
    assert not stale, f"exclusions that no longer match anything (remove them): {stale}"


def test_kube_score_catches_a_regression(tmp_path: Path) -> None:
    """The linter run is live: a writable root filesystem is reported."""
    text = render_text("helm", sets={"containerSecurityContext.readOnlyRootFilesystem": False})
    checks = {f["check"] for f in _kube_score(text, tmp_path) if _excluded(f) is None}
    assert "container-security-context-readonlyrootfilesystem" in checks
