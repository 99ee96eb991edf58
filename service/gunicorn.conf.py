"""gunicorn settings for the Heliox image: ``gunicorn -c gunicorn.conf.py heliox.main:app``.

Every value comes from the environment (names in docs/ARCHITECTURE.md, "Configuration").
This file runs in the master, before any worker exists; it imports only the standard library
and heliox's logging module. With one worker the master stays small and the worker imports the
app; with two or more the master imports it once and forks the workers from it (PRELOAD_APP).
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# See post_worker_init.
GC_FIRST_GENERATION_THRESHOLD = 10_000


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        sys.exit(
            f"heliox: configuration error: {name} must be an integer >= {minimum} (got {raw!r})"
        )
    return value


def _bool_env(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    sys.exit(f"heliox: configuration error: {name} must be true or false (got {raw!r})")


def _validate_settings() -> None:
    """Check the app's settings in a forked child, so the master never imports pydantic & co.

    The master only supervises; keeping it small matters when a pod runs few workers.
    """
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            from heliox.core.config import ConfigError, load_settings  # noqa: PLC0415

            try:
                load_settings()
            except ConfigError as exc:
                for line in exc.lines:
                    print(f"heliox: configuration error: {line}", file=sys.stderr)
                code = 1
        except BaseException as exc:  # report anything, then leave the child
            print(f"heliox: configuration check failed: {exc!r}", file=sys.stderr)
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(1)


# Workers come from WEB_CONCURRENCY, never os.cpu_count(): that sees the node's cores, not the
# pod's CPU limit (the chart derives WEB_CONCURRENCY from the limit).
workers = _int_env("WEB_CONCURRENCY", 1, 1)
# Two or more workers: import the app once in the master and fork them from it, so they share
# its pages copy-on-write (bench/results: with 2 workers the PSS sum, what a pod is charged,
# is 15-30 MiB lower, and start-up and worker recycling need no import per worker). One worker
# would only add the master's copy. The engine and Redis client are made in each worker's
# lifespan, after the fork; SIGHUP re-reads this file but not the code (a new image is a rollout).
preload_app = _bool_env("PRELOAD_APP", workers > 1)
worker_class = "heliox.serving.Worker"  # the uvicorn-worker package's class, our server options
bind = [f"{os.environ.get('HOST', '0.0.0.0')}:{_int_env('PORT', 8000, 1)}"]  # noqa: S104

# SIGTERM: stop accepting, let in-flight requests finish, then exit; SIGKILL after this.
graceful_timeout = _int_env("GRACEFUL_TIMEOUT", 25, 1)
timeout = _int_env("WORKER_TIMEOUT", 30, 1)
# Longer than the load balancer's idle timeout (60 s on common cloud LBs), so the LB, not we,
# closes idle connections: otherwise a request can race our close and get a 502.
keepalive = _int_env("KEEPALIVE_TIMEOUT", 75, 1)
# Recycle workers now and then (bounds slow leaks); jitter keeps them from restarting together.
max_requests = _int_env("MAX_REQUESTS", 10000, 0)
max_requests_jitter = _int_env("MAX_REQUESTS_JITTER", 1000, 0)
# The heartbeat file on tmpfs: never blocks on a slow disk, works on a read-only root FS.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
proc_name = "heliox"
# No runtime control socket: it would be written under $HOME (read-only in the image) and is
# one more way in; configuration changes go through a rollout.
control_socket_disable = True

# Logs: our formatter for gunicorn's own loggers too; the access line is written by the app.
accesslog = None
errorlog = "-"
# gunicorn applies logconfig_dict before any hook runs: an unknown level would fail there with
# "Unable to configure logger". Check it first, through the settings, so the error is the same
# line as for every other variable (LOG_LEVEL: ... (got 'VERBOSE')), with every other problem.
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # Settings.log_level's values
_log_level = os.environ.get("LOG_LEVEL", "INFO").upper()
if _log_level not in _LOG_LEVELS:
    _validate_settings()  # prints the problems and exits 1; the line below is a fallback
    sys.exit(f"heliox: configuration error: LOG_LEVEL: must be one of {', '.join(_LOG_LEVELS)}")
loglevel = _log_level.lower()
_handler = {
    "class": "logging.StreamHandler",
    "formatter": "heliox",
    "stream": "ext://sys.stderr",
}
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"heliox": {"()": "heliox.core.log_format.formatter_from_env"}},
    "handlers": {"console": _handler, "error_console": _handler},
    "root": {"level": loglevel.upper(), "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {
            "level": loglevel.upper(),
            "handlers": ["error_console"],
            "propagate": False,
        },
        "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
    },
}

# Prometheus multiprocess mode: the directory must be known before workers import
# prometheus_client. A private one under /dev/shm (or /tmp) unless one is given.
_own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _own_metrics_dir:
    _base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="heliox-metrics-", dir=_base)
    # SIGHUP re-reads this file with the variable set: remember that the directory is ours, or
    # on_exit would leave it behind after a reload.
    os.environ["HELIOX_OWN_METRICS_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
else:
    _own_metrics_dir = (
        os.environ.get("HELIOX_OWN_METRICS_DIR") == os.environ["PROMETHEUS_MULTIPROC_DIR"]
    )


def on_starting(server: Any) -> None:
    """Validate settings once, before any worker exists, and start with clean metrics files."""
    _validate_settings()
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    metrics_dir.mkdir(parents=True, exist_ok=True)
    # Files left by a previous run would be summed into this run's counters.
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()


def pre_fork(server: Any, worker: Any) -> None:
    if server.cfg.preload_app:
        # Everything the master imported goes to the collector's permanent generation, so the
        # workers' collections never write to (and copy) those pages.
        gc.freeze()


def post_fork(server: Any, worker: Any) -> None:
    if server.cfg.preload_app:
        # The worker object was made in the master after the preloaded app had set up logging,
        # and uvicorn-worker pointed uvicorn's loggers at gunicorn's handlers, which ours had
        # replaced: adopt them again, or uvicorn's own lines would be lost.
        from heliox.core.config import get_settings  # noqa: PLC0415 - loaded by the preload
        from heliox.core.logging import configure_logging  # noqa: PLC0415

        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)


def post_worker_init(worker: Any) -> None:
    """Keep the cyclic garbage collector off the request path (docs/ARCHITECTURE.md,
    "Performance": before this, it took a quarter of a worker's CPU on cached reads)."""
    # The app is loaded, and what it holds lives as long as the worker: out of the collector's
    # reach, a full collection walks only what requests leave behind, not the whole app.
    gc.freeze()
    # Requests that wait on Redis or PostgreSQL keep their objects alive meanwhile, so the first
    # generation's 700 (allocations minus frees) was reached every dozen requests at 32 in
    # flight, each time walking objects that were not garbage, and promoting them into the older
    # generations' walks. Ten thousand lets requests finish first; what they leave is freed by
    # reference counting (the collector only ever finds cycles).
    gc.set_threshold(GC_FIRST_GENERATION_THRESHOLD, *gc.get_threshold()[1:])


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
