"""The PromQL the chart ships (alert rules, dashboard), parsed: which series each query reads.

Parsed with promql-parser (Rust bindings of a PromQL parser), so a name is found wherever it
sits in an expression, not guessed from the text. Grafana's variables are replaced by values
of the right shape first ($__rate_interval by a duration).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser

from .helpers import Manifests

_GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${datasource}": "prometheus",
    "$namespace": "heliox-test",
    "$job": "rel-heliox",
}


@dataclass(frozen=True)
class Selector:
    """One vector selector: a metric name and its equality matchers (label -> value)."""

    name: str
    equals: tuple[tuple[str, str], ...]
    where: str  # the rule or panel it came from

    def label(self, key: str) -> str | None:
        return dict(self.equals).get(key)


def _without_grafana_variables(expr: str) -> str:
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr!r}"
    return expr


def selectors(expr: str, where: str) -> list[Selector]:
    found: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            equals = []
            name = node.name
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
                    name = matcher.value
                elif matcher.op == promql_parser.MatchOp.Equal:
                    equals.append((matcher.name, matcher.value))
            assert name, f"{where}: a selector without a metric name: {expr}"
            found.append(Selector(name, tuple(sorted(equals)), where))

    promql_parser.walk(promql_parser.parse(_without_grafana_variables(expr)), visit)
    return found


def rule_queries(rendered: Manifests) -> Iterator[tuple[str, str]]:
    """(where, expr) for every rule of the rendered PrometheusRule."""
    for group in rendered.get("PrometheusRule")["spec"]["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def dashboard(rendered: Manifests) -> dict[str, Any]:
    [config_map] = [
        d for d in rendered.of_kind("ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    [text] = config_map["data"].values()
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expr) for every panel target and every query variable."""
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*), *\w+\)", query)
            assert inner, f"variable {variable['name']}: {query}"
            yield f"variable {variable['name']!r}", inner.group(1)


def recorded_names(rendered: Manifests) -> set[str]:
    return {
        rule["record"]
        for group in rendered.get("PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
