"""kind tier: what `skaffold dev` and `skaffold run` do with skaffold.yaml, without the skaffold
binary (it cannot be installed here: replace directives, and its repository is archived from
2027-01-29), on the tier's kind cluster.

For each profile, as a developer would try them (no profile, `dev`, `external-db`):
- the artifact built as Skaffold builds it: `docker build` of the profile's Dockerfile target
  from the repository root (on the Python base in use: offline, the Debian-built one);
- loaded into the node with `kind load docker-image`, as Skaffold does for a `kind-*` context;
- the profile's before-deploy hook run as written, with `SKAFFOLD_KUBE_CONTEXT` set;
- the chart installed with `helm upgrade --install` and exactly the values arguments Skaffold's
  helm deployer passes (tests/image/skaffoldcfg.py; the image tag from the built image), plus,
  offline only, the store images in use;
- the port-forward target (`svc/heliox:80`) answering; then the release uninstalled, as Ctrl-C
  on `skaffold dev` does.
`dev`: a file synced as its sync rule says (a tar stream unpacked into the running pod, as
Skaffold syncs) makes uvicorn reload with the new code. `external-db`: the API reaches the
database named by `HELIOX_DB_*` and the Secret the README says to create.

What still needs Skaffold itself: its file watcher and rebuild loop, the inputDigest tag,
`skaffold dev`'s own port-forward manager and log tailing.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from controlplane import ROOT, Cluster, NotReady
from kindcluster import store_values
from scenarios import Context
from scenarios.context import values_file
from scenarios.traffic import PortForward, http

from tests import dockerenv
from tests.image import gocheck
from tests.image.skaffoldcfg import effective, helm_args, image_variables, release, sanitize

NAMESPACE = "heliox"  # skaffold.yaml's release namespace, made by its hook
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def expand(tmp_path_factory: pytest.TempPathFactory) -> gocheck.Expand:
    return gocheck.template_expander(gocheck.build(tmp_path_factory.mktemp("gocheck") / "gocheck"))


@pytest.fixture(scope="module")
def skaffold_ns(kind_cluster: Cluster) -> Iterator[Cluster]:
    yield kind_cluster
    kind_cluster.delete_namespace(NAMESPACE, wait=True)


def kube_context(c: Cluster) -> str:
    return c.kubectl("config", "current-context").stdout.strip()


def build_artifact(c: Cluster, config: dict[str, Any]) -> tuple[str, str]:
    """docker build of the artifact as Skaffold's local docker builder does; kind load."""
    (artifact,) = config["build"]["artifacts"]
    target = artifact["docker"]["target"]
    python = dockerenv.python_image(c.progress)
    image = artifact["image"]
    tag = f"skaffold-{target}-{uuid.uuid4().hex[:6]}"
    c.run(
        ["docker", "build", "-q", "--target", target, "--build-arg", f"PYTHON_IMAGE={python}",
         "-f", str(ROOT / artifact["docker"]["dockerfile"]), "-t", f"{image}:{tag}",
         str(ROOT / artifact["context"])],
        timeout=1800,
    )  # fmt: skip
    c.info["kind"].load(f"{image}:{tag}")
    c.progress(f"skaffold artifact {image} built (target {target}) and loaded as :{tag}")
    return image, tag


def run_hooks(c: Cluster, config: dict[str, Any]) -> None:
    for hook in config["deploy"]["helm"].get("hooks", {}).get("before", []):
        env = {**c.env, "SKAFFOLD_KUBE_CONTEXT": kube_context(c)}
        subprocess.run(hook["host"]["command"], cwd=ROOT, env=env, check=True, timeout=120)


def deploy(
    c: Cluster, profile: str, expand: gocheck.Expand, env: dict[str, str] | None = None
) -> Context:
    """One `skaffold run -p <profile>`: build, load, hooks, helm upgrade --install."""
    config = effective(profile)
    rel = release(config)
    image, tag = build_artifact(c, config)
    run_hooks(c, config)
    variables = {**image_variables(config, pushed=False), **(env or {})}
    variables[f"IMAGE_TAG_{sanitize(image)}"] = tag
    offline = values_file(store_values(c.info["stores"]))
    c.run(
        ["helm", "upgrade", "--install", rel["name"], str(ROOT / rel["chartPath"]),
         "-n", rel["namespace"], "--wait", "--timeout", "10m",
         *helm_args(config, expand, variables), "-f", str(offline)],
        timeout=900,
    )  # fmt: skip
    ctx = Context(cluster=c, namespace=rel["namespace"], release=rel["name"], simulated=False)
    c.progress(f"skaffold profile {profile or '(none)'}: release {rel['name']} deployed")
    return ctx


def port_forward_target(config: dict[str, Any]) -> dict[str, Any]:
    (pf,) = config["portForward"]
    return dict(pf)


def undeploy(ctx: Context) -> None:
    ctx.cluster.run(["helm", "uninstall", ctx.release, "-n", ctx.namespace, "--wait"], timeout=600)


def root_info(ctx: Context) -> dict[str, Any]:
    pf = port_forward_target(effective(""))
    assert (pf["resourceType"], pf["resourceName"], pf["port"]) == ("service", ctx.fullname, 80)
    with PortForward(ctx, port=pf["port"]) as fwd:
        status, body = http("GET", f"{fwd.url}/health/db")
        assert status == 200, body
        status, body = http("GET", f"{fwd.url}/")
        assert status == 200, body
    return dict(body)


def test_default_profile_builds_runtime_and_serves(
    skaffold_ns: Cluster, expand: gocheck.Expand
) -> None:
    ctx = deploy(skaffold_ns, "", expand)
    try:
        ns = skaffold_ns.get("namespace", NAMESPACE)
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        assert root_info(ctx)["environment"] == "production"
    finally:
        undeploy(ctx)


def synced_tar(files: dict[str, bytes]) -> bytes:
    """What Skaffold streams into the pod for a manual sync: a tar of the files at their
    destinations (dest + the path relative to the context)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name.lstrip("/"))
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_dev_profile_syncs_source_and_reloads(skaffold_ns: Cluster, expand: gocheck.Expand) -> None:
    config = effective("dev")
    rule = next(
        r
        for r in config["build"]["artifacts"][0]["sync"]["manual"]
        if r["src"].startswith("service/")
    )
    ctx = deploy(skaffold_ns, "dev", expand)
    try:
        assert root_info(ctx)["environment"] == "development"
        source = ROOT / "service" / "heliox" / "__init__.py"
        marker = f"0.1.0+synced.{uuid.uuid4().hex[:6]}"
        changed = source.read_text().replace('__version__ = "0.1.0"', f'__version__ = "{marker}"')
        assert marker in changed, "service/heliox/__init__.py no longer sets __version__ = 0.1.0"
        dest = f"{rule['dest']}/{source.relative_to(ROOT)}"
        pod = next(
            p["metadata"]["name"]
            for p in skaffold_ns.items("pods", NAMESPACE, ctx.component("api"))
            if not p["metadata"].get("deletionTimestamp")
        )
        # Skaffold's sync: `kubectl exec ... tar xmf - -C / --no-same-owner`, the tar on stdin.
        synced = subprocess.run(
            [skaffold_ns.kubectl_bin, "exec", "-i", pod, "-c", "api", "-n", NAMESPACE, "--",
             "tar", "xmf", "-", "-C", "/", "--no-same-owner"],
            input=synced_tar({dest: changed.encode()}),
            capture_output=True, env=skaffold_ns.env, timeout=60, check=False,
        )  # fmt: skip
        assert synced.returncode == 0, synced.stderr.decode(errors="replace")

        def reloaded() -> bool:
            got = root_info(ctx)["version"]
            if got != marker:
                raise NotReady(f"GET / still says version {got}")
            return True

        skaffold_ns.wait_for("uvicorn to reload the synced file", reloaded, 90, interval=2)
        skaffold_ns.progress(f"dev sync: {dest} copied into {pod}; uvicorn reloaded it")
    finally:
        undeploy(ctx)


def test_external_db_profile_uses_the_named_database(
    skaffold_ns: Cluster, expand: gocheck.Expand
) -> None:
    c = skaffold_ns
    password = "skaffold-external-pw"
    values = store_values(c.info["stores"])["postgresql"]
    c.run(
        ["helm", "upgrade", "--install", "ext-pg", str(ROOT / "charts/heliox/charts/postgresql"),
         "-n", NAMESPACE, "--set", f"auth.password={password}",
         "--set", f"image.repository={values['image']['repository']}",
         "--set", f"image.tag={values['image']['tag']}", "--wait", "--timeout", "10m"],
        timeout=900,
    )  # fmt: skip
    c.kubectl(
        "create", "secret", "generic", "heliox-external-db", "-n", NAMESPACE,
        f"--from-literal=password={password}",
    )  # fmt: skip
    env = {"HELIOX_DB_HOST": "ext-pg-postgresql"}
    ctx = deploy(c, "external-db", expand, env)
    try:
        assert root_info(ctx)["environment"] == "production"
        assert not c.items("statefulsets", NAMESPACE, ctx.selector), "bundled stores installed"
    finally:
        undeploy(ctx)
        c.run(["helm", "uninstall", "ext-pg", "-n", NAMESPACE, "--wait"], timeout=600)
