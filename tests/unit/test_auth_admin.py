"""Keys from outside the API: the chart's bootstrap key, `heliox-admin`, `make run`'s
development key; the settings that carry them; the in-process key cache."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from heliox.cli.admin import main as admin
from heliox.core.auth import keys
from heliox.core.auth.cache import TtlCache
from heliox.core.config import ConfigError, Settings, load_settings
from tests.helpers import API_KEY_HEADER, assert_error_body, client_for

ITEMS = "/api/v1/items"


def _bootstrapped(settings: Settings, value: str) -> Settings:
    return settings.model_copy(update={"bootstrap_api_key": SecretStr(value)})


def test_the_bootstrap_key_is_stored_at_start_and_replaced_when_rotated(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = keys.generate(), keys.generate()
    with client_for(_bootstrapped(settings, first), role=None) as client:
        assert client.get(ITEMS, headers={API_KEY_HEADER: first}).status_code == 200
        made = client.post("/api/v1/keys", json={"name": "x", "role": "reader"},
                           headers={API_KEY_HEADER: first})  # fmt: skip
        assert made.status_code == 201  # it is an admin key
    # A restart with the same value changes nothing; a new value (a rotated Secret) replaces it.
    with client_for(_bootstrapped(settings, first), role=None) as client:
        assert client.get(ITEMS, headers={API_KEY_HEADER: first}).status_code == 200
    with client_for(_bootstrapped(settings, second), role=None) as client:
        assert client.get(ITEMS, headers={API_KEY_HEADER: second}).status_code == 200
        assert_error_body(client.get(ITEMS, headers={API_KEY_HEADER: first}), 401, "unauthorized")
    actions = [(r.action, r.target) for r in caplog.records if r.name == "heliox.audit"]  # type: ignore[attr-defined]
    assert ("key.create", first[:15]) in actions
    assert ("key.revoke", first[:15]) in actions
    assert first.rsplit("_", 1)[1] not in caplog.text
    assert second.rsplit("_", 1)[1] not in caplog.text


def test_a_revoked_bootstrap_key_stays_revoked_after_a_restart(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    value = keys.generate()
    with client_for(_bootstrapped(settings, value)) as client:
        assert client.delete(f"/api/v1/keys/{value[:15]}").status_code == 204
    with client_for(_bootstrapped(settings, value), role=None) as client:
        assert client.get(ITEMS, headers={API_KEY_HEADER: value}).status_code == 401
    assert "the bootstrap key was revoked and stays revoked" in caplog.text


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"BOOTSTRAP_API_KEY": "hunter2-not-a-key"}, "BOOTSTRAP_API_KEY is not a Heliox API key"),
        ({"OIDC_ISSUER": "https://idp.example"}, "OIDC_ISSUER is set but OIDC_AUDIENCE is not"),
        ({"OIDC_AUDIENCE": "heliox"}, "OIDC_AUDIENCE is set but OIDC_ISSUER is not"),
        (
            {"OIDC_ISSUER": "http://idp.example", "OIDC_AUDIENCE": "a"},
            "OIDC_ISSUER must be an https:// URL",
        ),
        (
            {"OIDC_ISSUER": "https://idp", "OIDC_AUDIENCE": "a", "OIDC_ALGORITHMS": "HS256"},
            "OIDC_ALGORITHMS: HS256",
        ),
    ],
)
def test_auth_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert any(problem in line for line in raised.value.lines), raised.value.lines
    assert "hunter2" not in str(raised.value)


def test_secrets_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = keys.generate()
    (tmp_path / "key").write_text(value + "\n")
    (tmp_path / "token").write_text("scrape\n")
    monkeypatch.setenv("BOOTSTRAP_API_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("METRICS_TOKEN_FILE", str(tmp_path / "token"))
    settings = load_settings()
    assert settings.bootstrap_api_key is not None
    assert settings.bootstrap_api_key.get_secret_value() == value
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == "scrape"


def test_heliox_admin_create_list_revoke(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    assert admin(["keys", "create", "--name", "ci", "--role", "writer"]) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert keys.parse(key) is not None  # the key alone on stdout
    secret = key.rsplit("_", 1)[1]
    assert secret not in err
    assert f"created {key[:15]} (writer, 'ci')" in err
    assert admin(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert key[:15] in listing
    assert secret not in listing
    with client_for(Settings(database_url=sqlite_url), role=None) as client:
        assert (
            client.post(ITEMS, json={"name": "ci"}, headers={API_KEY_HEADER: key}).status_code
            == 201
        )
        assert admin(["keys", "revoke", key[:15]]) == 0
        assert "revoked" in capsys.readouterr().err
        client.app.state.resources.gate.forget(key[:15])  # type: ignore[attr-defined]
        assert client.get(ITEMS, headers={API_KEY_HEADER: key}).status_code == 401
    assert admin(["keys", "revoke", key[:15]]) == 1  # no longer active
    assert admin(["keys", "list", "--all", "--json"]) == 0
    assert '"revoked_at": "20' in capsys.readouterr().out
    assert (
        admin(["keys", "create", "--name", "x", "--role", "writer", "--expires-in-days", "0"]) == 2
    )


def test_heliox_admin_generate_stores_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert admin(["keys", "generate"]) == 0
    generated = capsys.readouterr().out.strip()
    assert keys.parse(generated) is not None
    assert generated != keys.generate()


def test_dev_key_is_made_once_and_survives_a_new_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from heliox_migrate.cli import main as migrate  # noqa: PLC0415

    monkeypatch.chdir(tmp_path)
    assert migrate(["upgrade"]) == 0
    assert admin(["dev-key"]) == 0
    err = capsys.readouterr().err
    path = tmp_path / "var" / "dev-api-key"
    key = path.read_text().strip()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert 'export HELIOX_API_KEY="$(cat var/dev-api-key)"' in err
    assert key.rsplit("_", 1)[1] not in err
    assert admin(["dev-key"]) == 0
    assert capsys.readouterr().err == ""  # the second run says nothing
    (tmp_path / "var" / "heliox.db").unlink()  # a fresh database, the same file
    assert migrate(["upgrade"]) == 0
    assert admin(["dev-key"]) == 0
    assert path.read_text().strip() == key
    with client_for(
        Settings(database_url=f"sqlite:///{tmp_path / 'var' / 'heliox.db'}"), role=None
    ) as client:
        assert (
            client.post(ITEMS, json={"name": "dev"}, headers={API_KEY_HEADER: key}).status_code
            == 201
        )


def test_dev_key_refuses_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@127.0.0.1:1/db")
    assert admin(["dev-key"]) == 2
    assert os.environ["ENV"] == "production"


def test_the_cache_is_bounded_and_expires() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(size=2, ttl=3.0, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.peek("a") == (True, 1)  # a is now the most recently used
    cache.put("c", 3)
    assert cache.peek("b") == (False, None)  # b went first
    assert len(cache) == 2
    now[0] = 2.9
    assert cache.peek("a") == (True, 1)
    now[0] = 3.0
    assert cache.peek("a") == (False, None)
    cache.put("short", 4, ttl=1.0)
    now[0] = 4.0
    assert cache.peek("short") == (False, None)


def test_the_cache_loads_once_for_concurrent_callers() -> None:
    cache: TtlCache[str, int] = TtlCache(size=8, ttl=60)
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return 42

    async def burst() -> list[int]:
        return await asyncio.gather(*(cache.get("k", load) for _ in range(50)))

    assert asyncio.run(burst()) == [42] * 50
    assert loads == 1
