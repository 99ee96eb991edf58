"""``heliox-admin``: manage API keys with the service's own settings (DATABASE_URL, *_FILE,
SECRETS_DIR), e.g. ``kubectl exec deploy/heliox -- heliox-admin keys create --name ci --role
writer``.

A new key is printed once, alone on stdout (so ``KEY=$(heliox-admin keys create ...)`` works);
everything else goes to stderr. Exit codes: 0 done, 1 no such key, 2 bad configuration or usage,
3 database error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from heliox.core.audit import audit
from heliox.core.auth import keys, store
from heliox.core.auth.bootstrap import DEVELOPMENT, dev_key_file, ensure_key, read_or_make_key_file
from heliox.core.auth.roles import Role
from heliox.core.config import ConfigError, Settings, default_sqlite_path, load_settings
from heliox.core.db import create_db_engine
from heliox.core.logging import configure_logging
from heliox.models.base import utcnow

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_DATABASE = 0, 1, 2, 3
ACTOR = "heliox-admin"
T = TypeVar("T")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="heliox-admin", description=__doc__.split("\n\n")[0])
    groups = parser.add_subparsers(dest="group", required=True)
    keys_parser = groups.add_parser("keys", help="create, list and revoke API keys")
    sub = keys_parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("--name", required=True, help="what the key is for (1-100 characters)")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--expires-in-days", type=int, metavar="DAYS", help="1-3650; default never")
    listing = sub.add_parser("list", help="list keys (prefixes, never secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = sub.add_parser("revoke", help="revoke a key by its prefix (hx_...)")
    revoke.add_argument("prefix")
    sub.add_parser("generate", help="print a new key without storing it (for a Secret)")
    groups.add_parser(
        "dev-key", help="development only: the admin key in var/dev-api-key, made on first use"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.group == "keys" and args.command == "generate":
        print(keys.generate())
        return EXIT_OK
    try:
        settings = load_settings()
    except ConfigError as exc:
        for line in exc.lines:
            print(f"heliox-admin: configuration error: {line}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    if args.group == "dev-key":
        return _dev_key(settings)
    commands: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "create": _create,
        "list": _list,
        "revoke": _revoke,
    }
    return commands[args.command](settings, args)


def _in_session(settings: Settings, work: Callable[[Session], T]) -> T:
    engine = create_db_engine(settings)
    try:
        with Session(engine) as session, session.begin():
            return work(session)
    finally:
        engine.dispose()


def _database_error(exc: SQLAlchemyError) -> int:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print(f"heliox-admin: database error: {type(exc).__name__}: {first}", file=sys.stderr)
    return EXIT_DATABASE


def _create(settings: Settings, args: argparse.Namespace) -> int:
    name = args.name.strip()
    days = args.expires_in_days
    if not 1 <= len(name) <= 100 or "\x00" in name:
        print("heliox-admin: --name must be 1-100 characters", file=sys.stderr)
        return EXIT_USAGE
    if days is not None and not 1 <= days <= 3650:
        print("heliox-admin: --expires-in-days must be 1-3650", file=sys.stderr)
        return EXIT_USAGE
    expires = utcnow() + timedelta(days=days) if days else None
    try:
        key, info = _in_session(
            settings,
            lambda s: store.create(
                s, name=name, role=Role(args.role), created_by=ACTOR, expires_at=expires
            ),
        )
    except SQLAlchemyError as exc:
        return _database_error(exc)
    audit(ACTOR, "key.create", info.prefix, role=info.role.value, key_name=info.name)
    print(key)
    when = f", expires {info.expires_at.isoformat()}" if info.expires_at else ""
    print(
        f"heliox-admin: created {info.prefix} ({info.role.value}, {info.name!r}{when}); the key "
        "above is shown only now: send it in the X-API-Key header",
        file=sys.stderr,
    )
    return EXIT_OK


def _list(settings: Settings, args: argparse.Namespace) -> int:
    try:
        found, _total = _in_session(
            settings,
            lambda s: store.listing(s.connection(), 0, 1_000_000, include_revoked=args.all),
        )
    except SQLAlchemyError as exc:
        return _database_error(exc)
    columns: tuple[str, ...] = (
        "prefix",
        "name",
        "role",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
    )
    if args.all:
        columns += ("revoked_at",)
    rows = [
        {c: (v.isoformat() if hasattr(v, "isoformat") else str(v) if v is not None else None)
         for c, v in ((c, getattr(info, c)) for c in columns)}
        for info in found
    ]  # fmt: skip
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return EXIT_OK
    table = [list(columns)] + [[row[c] or "-" for c in columns] for row in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
    return EXIT_OK


def _revoke(settings: Settings, args: argparse.Namespace) -> int:
    try:
        info = _in_session(settings, lambda s: store.revoke(s, args.prefix))
    except SQLAlchemyError as exc:
        return _database_error(exc)
    if info is None:
        print(f"heliox-admin: no active key {args.prefix}", file=sys.stderr)
        return EXIT_NOT_FOUND
    audit(ACTOR, "key.revoke", info.prefix, key_name=info.name)
    print(
        f"heliox-admin: revoked {info.prefix}; every worker refuses it within "
        f"{settings.auth_cache_seconds:g}s (AUTH_CACHE_SECONDS)",
        file=sys.stderr,
    )
    return EXIT_OK


def _dev_key(settings: Settings) -> int:
    """`make run`'s first-run key: made once, kept in a file, re-stored if the database is new."""
    if not settings.is_development or settings.database_url is not None:
        print(
            "heliox-admin: dev-key is for ENV=development on the embedded SQLite file only",
            file=sys.stderr,
        )
        return EXIT_USAGE
    path = dev_key_file(default_sqlite_path())
    value, made = read_or_make_key_file(path)
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    try:
        ensured = _in_session(settings, lambda s: ensure_key(s, value, DEVELOPMENT))
    except SQLAlchemyError as exc:
        return _database_error(exc)
    if made or ensured.created:
        print(
            f"heliox: development admin key {ensured.prefix} is in {shown}; use it with\n"
            f'  export HELIOX_API_KEY="$(cat {shown})"\n'
            f'  curl -H "X-API-Key: $HELIOX_API_KEY" http://127.0.0.1:{settings.port}/api/v1/items',
            file=sys.stderr,
        )
    return EXIT_OK
