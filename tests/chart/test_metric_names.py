"""Every series the alert rules and the dashboard read is one something really exports.

Heliox's own names are checked against a live scrape: gunicorn on PostgreSQL and Redis (the
integration tier's servers), exercised until every series the queries use exists, so renaming
a metric (or a label value such as a histogram bound) fails here rather than leaving an alert
that never fires. Names from kube-state-metrics and cAdvisor cannot be scraped here: they are
listed below, and the list may hold nothing the chart does not use.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import AUTH_HEADER, GunicornServer, RedisServer

from .helpers import render
from .promql import Selector, dashboard, dashboard_queries, recorded_names, rule_queries, selectors

# Series of other exporters: kube-state-metrics (kube_*) and the kubelet's cAdvisor
# (container_*), by the names those projects document.
EXTERNAL = frozenset(
    {
        "kube_pod_container_status_restarts_total",
        "kube_pod_status_ready",
        "kube_job_failed",
        "kube_pod_container_resource_limits",
        "kube_deployment_spec_replicas",
        "kube_deployment_status_replicas_available",
        "kube_horizontalpodautoscaler_status_desired_replicas",
        "container_memory_working_set_bytes",
    }
)
# Labels Prometheus adds to a scrape (target labels), not the service.
TARGET_LABELS = frozenset({"namespace", "job", "pod", "instance", "service", "endpoint"})


def _used() -> list[Selector]:
    rendered = render(
        "helm", sets={"metrics.prometheusRule.enabled": True, "metrics.dashboard.enabled": True}
    )
    queries = [*rule_queries(rendered), *dashboard_queries(dashboard(rendered))]
    found = [s for where, expr in queries for s in selectors(expr, where)]
    recorded = recorded_names(rendered)
    return [s for s in found if s.name not in recorded]


def test_every_name_is_heliox_or_a_listed_external_one() -> None:
    used = _used()
    names = {s.name for s in used}
    strangers = {s.name: s.where for s in used if not s.name.startswith("heliox_")}
    unknown = {n: w for n, w in strangers.items() if n not in EXTERNAL}
    assert not unknown, f"not ours and not in EXTERNAL: {unknown}"
    assert names >= EXTERNAL, f"listed but unused (keep the list honest): {EXTERNAL - names}"
    assert len(names - EXTERNAL) >= 8


def test_recording_rules_feed_the_alerts() -> None:
    """The alerts read recorded series by the names the recording rules give them."""
    rendered = render("helm", sets={"metrics.prometheusRule.enabled": True})
    recorded = recorded_names(rendered)
    read = {s.name for where, expr in rule_queries(rendered) for s in selectors(expr, where)}
    assert read & recorded, "no alert reads a recorded series"
    colon_names = {n for n in read if ":" in n}
    assert colon_names <= recorded, colon_names - recorded


# -- the live scrape ---------------------------------------------------------------------------


def _call(url: str, method: str = "GET", body: dict[str, object] | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=AUTH_HEADER)
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return int(error.code)


def _scrape(url: str) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets it has (histograms as _bucket, _count, _sum)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


@pytest.fixture
def exercised(database_url: str) -> Iterator[dict[str, list[dict[str, str]]]]:
    """A scrape after every path the queries watch has been taken: reads (miss, hit), writes,
    the rate limit's refusal, failing readiness checks, then Redis stopped (cache bypass,
    unchecked requests, Redis errors)."""
    with RedisServer() as redis:
        env = {
            "ENV": "production",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis.url,
            "RATE_LIMIT_REQUESTS": "8",
            # A deadline no query meets: every readiness check answers 503, as in an outage.
            "HEALTH_DB_TIMEOUT": "0.000001",
        }
        with GunicornServer(env, workers=2) as server:
            url = server.url
            assert _call(f"{url}/health") == 200
            assert _call(f"{url}/health/db") == 503
            created = _call(f"{url}/api/v1/items", "POST", {"name": "scraped"})
            assert created == 201
            statuses = [_call(f"{url}/api/v1/items/1") for _ in range(3)]
            statuses += [_call(f"{url}/api/v1/items") for _ in range(6)]
            assert 200 in statuses
            assert 429 in statuses  # over the limit of 8 a minute
            redis.stop()
            time.sleep(2.5)  # the rate-limit window of the refusals above may still be open
            outage = [_call(f"{url}/api/v1/items/1") for _ in range(4)]
            assert set(outage) == {200}, outage  # fail open, read from PostgreSQL
            wanted = {s.name for s in _used() if s.name.startswith("heliox_")}
            deadline = time.monotonic() + 10  # other workers' samples are up to 1 s old
            while True:
                samples = _scrape(url)
                if wanted <= set(samples) or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            yield samples


def _unexported(
    used: list[Selector], samples: dict[str, list[dict[str, str]]]
) -> tuple[dict[str, str], dict[str, str]]:
    """Heliox names not in the scrape, and equality matchers whose value no series has."""
    missing: dict[str, str] = {}
    wrong_labels: dict[str, str] = {}
    for selector in used:
        if not selector.name.startswith("heliox_"):
            continue
        series = samples.get(selector.name)
        if not series:
            missing[selector.name] = selector.where
            continue
        for label, value in selector.equals:
            if label in TARGET_LABELS:
                continue
            values = {s.get(label) for s in series}
            if value not in values:
                wrong_labels[f"{selector.name}{{{label}={value!r}}}"] = (
                    f"{selector.where}; the service exports {sorted(map(str, values))}"
                )
    return missing, wrong_labels


def test_every_heliox_series_the_queries_read_is_exported(
    exercised: dict[str, list[dict[str, str]]],
) -> None:
    missing, wrong_labels = _unexported(_used(), exercised)
    assert not missing, f"read by the chart, not exported by the service: {missing}"
    assert not wrong_labels, wrong_labels


def test_the_check_notices_a_renamed_metric_or_label_value(
    exercised: dict[str, list[dict[str, str]]],
) -> None:
    """The same comparison, fed a renamed metric and a bound the histogram does not have."""
    renamed = Selector("heliox_http_request_total", (), "a renamed counter")
    bound = Selector("heliox_http_request_duration_seconds_bucket", (("le", "0.50"),), "a bound")
    result = Selector("heliox_cache_reads_total", (("result", "hits"),), "a renamed result")
    missing, wrong_labels = _unexported([renamed, bound, result], exercised)
    assert set(missing) == {"heliox_http_request_total"}
    assert set(wrong_labels) == {
        "heliox_http_request_duration_seconds_bucket{le='0.50'}",
        "heliox_cache_reads_total{result='hits'}",
    }
    assert {s["result"] for s in exercised["heliox_cache_reads_total"]} == {"hit", "miss", "bypass"}
