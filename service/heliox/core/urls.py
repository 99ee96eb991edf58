"""Connection URLs: checked, given a password and masked by a URL parser, never by hand.

A user name or password may hold any character (``@ : / ? # % + space``: common on managed
databases). Each must be decoded exactly once, by the same rules as the client that connects,
and encoded exactly once when a URL is built. So database URLs go through SQLAlchemy's
:class:`~sqlalchemy.engine.URL`, the object the engine connects with; Redis URLs through
``urllib``, decoded as redis-py decodes them (``unquote`` of the user-info parts).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

REDIS_SCHEMES = ("redis", "rediss", "unix")

_EXPECTED_URL = "expected postgresql://user:password@host:5432/dbname"
_HOST_CHARS = re.compile(r"[A-Za-z0-9._%:,-]+")  # names, IPv4, IPv6 (no brackets), zone, lists


# -- DATABASE_URL ------------------------------------------------------------------------------


def normalize_database_url(url: str) -> str:
    """Map ``postgres://`` and ``postgresql://`` to the psycopg 3 driver; keep others as given."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("is not a URL (expected postgresql://user:password@host:5432/db)")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def database_url_problems(url: str) -> list[str]:
    """What is wrong with a (normalized) DATABASE_URL, one phrase each, the password never shown.

    Parsed the way the engine will parse it (SQLAlchemy's ``make_url``), so a URL that passes
    here is one ``create_engine`` accepts, with the host, port and database it will use.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return [f"not a valid URL ({_EXPECTED_URL})"]
    except ValueError:  # int(port) failed: the text after the host's ':' is not a number
        return [
            "the port is not a number (expected host:5432; an IPv6 address goes in brackets, "
            "[::1]:5432)"
        ]
    if parsed.get_backend_name() != "postgresql":
        return []
    host = parsed.host or ""
    if "@" in host:
        # make_url ends the password at its first '@': the rest became the "host".
        return [
            "'@' in the user name or password must be percent-encoded as %40 (or put the "
            "password in DATABASE_PASSWORD)"
        ]
    problems: list[str] = []
    if host and not _HOST_CHARS.fullmatch(host):
        problems.append(
            "the host name has characters a host name cannot have (reserved characters in the "
            "password, such as / ? # @, must be percent-encoded)"
        )
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        problems.append(f"port {parsed.port} is out of range (1-65535)")
    return problems


def database_url(url: str, password: str | None = None) -> URL:
    """The URL the engine connects with: ``url`` parsed (its user name and password decoded
    once), the password replaced by ``password`` when given, taken as it is.

    A URL object, not a string: nothing re-encodes it on the way to the driver, and printing it
    shows the password as ***.
    """
    parsed = make_url(url)
    return parsed if password is None else parsed.set(password=password)


# -- REDIS_URL ---------------------------------------------------------------------------------


def redis_url_problems(url: str) -> list[str]:
    """What is wrong with a REDIS_URL, one phrase each, the password never shown."""
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        return ["must start with redis://, rediss:// or unix://"]
    try:
        parts.port  # noqa: B018 - parsing it is the check
    except ValueError:
        return ["the port is not a number from 1 to 65535"]
    return []


def _redis_netloc(url: str) -> tuple[str | None, str | None, str]:
    """(user, password, host[:port]) of a Redis URL: user and password still percent-encoded
    (None when absent), the host part exactly as written (IPv6 brackets kept)."""
    userinfo, at, hostport = urlsplit(url).netloc.rpartition("@")
    if not at:
        return None, None, hostport
    user, colon, password = userinfo.partition(":")
    return user, (password if colon else None), hostport


def redis_url_with_password(url: str, password: str) -> str:
    """``url`` with its password replaced by ``password``; user, host and the rest unchanged.

    redis-py ``unquote``s the user name and password it finds in the URL: the user name is
    decoded once here and re-encoded once, the password encoded once.
    """
    user, _, hostport = _redis_netloc(url)
    user_part = quote(unquote(user or ""), safe="")
    netloc = f"{user_part}:{quote(password, safe='')}@{hostport}"
    return urlunsplit(urlsplit(url)._replace(netloc=netloc))


def mask_redis_url(url: str) -> str:
    """The URL with any password shown as ***, for logs and messages."""
    user, password, hostport = _redis_netloc(url)
    if password is None:
        return url
    return urlunsplit(urlsplit(url)._replace(netloc=f"{user}:***@{hostport}"))
