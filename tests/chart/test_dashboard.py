"""The Grafana dashboard ConfigMap: found by the sidecar, one per release, valid queries, and the
panels an SRE needs."""

from __future__ import annotations

import json
from typing import Any

import promql_parser
import pytest

from .helpers import CHART, NAMESPACE, render
from .promql import dashboard, dashboard_queries, panels, selectors

ON = {"metrics.dashboard.enabled": True}


def _board(helm: str = "helm", **sets: Any) -> dict[str, Any]:
    return dashboard(render(helm, sets={**ON, **sets}))


def test_off_by_default(helm: str) -> None:
    assert not [d for d in render(helm).of_kind("ConfigMap") if "dashboard" in str(d)]


def test_the_sidecar_finds_it(helm: str) -> None:
    config_map = render(helm, sets=ON).get("ConfigMap", "rel-heliox-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    [key] = config_map["data"]
    assert key.endswith(".json")
    sets = {
        **ON,
        "metrics.dashboard.label": "example.com/dashboard",
        "metrics.dashboard.labelValue": "heliox",
        "metrics.dashboard.namespace": "monitoring",
        "metrics.dashboard.annotations.grafana_folder": "Services",
    }
    moved = render(helm, sets=sets).get("ConfigMap", "rel-heliox-dashboard")
    assert moved["metadata"]["labels"]["example.com/dashboard"] == "heliox"
    assert "grafana_dashboard" not in moved["metadata"]["labels"]
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "Services"}


def test_each_release_has_its_own_dashboard_opening_on_itself() -> None:
    board = _board()
    other = dashboard(render("helm", sets={**ON, "fullnameOverride": "api"}))
    assert board["uid"] != other["uid"]
    assert len(board["uid"]) <= 40  # Grafana's limit
    assert board["title"] == f"Heliox ({NAMESPACE}/rel-heliox)"
    current = {v["name"]: v.get("current", {}).get("value") for v in board["templating"]["list"]}
    assert current["namespace"] == NAMESPACE
    assert current["job"] == "rel-heliox"
    assert {v["name"]: v.get("current", {}).get("value") for v in other["templating"]["list"]}[
        "job"
    ] == "api"


def test_the_shipped_file_is_what_the_configmap_holds_but_for_the_release_fields() -> None:
    shipped = json.loads((CHART / "dashboards" / "heliox.json").read_text())
    board = _board()
    for key in ("uid", "title"):
        shipped.pop(key)
        board.pop(key)
    for variables in (shipped["templating"]["list"], board["templating"]["list"]):
        for variable in variables:
            variable.pop("current", None)
    assert board == shipped


def test_every_query_parses_and_uses_the_chosen_data_source() -> None:
    board = _board()
    queries = list(dashboard_queries(board))
    assert len(queries) >= 20
    for where, expr in queries:
        try:
            promql_parser.parse(expr.replace("$__rate_interval", "5m").replace("$", ""))
        except Exception as exc:  # the parser raises its own error types
            pytest.fail(f"{where}: {exc}: {expr}")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
        assert panel.get("description"), f"panel {panel['title']!r} says nothing of itself"


def test_the_panels_an_sre_needs() -> None:
    """Request rate, errors, latency percentiles by route, pool usage, cache hit ratio,
    rate-limit refusals, memory against the limit, replicas: each a panel reading the series
    that answers it."""
    board = _board()
    reads: dict[str, set[str]] = {}
    exprs: dict[str, str] = {}
    for panel in panels(board):
        for target in panel.get("targets", []):
            names = {s.name for s in selectors(target["expr"], panel["title"])}
            reads.setdefault(panel["title"], set()).update(names)
            exprs[panel["title"]] = exprs.get(panel["title"], "") + target["expr"]
    needed = {
        "Requests by route": {"heliox_http_requests_total"},
        "Errors": {"heliox_http_requests_total"},
        "Latency p50": {"heliox_http_request_duration_seconds_bucket"},
        "Latency p90": {"heliox_http_request_duration_seconds_bucket"},
        "Latency p99": {"heliox_http_request_duration_seconds_bucket"},
        "Database pool": {"heliox_db_pool_checked_out", "heliox_db_pool_limit"},
        "Cache hit ratio": {"heliox_cache_reads_total"},
        "Rate limit and Redis": {"heliox_rate_limit_refusals_total"},
        "Memory against the limit": {
            "container_memory_working_set_bytes",
            "kube_pod_container_resource_limits",
        },
        "Replicas": {"kube_deployment_status_replicas_available"},
    }
    for title, names in needed.items():
        assert names <= reads.get(title, set()), (title, reads.get(title))
    for quantile, title in (("0.5", "p50"), ("0.9", "p90"), ("0.99", "p99")):
        assert f"histogram_quantile({quantile}, sum by (le, route)" in exprs[f"Latency {title}"]
    assert 'result="hit"' in exprs["Cache hit ratio"]
    assert 'status=~"5.."' in exprs["Errors"]


def test_panels_do_not_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in _board()["panels"]:
        box = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(int(box["x"]), int(box["x"] + box["w"]))
            for y in range(int(box["y"]), int(box["y"] + box["h"]))
        }
        assert not cells & taken, panel["title"]
        assert box["x"] + box["w"] <= 24
        taken |= cells
