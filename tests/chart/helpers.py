"""Render the heliox chart with a real `helm` binary and pick objects out of the result.

Every test goes through :func:`render` (or :func:`render_error` for refusals), so the command
line is the same everywhere: `helm template <release> charts/heliox -n <ns> --kube-version K
[-f values]... [--set k=v]... [--is-upgrade]`. Renders are cached per argument tuple: a chart
render is pure, and each takes a tenth of a second or more.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.tooling import run_helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "heliox"
VALUES_DIR = Path(__file__).resolve().parent / "values"

RELEASE = "rel"
NAMESPACE = "heliox-test"
FULLNAME = f"{RELEASE}-heliox"

# The oldest and newest Kubernetes minors the chart claims (Chart.yaml kubeVersion: >=1.30.0-0)
# that the offline schemas (kubernetes-validate) cover.
KUBE_OLDEST = "1.30.0"
KUBE_NEWEST = "1.37.0"
KUBE_DEFAULT = KUBE_NEWEST

# Both Helm majors the chart must render the same under (scripts/tools.sh builds them).
HELM_BINARIES = ("helm", "helm3")


def values_files() -> list[str]:
    """Names (without .yaml) of every values file under tests/chart/values/."""
    return sorted(p.stem for p in VALUES_DIR.glob("*.yaml"))


def _flatten(
    values: Iterable[str] | str | None, sets: Mapping[str, Any] | None
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    if values is None:
        files: tuple[str, ...] = ()
    elif isinstance(values, str):
        files = (values,)
    else:
        files = tuple(values)
    pairs = tuple(sorted((k, _set_value(v)) for k, v in (sets or {}).items()))
    return files, pairs


def _set_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _args(
    files: tuple[str, ...],
    sets: tuple[tuple[str, str], ...],
    kube_version: str,
    is_upgrade: bool,
    show_only: str | None,
    set_string: bool,
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "-n", NAMESPACE, "--kube-version", kube_version]
    for name in files:
        path = Path(name) if name.endswith(".yaml") else VALUES_DIR / f"{name}.yaml"
        args += ["-f", str(path)]
    flag = "--set-string" if set_string else "--set"
    for key, value in sets:
        args += [flag, f"{key}={value}"]
    if is_upgrade:
        args.append("--is-upgrade")
    if show_only:
        args += ["--show-only", show_only]
    return args


@functools.cache
def _render_text(
    helm: str,
    files: tuple[str, ...],
    sets: tuple[tuple[str, str], ...],
    kube_version: str,
    is_upgrade: bool,
    show_only: str | None,
    set_string: bool,
) -> str:
    args = _args(files, sets, kube_version, is_upgrade, show_only, set_string)
    return run_helm(helm, *args).stdout


def render_text(
    helm: str = "helm",
    values: Iterable[str] | str | None = None,
    sets: Mapping[str, Any] | None = None,
    *,
    kube_version: str = KUBE_DEFAULT,
    is_upgrade: bool = False,
    show_only: str | None = None,
    set_string: bool = False,
) -> str:
    files, pairs = _flatten(values, sets)
    return _render_text(helm, files, pairs, kube_version, is_upgrade, show_only, set_string)


def render(
    helm: str = "helm",
    values: Iterable[str] | str | None = None,
    sets: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Manifests:
    """Render and parse every document (empty ones dropped)."""
    text = render_text(helm, values, sets, **kwargs)
    return Manifests([d for d in yaml.safe_load_all(text) if d])


def render_error(
    helm: str = "helm",
    values: Iterable[str] | str | None = None,
    sets: Mapping[str, Any] | None = None,
    *,
    kube_version: str = KUBE_DEFAULT,
    is_upgrade: bool = False,
    set_string: bool = False,
) -> str:
    """Render expecting a refusal; returns helm's error output."""
    files, pairs = _flatten(values, sets)
    args = _args(files, pairs, kube_version, is_upgrade, None, set_string)
    proc = run_helm(helm, *args, check=False)
    assert proc.returncode != 0, f"expected helm to refuse, but it rendered:\n{proc.stdout[:2000]}"
    return proc.stderr


def install_notes(
    values: Iterable[str] | str | None = None, sets: Mapping[str, Any] | None = None
) -> str:
    """NOTES.txt as `helm install --dry-run=client` prints it (Helm 4; Helm 3 needs a cluster)."""
    files, pairs = _flatten(values, sets)
    args = ["install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client"]
    for name in files:
        args += ["-f", str(VALUES_DIR / f"{name}.yaml")]
    for key, value in pairs:
        args += ["--set", f"{key}={value}"]
    out = run_helm("helm", *args).stdout
    assert "NOTES:" in out, out[-2000:]
    return out.split("NOTES:", 1)[1]


@dataclass
class Manifests:
    docs: list[dict[str, Any]]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.docs)

    def __len__(self) -> int:
        return len(self.docs)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        """The single object of this kind (and name); fails when there is none or several."""
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, (
            f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
        )
        return found[0]

    def has(self, kind: str, name: str | None = None) -> bool:
        return any(name is None or d["metadata"]["name"] == name for d in self.of_kind(kind))

    def by_component(self, kind: str, component: str) -> list[dict[str, Any]]:
        return [
            d
            for d in self.of_kind(kind)
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ]

    def names(self, kind: str) -> list[str]:
        return sorted(d["metadata"]["name"] for d in self.of_kind(kind))


# Shortcuts into pod specs.


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(obj)
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name} in {obj['kind']} {obj['metadata']['name']}")


def env_map(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env list by name (asserting no name appears twice)."""
    names = [e["name"] for e in c.get("env", [])]
    assert len(names) == len(set(names)), f"duplicate env names in {c['name']}: {names}"
    return {e["name"]: e for e in c.get("env", [])}


def secret_ref(entry: dict[str, Any]) -> tuple[str, str]:
    ref = entry["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    import base64  # noqa: PLC0415

    data = secret.get("data") or {}
    out = {k: base64.b64decode(v).decode() for k, v in data.items()}
    out.update(secret.get("stringData") or {})
    return out


def volumes(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in pod_spec(obj).get("volumes", [])}


def mounts(c: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
