"""gunicorn.conf.py reads its values from the environment, never from the CPU count."""

from __future__ import annotations

import os
import runpy
import shutil
from pathlib import Path
from typing import Any, get_args

import pytest
from uvicorn_worker import UvicornWorker

from heliox.core.config import Settings
from heliox.serving import Worker
from tests.servers import GUNICORN_CONF


def _load(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/heliox-unit-metrics")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    conf = _load(monkeypatch)
    assert conf["workers"] == 1  # not derived from the 64 "cores" the node shows
    assert conf["bind"] == ["0.0.0.0:8000"]
    assert conf["worker_class"] == "heliox.serving.Worker"
    assert conf["graceful_timeout"] == 25
    assert conf["keepalive"] > 60  # above common load balancer idle timeouts
    assert conf["worker_tmp_dir"] == "/dev/shm"
    assert conf["max_requests"] > 0
    assert 0 < conf["max_requests_jitter"] < conf["max_requests"]
    assert conf["accesslog"] is None
    assert callable(conf["child_exit"])
    assert conf["logconfig_dict"]["formatters"]["heliox"]["()"] == (
        "heliox.core.log_format.formatter_from_env"
    )


def test_environment_sets_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _load(
        monkeypatch,
        WEB_CONCURRENCY="3",
        PORT="9000",
        GRACEFUL_TIMEOUT="40",
        KEEPALIVE_TIMEOUT="120",
    )
    assert (conf["workers"], conf["bind"]) == (3, ["0.0.0.0:9000"])
    assert (conf["graceful_timeout"], conf["keepalive"]) == (40, 120)


def test_bad_value_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as caught:
        _load(monkeypatch, WEB_CONCURRENCY="two")
    assert str(caught.value.code) == (
        "heliox: configuration error: WEB_CONCURRENCY must be an integer >= 1 (got 'two')"
    )


def test_bad_log_level_is_the_settings_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # gunicorn would apply logconfig_dict with it before any hook: "Unable to configure logger".
    with pytest.raises(SystemExit) as caught:
        _load(monkeypatch, LOG_LEVEL="verbose")
    assert caught.value.code == 1
    assert capfd.readouterr().err.splitlines() == [
        "heliox: configuration error: LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', "
        "'ERROR' or 'CRITICAL' (got 'VERBOSE')"
    ]


def test_log_levels_match_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _load(monkeypatch, LOG_LEVEL="warning")
    assert conf["loglevel"] == "warning"
    assert set(conf["_LOG_LEVELS"]) == set(get_args(Settings.model_fields["log_level"].annotation))


@pytest.mark.parametrize("reloads", [0, 1], ids=["started", "after-sighup"])
def test_private_metrics_dir_when_none_given(monkeypatch: pytest.MonkeyPatch, reloads: int) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("HELIOX_OWN_METRICS_DIR", raising=False)
    conf = runpy.run_path(str(GUNICORN_CONF))
    made = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    try:
        for _ in range(reloads):  # SIGHUP: gunicorn reads the file again, the variable now set
            conf = runpy.run_path(str(GUNICORN_CONF))
            assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == made
        assert os.path.isdir(made)
        assert os.path.basename(made).startswith("heliox-metrics-")
        conf["on_exit"](None)
        assert not os.path.exists(made)
    finally:
        shutil.rmtree(made, ignore_errors=True)
        # Not monkeypatch.delenv: it would record the removed directory as the value to put
        # back at teardown (the variable was absent when the test began), and every later test
        # would inherit a metrics directory that no longer exists.
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        os.environ.pop("HELIOX_OWN_METRICS_DIR", None)


def test_given_metrics_dir_is_not_removed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HELIOX_OWN_METRICS_DIR", raising=False)
    conf = _load(monkeypatch, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    conf["on_exit"](None)
    assert tmp_path.is_dir()


def test_worker_class_is_the_uvicorn_worker_package_class() -> None:
    assert issubclass(Worker, UvicornWorker)
    assert Worker.CONFIG_KWARGS["server_header"] is False
    assert Worker.CONFIG_KWARGS["access_log"] is False


@pytest.mark.parametrize(
    ("workers", "preload", "expected"),
    [("1", None, False), ("2", None, True), ("4", None, True), ("2", "false", False),
     ("1", "true", True), ("3", "0", False)],
)  # fmt: skip
def test_preload_follows_the_worker_count(
    monkeypatch: pytest.MonkeyPatch, workers: str, preload: str | None, expected: bool
) -> None:
    monkeypatch.delenv("PRELOAD_APP", raising=False)
    env = {"WEB_CONCURRENCY": workers} | ({"PRELOAD_APP": preload} if preload else {})
    conf = _load(monkeypatch, **env)
    assert conf["preload_app"] is expected
    assert callable(conf["pre_fork"])
    assert callable(conf["post_fork"])


def test_bad_preload_value_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as caught:
        _load(monkeypatch, PRELOAD_APP="sometimes")
    assert str(caught.value.code) == (
        "heliox: configuration error: PRELOAD_APP must be true or false (got 'sometimes')"
    )
