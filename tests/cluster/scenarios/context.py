"""What every scenario step gets: where the release lives, which Helm runs it, and the values
that all its `helm install/upgrade` calls share."""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane import ROOT, Cluster

from .kubeapi import KubeApi

CHART = ROOT / "charts" / "heliox"

# Our kwok stage fails any pod carrying this label or annotation (scripts/control-plane/stages).
FAIL_MARKER = "heliox.test/fail"


def deep_merge(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    """A new dict: base with each override merged in (nested dicts merged, the rest replaced)."""
    out = copy.deepcopy(base)
    for o in overrides:
        for k, v in o.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = deep_merge(out[k], v)
            else:
                out[k] = copy.deepcopy(v)
    return out


@dataclass
class Context:
    """One Helm release under test.

    cluster      a controlplane.Cluster (kubeconfig, kubectl, waits, progress lines)
    namespace    where the release lives
    release      the Helm release name
    helm         the Helm binary: "helm" (v4) or "helm3"; .tools/bin is first on the PATH
    chart        the chart directory
    image        (repository, tag) of the API image the release starts with
    values       values every install/upgrade of this release gets (steps add their own)
    simulated    True on the kwok control plane: pods do not run, so checks that need a real
                 container are left to the kind tier (each step's docstring says which)
    """

    cluster: Cluster
    namespace: str
    release: str
    helm: str = "helm"
    chart: Path = CHART
    image: tuple[str, str] = ("registry.invalid/heliox/heliox", "scenario-1")
    values: dict[str, Any] = field(default_factory=dict)
    simulated: bool = True
    timeout: str = "180s"
    # Steps keep what later steps compare against (passwords, revisions, tags) here.
    state: dict[str, Any] = field(default_factory=dict)
    _api: KubeApi | None = None

    # --- names the chart gives its objects ----------------------------------------------------
    @property
    def fullname(self) -> str:
        return self.release if "heliox" in self.release else f"{self.release}-heliox"

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.release}"

    def component(self, name: str) -> str:
        return f"{self.selector},app.kubernetes.io/component={name}"

    # --- helpers ------------------------------------------------------------------------------
    def progress(self, msg: str) -> None:
        self.cluster.progress(f"{self.helm} {self.namespace}/{self.release}: {msg}")

    @property
    def api(self) -> KubeApi:
        if self._api is None:
            self._api = KubeApi(self.cluster.kubeconfig, self.cluster.kubectl_bin)
        return self._api

    def values_for(self, tag: str | None = None, *extra: dict[str, Any]) -> dict[str, Any]:
        repo, default_tag = self.image
        image = {"image": {"repository": repo, "tag": tag or default_tag}}
        return deep_merge(self.values, image, *extra)

    def keep_values(self, extra: dict[str, Any] | None) -> None:
        """Merge values into those every later upgrade of this release gets."""
        self.state["extra"] = deep_merge(self.state.get("extra", {}), extra or {})

    def failing_migration(self) -> dict[str, Any]:
        """Values that make the migration Job fail. On kwok, our failure stage fails its pods
        (exit 1) when they carry FAIL_MARKER; in a real cluster the runner itself fails: it is
        asked for a revision that does not exist (`heliox-migrate upgrade` exits 1)."""
        if self.simulated:
            return {"migrations": {"podLabels": {FAIL_MARKER: "true"}, "backoffLimit": 0}}
        return {
            "migrations": {
                "command": ["heliox-migrate", "upgrade", "no-such-revision"],
                "backoffLimit": 0,
            }
        }


def values_file(values: dict[str, Any]) -> Path:
    """Values as a file for `-f` (JSON is YAML; keys with dots or slashes need no escaping)."""
    fd, name = tempfile.mkstemp(prefix="heliox-values-", suffix=".yaml")
    with open(fd, "w", encoding="utf-8") as f:
        json.dump(values, f)
    return Path(name)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.monotonic()
    return fn(), time.monotonic() - t
