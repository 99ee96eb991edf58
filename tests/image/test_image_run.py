"""The image's command lines, run as the image runs them, without a container engine.

A private mount namespace stands in for the container: the files the Dockerfile's runtime stage
copies are laid out in a WORKDIR as the image lays them out, every mount is remounted read-only
(the pod's `readOnlyRootFilesystem`), and only a fresh tmpfs for TMPDIR and a fresh /dev/shm
are writable (the chart's two emptyDirs). The processes run as the image's numeric UID with no
capabilities. In that jail, against a throwaway PostgreSQL with ENV=production:
the chart's migration Job and init container commands, then the image's CMD (gunicorn), its
API, its HEALTHCHECK command, and a graceful SIGTERM.

What stays for the kind tier: the real image (its Python, tini as PID 1, Debian's packages),
built and pulled by a kubelet with the chart's exact mounts.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import (
    AUTH_HEADER,
    TEST_API_KEY,
    PostgresServer,
    children_of,
    find_postgres_bin,
    free_port,
)

from .dockerfile import Dockerfile, copies
from .helpers import DOCKERFILE, ROOT, find, render

TIMEOUT = 60


def _need_root_tools() -> str | None:
    missing = [t for t in ("unshare", "setpriv", "mount") if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} (util-linux)"
    if os.geteuid() != 0:
        return "needs root to make a private mount namespace (CI runs as root)"
    if find_postgres_bin() is None:
        return "needs PostgreSQL server binaries (scripts/install-system-deps.sh)"
    return None


pytestmark = pytest.mark.skipif(_need_root_tools() is not None, reason=_need_root_tools() or "")


def _blocked_ancestors(paths: list[Path]) -> dict[Path, set[str]]:
    """Directories on the way to `paths` that others cannot traverse (mode without o+x), with
    the child names the image user needs inside each."""
    blocked: dict[Path, set[str]] = {}
    for path in paths:
        parts = path.parts
        for depth in range(1, len(parts)):
            directory = Path(*parts[:depth])
            if not os.stat(directory).st_mode & 0o001:
                blocked.setdefault(directory, set()).add(parts[depth])
    return blocked


def _jail_script(layout: Path, uid: str, gid: str, traverse: dict[Path, set[str]]) -> str:
    """Shell run as root in a fresh mount namespace; ends by running the given commands as the
    image user (args: migrate command lines separated by ';;', then the server command)."""
    q = shlex.quote
    lines = ["set -u"]
    # 1. Directories the image user must traverse but cannot (e.g. a 0700 home holding the
    #    interpreter): a private 0755 tmpfs over each, with only the needed entries moved in.
    hold = layout / ".hold"
    n = 0
    for directory in sorted(traverse, key=lambda p: len(p.parts)):
        moves = []
        for child in sorted(traverse[directory]):
            src, spot = directory / child, hold / str(n)
            n += 1
            if src.is_dir():
                spot.mkdir(parents=True)
                make = f"mkdir {q(str(src))}"
            else:
                spot.parent.mkdir(parents=True, exist_ok=True)
                spot.touch()
                make = f"touch {q(str(src))}"
            lines.append(f"mount --rbind {q(str(src))} {q(str(spot))}")
            moves.append((make, spot, src))
        lines.append(f"mount -t tmpfs -o mode=0755,size=1m heliox-traverse {q(str(directory))}")
        for make, spot, src in moves:
            lines += [make, f"mount --move {q(str(spot))} {q(str(src))}"]
    # 2. Read-only root filesystem: every mount but the kernel's /proc, /sys and /dev.
    lines.append(
        "awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r m; do "
        'case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac; '
        'mount -o remount,bind,ro "$m" 2>/dev/null || echo "jail: could not remount $m ro"; '
        "done"
    )
    for probe in (layout / "app" / ".probe", ROOT / ".probe"):
        lines.append(
            f"if touch {q(str(probe))} 2>/dev/null; then rm -f {q(str(probe))}; "
            f"echo 'jail: {probe.parent} is writable'; exit 90; fi"
        )
    # 3. The two writable places: TMPDIR (the chart's /tmp emptyDir) and /dev/shm.
    lines += [
        f"mount -t tmpfs -o mode=1777,size=64m heliox-tmp {q(str(layout / 'tmp'))}",
        "mount -t tmpfs -o mode=1777,size=64m heliox-shm /dev/shm",
        f"cd {q(str(layout / 'app'))}",
        f"drop='setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs "
        "--inh-caps=-all --bounding-set=-all --'",
        # 4. The migration commands, each must succeed, then the server in the background with
        #    SIGTERM forwarded (tini's job in the image).
        'while [ "$1" != "--" ]; do cmd="$1"; shift; echo "jail: running $cmd"; '
        '$drop $cmd || { echo "jail: $cmd exited $?"; exit 91; }; done; shift',
        'echo "jail: starting $*"',
        '$drop "$@" & pid=$!',
        "trap 'kill -TERM $pid' TERM",
        "wait $pid; status=$?; if [ $status -gt 128 ]; then wait $pid; status=$?; fi",
        'echo "jail: server exited $status"',
        f"echo 'jail: left in scratch:'; find {q(str(layout / 'tmp'))} /dev/shm -mindepth 1",
        "exit $status",
    ]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers or {}), timeout=5
        ) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def jail_run(postgres: PostgresServer) -> Iterator[dict[str, Any]]:
    """Lay the runtime stage out, start its CMD in the jail; yield what the tests need."""
    dockerfile = Dockerfile.parse(DOCKERFILE)
    runtime = dockerfile.stage("runtime")
    layout = Path(tempfile.mkdtemp(prefix="heliox-image-"))
    layout.chmod(0o755)
    workdir_in_image = runtime.workdir
    # What the app stage copies from the build context, where it copies it (the venv, copied
    # from the build stage, is this checkout's .venv: same lock, same packages).
    for c in copies(dockerfile):
        if c.stage.name != "app" or c.from_stage is not None:
            continue
        for src in c.sources:
            dest = c.dest
            if dest.endswith("/"):
                dest += Path(src).name
            target = layout / "app" / Path(dest).relative_to(workdir_in_image)
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / src).is_dir():
                shutil.copytree(
                    ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                shutil.copy2(ROOT / src, target)
    (layout / "tmp").mkdir()
    for p in [layout, *layout.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)

    def in_layout(image_path: str) -> str:
        return str(layout / "app" / Path(image_path).relative_to(workdir_in_image))

    uid, _, gid = runtime.user.partition(":")
    python = Path(os.path.realpath(sys.executable))
    traverse = _blocked_ancestors([python, ROOT / ".venv", ROOT / "service", layout])
    port = free_port()
    env = {
        **{k: v for k, v in runtime.env.items() if k != "PATH"},
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HELIOX_MIGRATIONS_DIR": in_layout(runtime.env["HELIOX_MIGRATIONS_DIR"]),
        "HOME": "/nonexistent",
        "TMPDIR": str(layout / "tmp"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "LANG": "C.UTF-8",
        "DATABASE_URL": postgres.create_database("heliox_image"),
        "BOOTSTRAP_API_KEY": TEST_API_KEY,  # as the chart's Secret gives it
    }
    # The chart's migration command lines (Job, then the API pods' init container).
    docs = render()
    job = find(docs, "Job")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    init = find(docs, "Deployment")[0]["spec"]["template"]["spec"]["initContainers"][0]["args"]
    migrate = [shlex.join(job), shlex.join(init)]
    log_path = layout.parent / f"{layout.name}.log"
    script = _jail_script(layout, uid, gid, traverse)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                "unshare", "--mount", "--propagation", "private",
                "sh", "-c", script, "jail", *migrate, "--", *runtime.cmd,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )  # fmt: skip

    def output() -> str:
        return log_path.read_text(errors="replace")

    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + TIMEOUT
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the jailed run exited {proc.returncode}:\n{output()}")
            try:
                if _get(f"{url}/health")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /health after {TIMEOUT}s:\n{output()}")
            time.sleep(0.1)
        yield {
            "url": url,
            "port": port,
            "proc": proc,
            "output": output,
            "runtime": runtime,
            "uid": int(uid),
        }
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(layout, ignore_errors=True)
        log_path.unlink(missing_ok=True)


def test_migration_commands_ran_in_the_jail(jail_run: dict[str, Any]) -> None:
    out = jail_run["output"]()
    assert "jail: running heliox-migrate upgrade" in out
    assert "jail: running heliox-migrate" in out.split("jail: running heliox-migrate upgrade")[1]
    assert "could not remount" not in out, out


def test_the_image_command_serves_as_the_image_user(jail_run: dict[str, Any]) -> None:
    url = jail_run["url"]
    assert _get(f"{url}/health") == (200, b'{"status":"ok"}')
    status, body = _get(f"{url}/health/db")
    assert status == 200, body
    assert json.loads(body)["database"] == "connected"
    # A write and a read through the API: the database, not the filesystem, takes them.
    request = urllib.request.Request(
        f"{url}/api/v1/items",
        data=json.dumps({"name": "jailed", "description": "read-only root"}).encode(),
        headers={"Content-Type": "application/json", **AUTH_HEADER},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.status == 201
        item = json.loads(r.read())
    assert _get(f"{url}/api/v1/items/{item['id']}", AUTH_HEADER)[0] == 200
    assert _get(f"{url}/api/v1/items/{item['id']}")[0] == 401
    status, metrics = _get(f"{url}/metrics")  # summed from multiprocess files in /dev/shm
    assert status == 200
    assert b"heliox_http_requests_total{" in metrics
    assert b'method="POST"' in metrics
    # The processes really run as the image's UID: the gunicorn master and its workers.
    master = [p for p in children_of(jail_run["proc"].pid) if b"gunicorn" in _cmdline(p)]
    assert len(master) == 1
    workers = children_of(master[0])
    assert len(workers) == 2
    assert {_uid(p) for p in [*master, *workers]} == {jail_run["uid"]}


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # the effective UID
    raise AssertionError(f"no Uid line for {pid}")


def test_healthcheck_command_answers(jail_run: dict[str, Any]) -> None:
    """The Dockerfile's HEALTHCHECK command, as written, against the running server."""
    hc = jail_run["runtime"].healthcheck
    argv = json.loads(hc.args.split(None, 1)[1])
    env = {**os.environ, "PORT": str(jail_run["port"])}
    ok = subprocess.run([sys.executable, *argv[1:]], env=env, timeout=10, check=False)
    assert ok.returncode == 0
    env["PORT"] = str(free_port())  # nothing listens there
    down = subprocess.run(
        [sys.executable, *argv[1:]], env=env, capture_output=True, timeout=10, check=False
    )
    assert down.returncode != 0


def test_sigterm_drains_and_leaves_no_scratch(jail_run: dict[str, Any]) -> None:
    """Last: SIGTERM (as tini forwards it) ends gunicorn with 0, nothing failed on a read-only
    path, and the scratch space is left empty."""
    proc = jail_run["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(TIMEOUT) == 0, jail_run["output"]()
    out = jail_run["output"]()
    assert "jail: server exited 0" in out
    for problem in ("Read-only file system", "Permission denied", "Traceback"):
        assert problem not in out, out
    left = out.split("jail: left in scratch:", 1)[1].split()
    assert left == [], out
