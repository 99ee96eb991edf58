"""The chart's alert rules: valid for Prometheus, unit-tested with promtool, documented.

promtool (Prometheus v3.16.0, built from the Prometheus Go module by scripts/tools.sh) checks
the rendered rule groups and runs tests/chart/rules/heliox-alerts.test.yaml against them:
input series under which each alert must fire, and series under which it must not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tooling import tool

from .helpers import CHART, NAMESPACE, render, render_error

HERE = Path(__file__).resolve().parent
UNIT_TESTS = HERE / "rules" / "heliox-alerts.test.yaml"
ON = {"metrics.prometheusRule.enabled": True}


def _rule(helm: str = "helm", **sets: Any) -> dict[str, Any]:
    return render(helm, sets={**ON, **sets}).get("PrometheusRule")


def _alerts(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def _write_rules(rule: dict[str, Any], directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_off_by_default(helm: str) -> None:
    assert not render(helm).has("PrometheusRule")


@pytest.mark.parametrize("values", ["defaults", "everything"])
def test_promtool_accepts_the_rules(values: str, tmp_path: Path) -> None:
    rule = render("helm", values, sets=ON).get("PrometheusRule")
    checked = _promtool("check", "rules", str(_write_rules(rule, tmp_path)), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in rule['spec']['groups'])} rules found" in (
        checked.stdout
    )


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    """Every alert fires on the series it is for and stays silent on the others."""
    _write_rules(_rule(), tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    tested = _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against rules whose thresholds were lowered: the cases meant to stay
    silent fire, so promtool fails (a test file that could not fail would prove nothing)."""
    sets = {"metrics.prometheusRule.podRestarts": 1, "metrics.prometheusRule.readinessChanges": 2}
    _write_rules(_rule(**sets), tmp_path)
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    tested = _promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0
    assert "HelioxPodRestarting" in tested.stdout + tested.stderr
    assert "HelioxReadinessFlapping" in tested.stdout + tested.stderr


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    cases: dict[str, dict[str, int]] = {}
    for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            kind = "fires" if case["exp_alerts"] else "silent"
            counts = cases.setdefault(case["alertname"], {"fires": 0, "silent": 0})
            counts[kind] += 1
    names = {a["alert"] for a in _alerts(_rule())}
    assert set(cases) == names, (names - set(cases), set(cases) - names)
    untested = {n: c for n, c in cases.items() if not (c["fires"] and c["silent"])}
    assert not untested, untested


def test_the_required_alerts_exist() -> None:
    names = {a["alert"] for a in _alerts(_rule())}
    assert names == {
        "HelioxErrorBudgetBurnFast",
        "HelioxErrorBudgetBurnSlow",
        "HelioxLatencyBudgetBurnFast",
        "HelioxLatencyBudgetBurnSlow",
        "HelioxPodRestarting",
        "HelioxReadinessFlapping",
        "HelioxDatabasePoolSaturated",
        "HelioxDatabaseCheckFailing",
        "HelioxMigrationJobFailed",
        "HelioxRedisUnavailable",
    }


def _runbook_sections() -> dict[str, str]:
    """The README's runbook: each `#### Name` under `### Alerts`, with its text."""
    readme = (CHART / "README.md").read_text()
    alerts = readme.split("\n### Alerts\n", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"^#### (\w+)\n", alerts, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_alert_has_a_summary_a_description_and_a_runbook_section() -> None:
    sections = _runbook_sections()
    alerts = _alerts(_rule())
    for alert in alerts:
        annotations = alert["annotations"]
        assert len(annotations["summary"].split()) >= 5, alert["alert"]
        assert len(annotations["description"].split()) >= 10, alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning"}
        body = sections.get(alert["alert"], "")
        assert len(body.split()) >= 40, f"README has no runbook section for {alert['alert']}"
        assert alert["labels"]["severity"].capitalize() in body.split(".")[0], alert["alert"]
    assert set(sections) == {a["alert"] for a in alerts}, "a runbook section for no alert"


def test_runbook_links_and_alert_labels_come_from_values() -> None:
    url = "https://docs.example.com/heliox"
    labels = {"metrics.prometheusRule.alertLabels.team": "sre"}
    rule = _rule(**{"metrics.prometheusRule.runbookUrl": url, **labels})
    for alert in _alerts(rule):
        assert alert["annotations"]["runbook_url"] == f"{url}#{alert['alert'].lower()}"
        assert alert["labels"]["team"] == "sre"
    assert all("runbook_url" not in a["annotations"] for a in _alerts(_rule()))


def test_slo_targets_and_thresholds_come_from_values(tmp_path: Path) -> None:
    values = tmp_path / "targets.yaml"  # a file: --set would pass 99.5 as a string
    values.write_text(
        yaml.safe_dump(
            {
                "metrics": {
                    "prometheusRule": {
                        "enabled": True,
                        "slo": {
                            "availability": {"objective": 99.5},
                            "latency": {"objective": 95, "thresholdSeconds": "1.0"},
                        },
                        "poolSaturation": 0.75,
                    }
                }
            }
        )
    )
    rule = render("helm", str(values)).get("PrometheusRule")
    text = "\n".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    by_name = {a["alert"]: a for a in _alerts(rule)}
    assert "(14.4 * (1 - 99.5 / 100))" in by_name["HelioxErrorBudgetBurnFast"]["expr"]
    assert "(3 * (1 - 95 / 100))" in by_name["HelioxLatencyBudgetBurnSlow"]["expr"]
    assert 'le="1.0"' in text
    assert 'le="0.5"' not in text
    assert "> 0.75" in by_name["HelioxDatabasePoolSaturated"]["expr"]


def test_a_latency_bound_must_be_a_bucket_bound(helm: str) -> None:
    error = render_error(
        helm, sets={**ON, "metrics.prometheusRule.slo.latency.thresholdSeconds": "0.3"}
    )
    assert "thresholdSeconds" in error


def test_rules_select_only_this_release(helm: str) -> None:
    rule = render(helm, sets=ON, kube_version="1.37.0").get("PrometheusRule")
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            expr = r["expr"]
            assert f'namespace="{NAMESPACE}"' in expr, r
            assert 'job="rel-heliox"' in expr or "rel-heliox" in expr, r
