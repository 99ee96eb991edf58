"""Paths and a chart renderer shared by the image, skaffold and k8s/ checks."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "heliox"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SKAFFOLD = ROOT / "skaffold.yaml"
K8S = ROOT / "k8s"
TOOLS = ROOT / ".tools" / "bin"
VENV_BIN = ROOT / ".venv" / "bin"


def tool(name: str) -> str:
    """A pinned tool from .tools/bin (or the virtualenv, or PATH); an assertion naming the fix."""
    for candidate in (TOOLS / name, VENV_BIN / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    assert found, f"{name} not found in .tools/bin, .venv/bin or PATH (make venv; scripts/tools.sh)"
    return found


def helm_env() -> dict[str, str]:
    """No cluster for rendering: KUBECONFIG points at nothing, helm's caches outside $HOME."""
    env = dict(os.environ)
    env["KUBECONFIG"] = os.devnull
    cache = str(Path(tempfile.gettempdir()) / "heliox-helm")
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env.setdefault(var, cache)
    return env


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [tool("helm"), *args],
        capture_output=True,
        text=True,
        env=helm_env(),
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


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
