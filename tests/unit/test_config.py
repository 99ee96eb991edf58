"""Settings: defaults, URL mapping, secrets from files, and one clear line per problem."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from heliox.core.config import ConfigError, default_sqlite_path, load_settings


def _rendered(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return caught.value.lines


def test_development_defaults_need_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.env == "development"
    assert _rendered(settings.effective_database_url) == f"sqlite:///{tmp_path}/var/heliox.db"
    assert settings.effective_redis_url is None
    assert (settings.db_pool_size, settings.db_max_overflow) == (5, 10)
    assert (settings.db_pool_recycle, settings.db_pool_pre_ping) == (3600, True)
    assert (settings.port, settings.log_format, settings.cors_enabled) == (8000, "kv", False)


def test_sqlite_default_moves_to_tmp_when_cwd_is_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read-only root filesystem (the image) is simulated: root (CI) may write anywhere.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert default_sqlite_path() == tmp_path / "tmp" / "heliox" / "heliox.db"


@pytest.mark.parametrize(
    "given",
    ["postgres://u:p@db:5432/heliox", "postgresql://u:p@db:5432/heliox"],
)
def test_postgres_urls_map_to_psycopg3(monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    monkeypatch.setenv("DATABASE_URL", given)
    monkeypatch.setenv("ENV", "production")
    assert _rendered(load_settings().effective_database_url) == (
        "postgresql+psycopg://u:p@db:5432/heliox"
    )


def test_production_without_database_url_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _problems(monkeypatch, ENV="production")
    assert len(lines) == 1
    assert lines[0].startswith("DATABASE_URL is not set: ENV=production needs a PostgreSQL URL")


def test_staging_refuses_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _problems(monkeypatch, ENV="staging", DATABASE_URL="sqlite:///x.db")
    assert lines == ["DATABASE_URL must be a PostgreSQL URL when ENV=staging (got sqlite://)"]


def test_every_problem_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _problems(monkeypatch, DB_POOL_SIZE="0", LOG_FORMAT="xml", REDIS_URL="http://r")
    assert len(lines) == 3
    assert any(line.startswith("DB_POOL_SIZE:") and "'0'" in line for line in lines)
    assert any(line.startswith("LOG_FORMAT:") for line in lines)
    assert any(line.startswith("REDIS_URL: must start with redis://") for line in lines)


def test_secrets_are_never_echoed_in_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _problems(monkeypatch, DATABASE_URL="no-scheme-s3cr3t", ENV="production")
    assert lines
    assert all("s3cr3t" not in line for line in lines)


def test_unsupported_driver_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _problems(monkeypatch, DATABASE_URL="mysql://u:p@h/db")
    assert lines == ["DATABASE_URL: unsupported scheme mysql:// (postgresql or sqlite)"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://app:s3cr3t@db:port/heliox", "DATABASE_URL: the port is not a number"),
        ("postgresql://app:s3cr3t@db:/heliox", "DATABASE_URL: the port is not a number"),
        ("postgresql://app:s3cr3t@::1/heliox", "DATABASE_URL: the port is not a number"),
        ("postgresql://app:s3cr3t@db:99999/heliox", "DATABASE_URL: port 99999 is out of range"),
        ("postgresql://app:s3cr3t@db:0/heliox", "DATABASE_URL: port 0 is out of range"),
        ("postgresql://app:s3@cr3t@db/heliox", "DATABASE_URL: '@' in the user name or password"),
        ("postgresql://app:s3cr3t@d b/heliox", "DATABASE_URL: the host name has characters"),
        ("post gresql://app:s3cr3t@db/heliox", "DATABASE_URL: not a valid URL (expected"),
        ("sqlite://app:s3cr3t@db:port/x.db", "DATABASE_URL: the port is not a number"),
    ],
)
def test_malformed_database_url_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    lines = _problems(monkeypatch, DATABASE_URL=url, ENV="production")
    assert len(lines) == 1, lines
    assert lines[0].startswith(problem), lines
    assert "cr3t" not in lines[0]  # no part of the password


def test_database_url_problems_come_with_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _problems(
        monkeypatch, DATABASE_URL="postgresql://u:pw@db:x/h", LOG_LEVEL="verbose",
        REDIS_URL="redis://:pw@cache:x/0",
    )  # fmt: skip
    assert [line.split(":", 1)[0] for line in lines] == ["LOG_LEVEL", "DATABASE_URL", "REDIS_URL"]
    assert lines[0].endswith("(got 'VERBOSE')")
    assert lines[2] == "REDIS_URL: the port is not a number from 1 to 65535"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:pw@db.internal:5432/heliox?sslmode=require",
        "postgresql://app:pw@[::1]:5432/heliox",
        "postgresql://app:p%40ss@my_db/heliox",
        "postgresql:///heliox",  # the Unix socket
        "postgresql://app@db1,db2/heliox",  # libpq's host list
    ],
)
def test_well_formed_database_urls_pass(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("ENV", "production")
    assert load_settings().database_is_postgres


def test_cors_on_needs_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _problems(monkeypatch, CORS_ENABLED="true") == [
        "CORS_ENABLED=true but CORS_ORIGINS is empty (comma-separated origins)"
    ]


@pytest.mark.parametrize(
    "raw", ["https://a.example, https://b.example", '["https://a.example","https://b.example"]']
)
def test_cors_origins_comma_or_json(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("CORS_ORIGINS", raw)
    assert load_settings().cors_origins == ["https://a.example", "https://b.example"]


def test_file_variables_and_password_injection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "url").write_text("postgresql://app@db:5432/heliox\n")
    (tmp_path / "pw").write_text("p@ss/w:rd\n")
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "url"))
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(tmp_path / "pw"))
    settings = load_settings()
    # The password is URL-quoted so @ / : inside it cannot change the URL's meaning.
    assert (
        _rendered(settings.effective_database_url)
        == "postgresql+psycopg://app:p%40ss%2Fw%3Ard@db:5432/heliox"
    )


def test_environment_variable_wins_over_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "url").write_text("redis://from-file:6379/0")
    monkeypatch.setenv("REDIS_URL_FILE", str(tmp_path / "url"))
    monkeypatch.setenv("REDIS_URL", "redis://from-env:6379/0")
    assert load_settings().redis_url == "redis://from-env:6379/0"


def test_unreadable_file_is_a_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _problems(monkeypatch, REDIS_PASSWORD_FILE=str(tmp_path / "missing"))
    assert len(lines) == 1
    assert lines[0].startswith(f"REDIS_PASSWORD_FILE: cannot read {tmp_path / 'missing'}")


def test_secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "DATABASE_URL").write_text("postgresql://u:pw@db/heliox")
    (tmp_path / "redis_password").write_text("r-secret")
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("ENV", "production")
    settings = load_settings()
    assert _rendered(settings.effective_database_url) == "postgresql+psycopg://u:pw@db/heliox"
    assert settings.effective_redis_url == "redis://:r-secret@cache:6379/0"
