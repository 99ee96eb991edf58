"""The URLs the chart builds for external stores, parsed by the clients that will use them.

A user name and password holding every URL-reserved character must come back exactly from
the rendered ``DATABASE_URL`` (SQLAlchemy's ``make_url``, as the engine parses it) and
``REDIS_URL`` (redis-py's ``parse_url``), on IPv6 hosts too; and when the password is in an
existing Secret, the rendered URL plus that password, joined by the service's settings as in
the pod, must give the same user and password.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from redis.connection import parse_url
from sqlalchemy.engine import make_url

from heliox.core.config import load_settings
from tests.helpers import clear_settings_env

from .helpers import FULLNAME, container, decoded, env_map, render, secret_ref

USER = "app@srv:a/b?c#d%e+f g"
PASSWORD = "p@ss:w/o?r#d%25+ x"
HOOK_COPY = f"{FULLNAME}-migrate"


def _values_file(directory: Path, values: dict[str, Any]) -> str:
    """Values as a file (JSON is YAML; no --set escaping to get wrong), named after its content:
    renders are cached per argument tuple."""
    text = json.dumps(values, sort_keys=True)
    path = directory / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    path.write_text(text)
    return str(path)


def _external(db_host: str, redis_host: str, **more: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "postgresql": {"enabled": False},
        "redis": {"enabled": False},
        "externalDatabase": {"host": db_host, "user": USER, "password": PASSWORD},
        "externalRedis": {"host": redis_host, "username": USER, "password": PASSWORD},
    }
    for key, extra in more.items():
        values[key].update(extra)
    return values


# Host as given in values -> as the client sees it. An IPv6 address goes in brackets in a URL;
# the chart adds them unless the value has them already.
HOSTS = {
    "db.example.internal": "db.example.internal",
    "fd00::1": "fd00::1",
    "::1": "::1",
    "[fd00::1]": "fd00::1",
}


def test_values_credentials_come_back_exactly_from_the_rendered_urls(
    helm: str, tmp_path: Path
) -> None:
    for given, host in HOSTS.items():
        values = _values_file(tmp_path, _external(given, given))
        for is_upgrade, secret in ((False, FULLNAME), (True, HOOK_COPY)):
            urls = decoded(render(helm, values, is_upgrade=is_upgrade).get("Secret", secret))
            where = (given, secret)
            db = make_url(urls["DATABASE_URL"])
            assert (db.username, db.password, db.host, db.port, db.database) == (
                USER, PASSWORD, host, 5432, "heliox",
            ), where  # fmt: skip
            redis = parse_url(urls["REDIS_URL"])
            assert (redis["username"], redis["password"], redis["host"], redis["port"]) == (
                USER, PASSWORD, host, 6379,
            ), where  # fmt: skip


@pytest.mark.parametrize("host", ["db.example.internal", "fd00::1"])
def test_existing_secret_password_joins_the_rendered_url_exactly(
    helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """The pod gets DATABASE_URL (user, no password) from the chart's Secret and
    DATABASE_PASSWORD from the user's; the service joins them. Same for Redis."""
    secret = {"password": "", "existingSecret": "creds", "existingSecretPasswordKey": "pw"}
    values = _values_file(
        tmp_path, _external(host, host, externalDatabase=secret, externalRedis=secret)
    )
    docs = render(helm, values)
    env = env_map(container(docs.get("Deployment"), "api"))
    assert secret_ref(env["DATABASE_PASSWORD"]) == ("creds", "pw")
    assert secret_ref(env["REDIS_PASSWORD"]) == ("creds", "pw")
    urls = decoded(docs.get("Secret", FULLNAME))

    clear_settings_env(monkeypatch)
    for name, value in {
        "ENV": "production",
        "DATABASE_URL": urls["DATABASE_URL"],
        "DATABASE_PASSWORD": PASSWORD,
        "REDIS_URL": urls["REDIS_URL"],
        "REDIS_PASSWORD": PASSWORD,
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    db = make_url(settings.effective_database_url)
    assert (db.username, db.password, db.host) == (USER, PASSWORD, host)
    redis = parse_url(settings.effective_redis_url or "")
    assert (redis["username"], redis["password"], redis["host"]) == (USER, PASSWORD, host)
