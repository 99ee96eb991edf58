"""Paths and a chart renderer shared by the image, skaffold and k8s/ checks."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from tests.tooling import run_helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "heliox"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SKAFFOLD = ROOT / "skaffold.yaml"
K8S = ROOT / "k8s"


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_helm("helm", *args, check=check)


@functools.cache
def _render(args: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    out = helm("template", *args).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def render(
    release: str = "heliox",
    namespace: str = "heliox",
    values: Iterable[str | Path] = (),
    set_values: Iterable[str] = (),
    extra: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """`helm template <release> charts/heliox -n <namespace> [-f v]... [--set k=v]...`."""
    args = [release, str(CHART), "-n", namespace]
    for v in values:
        args += ["-f", str(v)]
    for s in set_values:
        args += ["--set", s]
    args += list(extra)
    return [dict(d) for d in _render(tuple(args))]


def find(
    docs: Iterable[dict[str, Any]], kind: str, name: str | None = None
) -> list[dict[str, Any]]:
    return [
        d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
    ]


def pod_specs(docs: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every object that makes pods."""
    specs = []
    for d in docs:
        spec = d.get("spec") or {}
        if d.get("kind") == "Pod":
            specs.append((f"Pod/{d['metadata']['name']}", spec))
        elif "template" in spec and "spec" in spec["template"]:
            specs.append((f"{d['kind']}/{d['metadata']['name']}", spec["template"]["spec"]))
    return specs


def chart_values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return data
