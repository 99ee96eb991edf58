"""skaffold.yaml as Skaffold reads it, without Skaffold (it cannot be installed here): a
profile's effective config (its JSON patches applied) and the values arguments Skaffold's helm
deployer would pass. Used by the image tier (rendered with `helm template`) and the kind tier
(installed for real)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from .helpers import ROOT, SKAFFOLD

PROFILES = ["", "dev", "external-db"]  # "" is the config without a profile
DIGEST = "sha256:" + "ab" * 32


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SKAFFOLD.read_text())
    return data


# --- JSON patches, as Skaffold applies a profile's `patches` ----------------------------------


def _pointer(path: str) -> list[str]:
    assert path.startswith("/"), path
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def apply_patch(doc: Any, patch: Mapping[str, Any]) -> None:
    *parents, last = _pointer(patch["path"])
    target = doc
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    op = patch.get("op", "replace")
    if isinstance(target, list):
        index = len(target) if last == "-" else int(last)
        if op == "add":
            target.insert(index, copy.deepcopy(patch["value"]))
        elif op == "replace":
            target[index] = copy.deepcopy(patch["value"])
        elif op == "remove":
            del target[index]
        else:
            raise AssertionError(f"unsupported op {op}")
        return
    if op in ("add", "replace"):
        if op == "replace":
            assert last in target, f"replace of a missing path {patch['path']}"
        target[last] = copy.deepcopy(patch["value"])
    elif op == "remove":
        del target[last]
    else:
        raise AssertionError(f"unsupported op {op}")


def effective(profile: str) -> dict[str, Any]:
    config = load()
    profiles = config.pop("profiles", [])
    if not profile:
        return config
    (chosen,) = [p for p in profiles if p["name"] == profile]
    for key in ("build", "deploy", "manifests", "portForward", "test"):
        if key in chosen:  # a profile's own section replaces the base's
            config[key] = copy.deepcopy(chosen[key])
    for patch in chosen.get("patches", []):
        apply_patch(config, patch)
    return config


def release(config: dict[str, Any]) -> dict[str, Any]:
    (rel,) = config["deploy"]["helm"]["releases"]
    return dict(rel)


def sanitize(image: str) -> str:
    """Skaffold's name for an artifact in template variables: `/ - . :` become `_`."""
    return re.sub(r"[/\-.:]", "_", image)


def image_variables(config: dict[str, Any], pushed: bool) -> dict[str, str]:
    (artifact,) = config["build"]["artifacts"]
    name = sanitize(artifact["image"])
    return {
        f"IMAGE_REPO_{name}": artifact["image"],
        f"IMAGE_TAG_{name}": "0123abcd",
        f"IMAGE_DIGEST_{name}": DIGEST if pushed else "",
    }


def helm_args(
    config: dict[str, Any],
    expand: Callable[[str, Mapping[str, str]], str],
    variables: Mapping[str, str],
) -> list[str]:
    """The values arguments Skaffold's helm deployer passes (pkg/skaffold/helm/args.go)."""
    rel = release(config)
    args = []
    for key in sorted(rel.get("setValues", {})):
        args += ["--set", f"{key}={rel['setValues'][key]}"]
    for key in sorted(rel.get("setValueTemplates", {})):
        value = expand(str(rel["setValueTemplates"][key]), variables).removesuffix("@")
        args += ["--set", f"{expand(key, variables)}={value}"]
    for path in rel.get("valuesFiles", []):
        args += ["-f", str(ROOT / path)]
    return args
