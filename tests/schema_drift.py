"""Do the SQLAlchemy models (``heliox.models``) match the schema the migrations build?

Alembic's autogenerate comparison (``compare_metadata``), run against a database migrated to
head by the real runner: what it finds is what ``alembic revision --autogenerate`` would write
into a new revision. Each difference becomes one readable line, e.g.
``add_column: items.priority INTEGER NULL (in the models, not in the migrations)``.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Index, Table, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.schema import Constraint

from heliox.models import Base

# The direction of each kind of difference, in the words of someone reading a test failure.
_MEANING = {
    "add": "in the models, not in the migrations",
    "remove": "in the migrations, not in the models",
    "modify": "the models and the migrations disagree",
}


def _column(column: Column[Any]) -> str:
    nullable = "NULL" if column.nullable else "NOT NULL"
    return f"{column.table.name}.{column.name} {column.type} {nullable}"


def _thing(value: Any) -> str:
    if isinstance(value, Table):
        return f"table {value.name} ({', '.join(c.name for c in value.columns)})"
    if isinstance(value, Column):
        return _column(value)
    if isinstance(value, Index):
        columns = ", ".join(str(getattr(c, "name", c)) for c in value.expressions)
        table = value.table.name if value.table is not None else "?"
        return f"index {value.name} on {table} ({columns})"
    if isinstance(value, Constraint):
        table = getattr(value.table, "name", "?")
        return f"{type(value).__name__} {value.name} on {table}"
    return repr(value)


def _describe(diff: Any) -> list[str]:
    """One line per difference. ``compare_metadata`` gives a tuple ``(op, ...)`` per table,
    column, index or constraint, and a list of ``(op, schema, table, column, info, old, new)``
    per changed column (type, nullability, default, comment)."""
    if isinstance(diff, list):
        lines = []
        for op, _schema, table, column, _info, old, new in diff:
            lines.append(f"{op}: {table}.{column}: migrations {old!r}, models {new!r}")
        return lines
    op, *args = diff
    shown = ", ".join(_thing(a) for a in args if a is not None and not isinstance(a, str))
    if not shown:  # e.g. remove_column carries (schema, table name, column)
        shown = ", ".join(str(a) for a in args if a is not None)
    meaning = _MEANING.get(op.split("_", 1)[0], "")
    return [f"{op}: {shown} ({meaning})" if meaning else f"{op}: {shown}"]


def schema_drift(url: str) -> list[str]:
    """Differences between the models and the database at ``url``, one line each (none: they
    match). Compares column types and server defaults as well as tables, columns, indexes and
    constraints."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":  # as the service maps it: psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(parsed)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"compare_type": True, "compare_server_default": True},
            )
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    return [line for diff in diffs for line in _describe(diff)]


def drift_report(lines: list[str]) -> str:
    """The assertion message: what differs, and what to do about it."""
    return (
        "the SQLAlchemy models and the migration head differ:\n  "
        + "\n  ".join(lines)
        + "\nwrite a revision for the change (alembic revision --autogenerate, docs/"
        "ARCHITECTURE.md, Migrations), or change the model back"
    )
