"""Throwaway servers for tests and benchmarks: PostgreSQL, Redis, a TCP proxy, gunicorn.

Plain classes with no pytest dependency, so the reliability and bench tiers can use them too:

    from tests.servers import PostgresServer, RedisServer, GunicornServer, TcpProxy

(the repository root must be on ``sys.path``; pytest puts it there through ``pythonpath`` in
pyproject.toml). Every server binds 127.0.0.1 on a free port, keeps its files in its own
temporary directory and removes them on ``stop()``/``close()``; each is a context manager.
The pytest fixtures built on them are in ``tests/server_fixtures.py``.

PostgreSQL refuses to run as root: when we are root (as in CI), ``initdb`` and ``postgres`` run
as the unprivileged ``postgres`` user (created by Debian's package) through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_DIR = REPO_ROOT / "service"
GUNICORN_CONF = SERVICE_DIR / "gunicorn.conf.py"


# -- discovery -------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_postgres_bin() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres: Debian's newest, else the one on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for directory in candidates:
        if all((Path(directory) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(directory)
    return None


def find_redis_server() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )


def missing_servers() -> str | None:
    """Why the integration tier cannot run here, or None when it can."""
    missing = []
    if find_postgres_bin() is None:
        missing.append("PostgreSQL server binaries (initdb, pg_ctl, postgres)")
    if find_redis_server() is None:
        missing.append("redis-server")
    if os.geteuid() == 0 and _unprivileged_user() is None:
        missing.append("an unprivileged 'postgres' user to run PostgreSQL as (we are root)")
    if not missing:
        return None
    return (
        "integration tier needs "
        + " and ".join(missing)
        + " (Debian: apt-get install postgresql redis-server; scripts/install-system-deps.sh)"
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        return None


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, sorted (a /proc scan: not every kernel has .../children)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (after the parenthesised command name) is the parent PID.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            children.append(int(entry.name))
    return sorted(children)


class _Managed:
    def __enter__(self) -> Self:
        try:
            self.start()  # type: ignore[attr-defined]
        except BaseException:
            # A start that fails (e.g. gunicorn not ready in time) must not leave processes
            # running: __exit__ is not called when __enter__ raises.
            self.close()  # type: ignore[attr-defined]
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()  # type: ignore[attr-defined]


# -- PostgreSQL ------------------------------------------------------------------------------


class PostgresServer(_Managed):
    """A private PostgreSQL cluster: ``initdb`` on first start, password auth over TCP.

    ``stop()``/``start()`` restart it on the same port and data; ``freeze()``/``thaw()``
    SIGSTOP/SIGCONT every process of the cluster (a server that hangs with sockets open).
    """

    user = "heliox"

    def __init__(self, port: int | None = None, password: str = "heliox-test-secret") -> None:
        bindir = find_postgres_bin()
        if bindir is None:
            raise RuntimeError(missing_servers() or "PostgreSQL binaries not found")
        self.bindir = bindir
        self.port = port or free_port()
        self.password = password
        self.base = Path(tempfile.mkdtemp(prefix="heliox-pg-"))
        self.datadir = self.base / "data"
        self.logfile = self.base / "postgres.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            owner = _unprivileged_user()
            if owner is None:
                raise RuntimeError("running as root and there is no 'postgres' user")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
            self._as_user = ["runuser", "-u", owner.pw_name, "--"]
        self._initialized = False

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, *args],
            check=check,
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            timeout=60,
        )

    def _initdb(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_user:
            owner = _unprivileged_user()
            assert owner is not None
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.datadir),
            "-U", self.user,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        self._initialized = True

    def start(self, timeout: float = 30) -> None:
        if not self._initialized:
            self._initdb()
        # Durability off: these clusters are thrown away, and speed matters more.
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.base} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB"
        )
        result = self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.datadir),
            "-l", str(self.logfile),
            "-o", options,
            "-w", "-t", str(int(timeout)),
            "start",
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"postgres did not start: {result.stderr}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode: smart, fast or immediate); data and port are kept."""
        self.thaw()
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop",
            check=False,
        )  # fmt: skip

    def close(self) -> None:
        if self._initialized:
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _pids(self) -> list[int]:
        pid = self.postmaster_pid
        return [] if pid is None else [pid, *children_of(pid)]

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend: connects and queries hang, nothing fails.

        The postmaster first, then its children until no new one appears: a child forked
        between a listing and the postmaster's stop (a backend for a connection being opened,
        an autovacuum worker) would otherwise keep running and answer.
        """
        postmaster = self.postmaster_pid
        if postmaster is None:
            return
        stopped: set[int] = set()
        pending = [postmaster]
        while pending:
            for pid in pending:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)
            pending = [pid for pid in children_of(postmaster) if pid not in stopped]

    def thaw(self) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def url(
        self, dbname: str = "postgres", *, host: str = "127.0.0.1", port: int | None = None
    ) -> str:
        """A ``postgresql://`` URL (the service maps it to psycopg 3)."""
        return f"postgresql://{self.user}:{self.password}@{host}:{port or self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement in autocommit mode; return its rows (if any)."""
        import psycopg  # noqa: PLC0415 - only needed once a server runs

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password,
            dbname=dbname, autocommit=True, connect_timeout=5,
        ) as conn:  # fmt: skip
            cursor = conn.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def psql(self, script: str, dbname: str = "postgres", **variables: str) -> str:
        """Run a psql script as the superuser, with ``variables`` set (``-v name=value``).

        Quote them in the script as psql does, ``:"name"`` (an identifier) or ``:'name'`` (a
        literal), and any value is safe: a role name or password full of quotes and spaces.
        """
        args = [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
        args += ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", dbname]
        for name, value in variables.items():
            args += ["-v", f"{name}={value}"]
        result = subprocess.run(
            args,
            input=script,  # on stdin: psql does not interpolate variables in -c commands
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": self.password, "LC_ALL": "C"},
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr}")
        return result.stdout

    def create_database(self, name: str, template: str | None = None) -> str:
        suffix = f" TEMPLATE {template}" if template else ""
        self.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# -- Redis -----------------------------------------------------------------------------------


class RedisServer(_Managed):
    """A private redis-server without persistence. ``stop()``/``start()`` keep the port."""

    def __init__(self, port: int | None = None) -> None:
        binary = find_redis_server()
        if binary is None:
            raise RuntimeError("redis-server not found")
        self.binary = binary
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="heliox-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        log = (self.base / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.base),
                "--protected-mode", "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while self.command("PING") != "+PONG":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {self.port}")
            time.sleep(0.02)

    def command(self, *args: str) -> str | None:
        """Send one command (inline protocol); the first reply line, or None if unreachable."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall((" ".join(args) + "\r\n").encode())
                return s.recv(65536).decode().split("\r\n", 1)[0]
        except OSError:
            return None

    def keys(self, pattern: str = "*") -> list[str]:
        import redis  # noqa: PLC0415

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        try:
            return sorted(k.decode() for k in client.keys(pattern))
        finally:
            client.close()

    def stop(self) -> None:
        self.thaw()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def freeze(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


# -- TCP proxy -------------------------------------------------------------------------------


class TcpProxy(_Managed):
    """Forwards 127.0.0.1:port to a target; ``blackhole()`` makes the target unreachable.

    Black-holed, the proxy keeps accepting connections but never answers, and stops moving
    bytes on connections already open: what a client sees when a network path drops packets.
    ``restore()`` resumes forwarding (connections that were stalled are cut, as after a real
    partition). ``cut()`` resets every open connection at once.
    """

    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._stopping = False

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept").start()

    def _track(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.update(socks)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            if not self._forwarding.is_set():
                continue  # held open, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self._track(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._forwarding.wait()
                if self._stopping:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def blackhole(self) -> None:
        self._forwarding.clear()

    def restore(self) -> None:
        self.cut()
        self._forwarding.set()

    def cut(self) -> None:
        with self._lock:
            socks, self._open = self._open, set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._stopping = True
        self._forwarding.set()
        if self._listener is not None:
            self._listener.close()
        self.cut()


# -- gunicorn --------------------------------------------------------------------------------


# The admin key every GunicornServer is bootstrapped with (BOOTSTRAP_API_KEY, as the chart
# does): the service stores its hash at start, and clients send ``AUTH_HEADER``.
TEST_API_KEY = "hx_servertests0_" + "TestKeyOfTheGunicornServerFixtureNotASecret0"
AUTH_HEADER = {"X-API-Key": TEST_API_KEY}


class GunicornServer(_Managed):
    """The service as the image runs it: gunicorn with gunicorn.conf.py and uvicorn workers.

    ``env`` is added to the current environment (DATABASE_URL, REDIS_URL, WEB_CONCURRENCY, ...).
    Output (our log lines) goes to ``log_path``; ``log()`` reads it back. The admin key
    ``TEST_API_KEY`` is bootstrapped unless ``env`` sets ``BOOTSTRAP_API_KEY`` (empty: none).
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        workers: int = 2,
        app: str = "heliox.main:app",
    ) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="heliox-gunicorn-"))
        self.log_path = self.base / "gunicorn.log"
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": str(workers),
            "LOG_LEVEL": "INFO",
            "PROMETHEUS_MULTIPROC_DIR": str(self.base / "metrics"),
            "BOOTSTRAP_API_KEY": TEST_API_KEY,
            **(env or {}),
        }
        self.app = app
        self.workers = int(self.env["WEB_CONCURRENCY"])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start gunicorn without waiting for it (see ``start`` for the waiting kind)."""
        (self.base / "metrics").mkdir(exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), self.app],
            cwd=self.base,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self.process

    def start(self, timeout: float = 30) -> None:
        """Start; wait until /health answers and every worker has finished its startup."""
        process = self.spawn()
        deadline = time.monotonic() + timeout
        while not (self._answers() and self.workers_started() >= self.workers):
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"gunicorn not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def workers_started(self) -> int:
        """How many workers have logged uvicorn's "Application startup complete"."""
        return self.log().count("Application startup complete")

    def worker_pids(self) -> list[int]:
        return [] if self.process is None else children_of(self.process.pid)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (graceful) and wait; SIGKILL if it does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Temporarily set environment variables (for code that reads os.environ)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _server_end_inode(server_port: int, client_port: int) -> str | None:
    """The socket inode of the server's end of 127.0.0.1:client_port -> :server_port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == server_port and int(remote, 16) == client_port:
            return fields[9]
    return None


def _owner(inode: str, pids: list[int]) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def worker_of(server: GunicornServer, connection: socket.socket, timeout: float = 5) -> int:
    """The worker that accepted this client connection."""
    client_port = connection.getsockname()[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inode = _server_end_inode(server.port, client_port)
        owner = _owner(inode, server.worker_pids()) if inode and inode != "0" else None
        if owner is not None:
            return owner
        time.sleep(0.02)
    raise AssertionError(f"no worker holds the connection from port {client_port}")
