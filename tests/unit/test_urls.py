"""User names and passwords with URL-reserved characters, from the settings to the clients.

``DATABASE_URL`` / ``REDIS_URL`` carry the user name percent-encoded; ``DATABASE_PASSWORD`` /
``REDIS_PASSWORD`` carry the password as it is (the chart's existingSecret path). What the
engine and the Redis client connect with must be exactly that user and that password, on
IPv6 hosts too, and what is logged must show the host but never the password.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy.engine import make_url

from heliox.core.config import load_settings
from heliox.core.db import Database, create_db_engine
from heliox.core.redis import RedisClient
from heliox.core.urls import mask_redis_url

# Every character that means something in a URL, and a literal "%25" (decoded twice, it
# would become "%").
USER = "app@srv:a/b?c#d%e+f g"
PASSWORD = "p@ss:w/o?r#d%25+ x"
ENCODED_USER = quote(USER, safe="")


@pytest.mark.parametrize(
    ("netloc", "host", "port"),
    [
        ("db.internal:5433", "db.internal", 5433),
        ("[::1]", "::1", None),
        ("[fd00::1]:5432", "fd00::1", 5432),
    ],
)
def test_database_password_joins_an_encoded_user_exactly(
    monkeypatch: pytest.MonkeyPatch, netloc: str, host: str, port: int | None
) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{ENCODED_USER}@{netloc}/heliox")
    monkeypatch.setenv("DATABASE_PASSWORD", PASSWORD)
    settings = load_settings()
    url = make_url(settings.effective_database_url)
    assert (url.username, url.password, url.host, url.port, url.database) == (
        USER, PASSWORD, host, port, "heliox",
    )  # fmt: skip
    # What psycopg is handed: the engine's own URL, translated by the dialect.
    engine = create_db_engine(settings)
    try:
        _, kwargs = engine.dialect.create_connect_args(engine.url)
    finally:
        engine.dispose()
    assert (kwargs["user"], kwargs["password"], kwargs["host"]) == (USER, PASSWORD, host)


def test_database_password_replaces_the_one_in_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded_old = quote("old:p@ss", safe="")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{ENCODED_USER}:{encoded_old}@db/heliox")
    monkeypatch.setenv("DATABASE_PASSWORD", PASSWORD)
    url = make_url(load_settings().effective_database_url)
    assert (url.username, url.password, url.host) == (USER, PASSWORD, "db")


@pytest.mark.parametrize(
    ("netloc", "host", "port"),
    [
        ("cache:6379", "cache", 6379),
        ("[::1]:6379", "::1", 6379),
        ("[fd00::1]:6380", "fd00::1", 6380),
    ],
)
def test_redis_password_joins_an_encoded_user_exactly(
    monkeypatch: pytest.MonkeyPatch, netloc: str, host: str, port: int
) -> None:
    monkeypatch.setenv("REDIS_URL", f"rediss://{ENCODED_USER}@{netloc}/2")
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    settings = load_settings()
    client = RedisClient(settings.effective_redis_url or "", settings)
    kwargs = client.redis.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["host"], kwargs["port"]) == (
        USER, PASSWORD, host, port,
    )  # fmt: skip
    assert kwargs["db"] == 2


def test_logged_urls_show_user_and_host_never_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{ENCODED_USER}@[fd00::1]:5432/heliox")
    monkeypatch.setenv("DATABASE_PASSWORD", PASSWORD)
    monkeypatch.setenv("REDIS_URL", f"redis://{ENCODED_USER}@[fd00::2]:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD", PASSWORD)
    settings = load_settings()
    database = Database(create_db_engine(settings), 1.0)
    redis = RedisClient(settings.effective_redis_url or "", settings)
    shown_with_host = [
        (database.display_url, "[fd00::1]:5432"),
        (redis.display_url, "[fd00::2]:6379"),
    ]
    try:
        for shown, host in shown_with_host:
            assert ":***@" in shown, shown
            assert f"@{host}/" in shown, shown
            assert quote(PASSWORD, safe="") not in shown
            assert PASSWORD not in shown
            assert make_url(shown).username == USER
    finally:
        database.dispose()


def test_masking_hides_only_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db:5432/x")
    database = Database(create_db_engine(load_settings()), 1.0)
    assert database.display_url == "postgresql+psycopg://u:***@db:5432/x"
    database.dispose()
    assert mask_redis_url("redis://u:secret@[::1]:6379/0") == "redis://u:***@[::1]:6379/0"
    assert mask_redis_url("redis://cache:6379/0") == "redis://cache:6379/0"
