"""skaffold.yaml, checked without Skaffold (it cannot be installed here): the v4beta14 schema,
what Skaffold would hand to helm for each profile, and that the chart accepts it.

Each profile's config is the base with the profile's JSON patches applied (what Skaffold does);
its helm arguments are built as Skaffold's helm deployer builds them (setValues, then
setValueTemplates expanded by Go's text/template with the image variables and the trailing "@"
of a digest-less image dropped, then valuesFiles), and `helm template` renders them.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from .dockerfile import Dockerfile, copies
from .helpers import CHART, DOCKERFILE, K8S, ROOT, SKAFFOLD, find, helm, render
from .skaffoldcfg import (
    DIGEST,
    PROFILES,
    effective,
    helm_args,
    image_variables,
    load,
    release,
    sanitize,
)

SCHEMA = Path(__file__).resolve().parent / "schemas" / "skaffold-v4beta14.json"
API_VERSION = "skaffold/v4beta14"


def render_profile(
    profile: str,
    expand: Callable[[str, Mapping[str, str]], str],
    pushed: bool = False,
    env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    config = effective(profile)
    rel = release(config)
    variables = {**image_variables(config, pushed), **(env or {})}
    return render(rel["name"], rel["namespace"], extra=helm_args(config, expand, variables))


# --- the file itself --------------------------------------------------------------------------


def test_api_version_and_kind() -> None:
    """The schema leaves apiVersion free: it is checked here."""
    config = load()
    assert config["apiVersion"] == API_VERSION
    assert config["kind"] == "Config"
    assert json.loads(SCHEMA.read_text())["definitions"]["SkaffoldConfig"]


@pytest.mark.parametrize("profile", PROFILES)
def test_valid_against_the_v4beta14_schema(profile: str) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    document = load() if not profile else effective(profile)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=str)
    assert errors == [], "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_rejects_unknown_keys() -> None:
    """The validation above is strict: a misspelt key fails it."""
    schema = json.loads(SCHEMA.read_text())
    broken = load()
    broken["deploy"]["helm"]["releases"][0]["skipBuildDependency"] = True
    assert list(jsonschema.Draft7Validator(schema).iter_errors(broken))


def test_profiles() -> None:
    names = [p["name"] for p in load()["profiles"]]
    assert names == ["dev", "external-db"]


@pytest.mark.parametrize("profile", PROFILES)
def test_deploys_with_helm_not_rendered_manifests(profile: str) -> None:
    """deploy.helm runs `helm upgrade --install` and so the hooks; manifests.helm would render
    with `helm template` and drop the pre-upgrade migration Job."""
    config = effective(profile)
    assert "manifests" not in config
    assert set(config["deploy"]) == {"helm"}
    rel = release(config)
    assert (ROOT / rel["chartPath"]).resolve() == CHART
    assert rel["skipBuildDependencies"] is True
    assert rel.get("wait") is not True, "Skaffold's own status check waits for the rollout"


@pytest.mark.parametrize("profile", PROFILES)
def test_one_artifact_from_the_dockerfile(profile: str) -> None:
    config = effective(profile)
    (artifact,) = config["build"]["artifacts"]
    assert (ROOT / artifact.get("context", ".") / artifact["docker"]["dockerfile"]) == DOCKERFILE
    stages = [s.name for s in Dockerfile.parse(DOCKERFILE).stages]
    target = artifact["docker"]["target"]
    assert target == ("dev" if profile == "dev" else "runtime")
    assert target in stages


@pytest.mark.parametrize("profile", PROFILES)
def test_templates_name_the_artifact(profile: str) -> None:
    """Every {{.IMAGE_*_x}} names the artifact as Skaffold spells it, and the image is set."""
    config = effective(profile)
    (artifact,) = config["build"]["artifacts"]
    name = sanitize(artifact["image"])
    templates = release(config)["setValueTemplates"]
    used = re.findall(r"\{\{\s*\.IMAGE_(?:REPO|TAG|DIGEST)_([A-Za-z0-9_]+)\s*\}\}", str(templates))
    assert used
    assert set(used) == {name}
    assert templates["image.repository"] == f"{{{{.IMAGE_REPO_{name}}}}}"
    assert templates["image.tag"] == f"{{{{.IMAGE_TAG_{name}}}}}@{{{{.IMAGE_DIGEST_{name}}}}}"


def test_no_pull_policy_always() -> None:
    """`kind load`ed images are only on the nodes: `Always` would make kubelet pull them."""
    assert "Always" not in SKAFFOLD.read_text()
    for profile in PROFILES:
        values = release(effective(profile)).get("setValues", {})
        assert values.get("image.pullPolicy") == "IfNotPresent"


# --- every values key exists in the chart -----------------------------------------------------


def _flatten(prefix: str, value: Any) -> list[str]:
    if isinstance(value, dict) and value:
        return [k for key, v in value.items() for k in _flatten(f"{prefix}{key}.", v)]
    return [prefix.rstrip(".")]


def chart_has(dotted: str) -> bool:
    """Walk a dotted key through values.schema.json, into a subchart's schema where the parent's
    leaves it open, and through values.yaml where a schema object is free-form."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values: Any = yaml.safe_load((CHART / "values.yaml").read_text())
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        props = schema.get("properties", {})
        if part in props:
            schema = props[part]
            values = values.get(part) if isinstance(values, dict) else None
            sub = CHART / "charts" / part
            if i == 0 and (sub / "values.schema.json").exists():
                schema = json.loads((sub / "values.schema.json").read_text())
                values = yaml.safe_load((sub / "values.yaml").read_text())
            continue
        if isinstance(values, dict) and part in values:
            schema, values = {}, values[part]
            continue
        return False
    return True


def test_key_walk_is_strict() -> None:
    assert chart_has("containerSecurityContext.readOnlyRootFilesystem")
    assert chart_has("postgresql.auth.existingSecret")
    assert not chart_has("image.digests")
    assert not chart_has("postgresql.auth.nope")
    assert not chart_has("externalDatabase.hostname")


@pytest.mark.parametrize("profile", PROFILES)
def test_every_values_key_exists_in_the_chart(profile: str) -> None:
    rel = release(effective(profile))
    keys = [*rel.get("setValues", {}), *rel.get("setValueTemplates", {})]
    for path in rel.get("valuesFiles", []):
        keys += _flatten("", yaml.safe_load((ROOT / path).read_text()))
    assert keys
    missing = [k for k in keys if not chart_has(k)]
    assert missing == [], f"{profile or 'default'}: keys the chart does not have: {missing}"


# --- what helm gets from Skaffold, rendered -------------------------------------------------


def _api(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(docs, "Deployment", "heliox")
    (api,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "api"]
    return dict(api)


@pytest.mark.parametrize("pushed", [False, True], ids=["kind-load", "pushed"])
def test_default_profile_renders_the_built_image(
    pushed: bool, go_template: Callable[[str, Mapping[str, str]], str]
) -> None:
    docs = render_profile("", go_template, pushed=pushed)
    expected = "heliox:0123abcd" + (f"@{DIGEST}" if pushed else "")
    images = {c["image"] for d in docs for c in _containers(d) if c["image"].startswith("heliox")}
    assert images == {expected}
    assert _api(docs)["imagePullPolicy"] == "IfNotPresent"


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    pod = spec.get("template", {}).get("spec") if "template" in spec else spec
    if not isinstance(pod, dict):
        return []
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def test_port_forward_targets_the_api_service(
    go_template: Callable[[str, Mapping[str, str]], str],
) -> None:
    config = effective("")
    (forward,) = config["portForward"]
    rel = release(config)
    docs = render_profile("", go_template)
    assert forward["resourceType"].lower() == "service"
    assert forward["namespace"] == rel["namespace"]
    (service,) = find(docs, "Service", forward["resourceName"])
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == forward["port"]]
    api = _api(docs)
    (container_port,) = [p for p in api["ports"] if p["name"] == port["targetPort"]]
    assert container_port["containerPort"] == 8000
    assert forward["localPort"] == 8000


def test_namespace_hook_applies_the_restricted_namespace() -> None:
    config = effective("")
    (hook,) = config["deploy"]["helm"]["hooks"]["before"]
    command = " ".join(hook["host"]["command"])
    assert "$SKAFFOLD_KUBE_CONTEXT" in command, "the context Skaffold deploys to, not the current"
    manifest = re.search(r"apply -f (\S+)", command)
    assert manifest
    namespace = yaml.safe_load((ROOT / manifest.group(1)).read_text())
    assert namespace["kind"] == "Namespace"
    assert namespace["metadata"]["name"] == release(config)["namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_dev_profile_runs_the_dev_image_writable_in_development(
    go_template: Callable[[str, Mapping[str, str]], str],
) -> None:
    docs = render_profile("dev", go_template)
    api = _api(docs)
    assert api["securityContext"]["readOnlyRootFilesystem"] is False
    assert api["securityContext"]["runAsNonRoot"] is True
    assert "command" not in api
    assert "args" not in api, "the dev image's own CMD (uvicorn --reload) runs"
    (config_map,) = find(docs, "ConfigMap", "heliox")
    assert config_map["data"]["ENV"] == "development"
    (deployment,) = find(docs, "Deployment", "heliox")
    assert deployment["spec"]["replicas"] == 1
    # The chart has one containerSecurityContext for its Heliox containers (API, init container,
    # migration Job, test pod); the bundled PostgreSQL and Redis stay read-only.
    containers = [(c["image"], c) for d in docs for c in _containers(d)]
    stores = [c for image, c in containers if not image.startswith("heliox:")]
    assert len(stores) >= 2
    assert all(c["securityContext"]["readOnlyRootFilesystem"] is True for c in stores)
    assert all(
        c["securityContext"]["readOnlyRootFilesystem"] is False
        for image, c in containers
        if image.startswith("heliox:")
    )


def _tracked() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [f for f in out.split("\0") if f]


def _glob(pattern: str, path: str) -> bool:
    """Skaffold's sync globs: `**` spans directories, `*` stays within one."""
    regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
    regex = regex.replace(r"\*", "[^/]*")
    return re.fullmatch(regex, path) is not None


def test_dev_sync_lands_in_the_dev_images_writable_source() -> None:
    """Each synced file goes where the dev image keeps that file, owned by the app user, and
    every Python file of the service is synced (any other change rebuilds)."""
    (artifact,) = effective("dev")["build"]["artifacts"]
    rules = artifact["sync"]["manual"]
    dockerfile = Dockerfile.parse(DOCKERFILE)
    dev = dockerfile.stage("dev")
    owned = {
        c.dest.rstrip("/"): c.sources[0]
        for c in copies(dockerfile)
        if c.stage.name == "dev" and c.chown == dev.user
    }
    tracked = _tracked()
    covered = set()
    for rule in rules:
        matched = [f for f in tracked if _glob(rule["src"], f)]
        assert matched, f"sync rule {rule['src']} matches no file"
        for f in matched:
            rel = f.removeprefix(rule.get("strip", ""))
            dest = str(PurePosixPath(rule["dest"]) / rel)
            homes = [d for d, src in owned.items() if dest.startswith(d + "/")]
            assert homes, f"{f} would sync to {dest}, outside the dev image's owned source"
            assert dest.removeprefix(homes[0] + "/") == f.removeprefix(owned[homes[0]] + "/")
            covered.add(f)
    service_py = [f for f in tracked if fnmatch.fnmatch(f, "service/heliox/*.py")]
    assert service_py
    assert [f for f in tracked if f.startswith("service/heliox/") and f.endswith(".py")] == [
        f for f in tracked if f in covered and f.startswith("service/heliox/")
    ]


@pytest.mark.parametrize("pushed", [False, True], ids=["kind-load", "pushed"])
def test_external_db_profile(
    pushed: bool, go_template: Callable[[str, Mapping[str, str]], str]
) -> None:
    env = {"HELIOX_DB_HOST": "db.example.internal", "HELIOX_DB_NAME": "app"}
    docs = render_profile("external-db", go_template, pushed=pushed, env=env)
    assert not find(docs, "StatefulSet"), "no bundled PostgreSQL or Redis"
    (secret,) = find(docs, "Secret", "heliox")
    import base64  # noqa: PLC0415

    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["DATABASE_URL"] == "postgresql+psycopg://heliox@db.example.internal:5432/app"
    assert "REDIS_URL" not in data, "no HELIOX_REDIS_HOST: the API runs without Redis"
    env_vars = {e["name"]: e for e in _api(docs).get("env", [])}
    assert env_vars["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "heliox-external-db",
        "key": "password",
    }


def test_external_db_profile_refuses_without_a_host(
    go_template: Callable[[str, Mapping[str, str]], str],
) -> None:
    config = effective("external-db")
    rel = release(config)
    args = helm_args(config, go_template, image_variables(config, pushed=False))
    proc = helm("template", rel["name"], str(CHART), "-n", rel["namespace"], *args, check=False)
    assert proc.returncode != 0
    assert "no database configured" in proc.stderr


def test_values_files_are_under_k8s_values() -> None:
    for profile in PROFILES:
        for path in release(effective(profile)).get("valuesFiles", []):
            assert (ROOT / path).resolve().parent == K8S / "values"
