"""tracing.*: the OTEL_* settings in the API's ConfigMap, the collector's port in the
NetworkPolicy, and the refusals."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import render, render_error

ENDPOINT = "http://otel-collector.monitoring:4318"
OTEL_KEYS = {
    "TRACING_ENABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
}


def _on(**extra: Any) -> dict[str, Any]:
    return {"tracing.enabled": True, "tracing.endpoint": ENDPOINT, **extra}


def _api_egress_ports(helm: str, sets: dict[str, Any]) -> list[int | str]:
    policy = render(helm, sets=sets).get("NetworkPolicy", "rel-heliox-api")
    return [p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]


def test_off_by_default_sets_nothing(helm: str) -> None:
    data = render(helm).get("ConfigMap", "rel-heliox")["data"]
    assert not OTEL_KEYS & set(data)
    assert 4318 not in _api_egress_ports(helm, {})


def test_on_the_configmap_carries_the_standard_variables(helm: str) -> None:
    data = render(helm, sets=_on()).get("ConfigMap", "rel-heliox")["data"]
    assert {k: data[k] for k in OTEL_KEYS} == {
        "TRACING_ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": ENDPOINT,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "OTEL_SERVICE_NAME": "heliox",
    }


def test_turning_tracing_on_rolls_the_pods(helm: str) -> None:
    def checksum(sets: dict[str, Any]) -> str:
        deployment = render(helm, sets=sets).get("Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) != checksum(_on())


@pytest.mark.parametrize(
    ("endpoint", "port"),
    [
        (ENDPOINT, 4318),
        ("https://collector.example.com", 443),
        ("http://collector", 80),
        ("https://collector.example.com:8443/otlp", 8443),
    ],
)
def test_the_collectors_port_is_opened_for_the_api(helm: str, endpoint: str, port: int) -> None:
    sets = _on(**{"tracing.endpoint": endpoint})
    assert port in _api_egress_ports(helm, sets)

    # Only the API sends spans: the migration Job's egress is what it was.
    def migrations(sets: dict[str, Any]) -> Any:
        return render(helm, sets=sets).get("NetworkPolicy", "rel-heliox-migrations")["spec"]

    assert migrations(sets) == migrations({})


def test_tracing_without_an_endpoint_is_refused(helm: str) -> None:
    error = render_error(helm, sets={"tracing.enabled": True})
    assert "tracing.enabled needs tracing.endpoint" in error


@pytest.mark.parametrize(
    ("key", "value"),
    [("tracing.samplerRatio", 1.5), ("tracing.endpoint", "otel-collector:4318")],
)
def test_bad_tracing_values_are_refused(helm: str, key: str, value: Any) -> None:
    error = render_error(helm, sets=_on(**{key: value}))
    assert key.split(".")[1] in error


def test_config_extra_cannot_shadow_the_tracing_keys(helm: str) -> None:
    error = render_error(helm, sets=_on(**{"config.extra.OTEL_SERVICE_NAME": "x"}))
    assert "OTEL_SERVICE_NAME" in error
    # With tracing off, other standard variables pass through config.extra.
    data = render(helm, sets={"config.extra.OTEL_RESOURCE_ATTRIBUTES": "team=sre"}).get(
        "ConfigMap", "rel-heliox"
    )["data"]
    assert data["OTEL_RESOURCE_ATTRIBUTES"] == "team=sre"
