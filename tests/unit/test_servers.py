"""The integration tier's skip reason names exactly what is missing and how to get it."""

from __future__ import annotations

import socket

import pytest

from tests import servers


def test_reason_names_missing_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "find_postgres_bin", lambda: None)
    monkeypatch.setattr(servers, "find_redis_server", lambda: None)
    reason = servers.missing_servers()
    assert reason is not None
    assert reason.startswith(
        "integration tier needs PostgreSQL server binaries (initdb, pg_ctl, postgres) and "
        "redis-server"
    )
    assert "apt-get install postgresql redis-server" in reason


def test_no_reason_when_everything_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "find_postgres_bin", lambda: servers.REPO_ROOT)
    monkeypatch.setattr(servers, "find_redis_server", lambda: "/usr/bin/redis-server")
    monkeypatch.setattr(servers, "_unprivileged_user", object)
    assert servers.missing_servers() is None


def test_free_port_is_bindable() -> None:
    port = servers.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
