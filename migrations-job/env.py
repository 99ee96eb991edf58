"""Alembic environment: runs on the connection the runner hands over, or opens its own.

``heliox-migrate`` passes a connection through ``config.attributes["connection"]`` so the
migrations run inside its advisory lock. Each revision runs in its own transaction: a failing
revision rolls back alone and leaves the schema at the one before it. SQLite gets batch mode
(its ALTER TABLE is limited).
"""

from __future__ import annotations

import logging.config

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from heliox.core.config import get_settings
from heliox.models import Base
from heliox_migrate.database import create_migration_engine

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and "connection" not in config.attributes:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        transaction_per_migration=True,
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    option = config.get_main_option("sqlalchemy.url")
    url = make_url(option) if option else get_settings().effective_database_url
    _configure(url=url, literal_binds=True, render_as_batch=url.get_backend_name() == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    engine = create_migration_engine(get_settings(), config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as own:
            _run_on(own)
            own.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
