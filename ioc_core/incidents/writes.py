"""Writing a new report's rows in as few round trips as the database allows.

A report is the hot path (≥ 1,000/s is the target): the ORM's unit of work costs several
statements and most of the CPU per report. New rows are inserted with Core statements instead:
on PostgreSQL as ONE statement of data-modifying CTEs (its foreign keys are checked at the end
of the statement, so the order of the parts does not matter); on SQLite, which has no such
CTEs, as one INSERT per table inside the caller's transaction.

The statements are built once per *shape* (which columns, how many rows per table) and kept as
SQL text with typed, named parameters: SQLAlchemy does not cache the compiled form of INSERTs
inside CTEs, and compiling them on every report cost more than everything else together.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    Table,
    TextClause,
    bindparam,
    insert,
    inspect,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ioc_core.db import Base

# (table, column names of its rows, number of rows) per part
Shape = tuple[tuple[Table, tuple[str, ...], int], ...]


def _values(obj: Base, table: Table) -> dict[str, Any]:
    """Every column of a new ORM object's row, defaults applied here as the ORM would.

    All rows of a table then have the same columns, so one statement fits them; only a
    database-generated primary key (an autoincrement id) is left out.
    """
    given = inspect(obj).dict
    out: dict[str, Any] = {}
    for col in table.c:
        if col.key in given:
            out[col.key] = given[col.key]
        elif col.default is not None:
            default: Any = col.default
            out[col.key] = default.arg(None) if default.is_callable else default.arg
        elif not col.primary_key:
            out[col.key] = None
    return out


def _name(part: int, row: int, column: str) -> str:
    return f"p{part}_{row}_{column}"


def _insert(part: int, table: Table, columns: tuple[str, ...], nrows: int) -> Any:
    return insert(table).values(
        [
            {c: bindparam(_name(part, r, c), type_=table.c[c].type) for c in columns}
            for r in range(nrows)
        ]
    )


def _as_text(stmt: Any, dialect: Dialect, binds: list[BindParameter[Any]]) -> TextClause:
    """Compile once to SQL with named parameters; TextClause compiles are cached."""
    sql = str(stmt.compile(dialect=dialect))
    # text() cannot parse ":name::JSONB" (a bind followed by a cast) back: spell it CAST().
    sql = re.sub(r":(\w+)::([A-Z][A-Z0-9_ ]*[A-Z0-9_])", r"CAST(:\1 AS \2)", sql)
    return text(sql).bindparams(*binds)


@cache
def _statements(shape: Shape, dialect_name: str) -> tuple[tuple[TextClause, frozenset[str]], ...]:
    """Per shape: the statements to run and the parameter names each takes."""
    # The generic PostgreSQL dialect: named parameters without driver-specific casts, which
    # text() could not parse back (":name::VARCHAR").
    dialect = (PGDialect if dialect_name == "postgresql" else SQLiteDialect)(paramstyle="named")
    parts = []
    for n, (table, columns, nrows) in enumerate(shape):
        binds = [
            bindparam(_name(n, r, c), type_=table.c[c].type) for r in range(nrows) for c in columns
        ]
        parts.append((_insert(n, table, columns, nrows), binds))
    if dialect_name == "postgresql":
        stmt: Any = select(literal_column("1"))
        for n, (ins, _b) in enumerate(parts):
            stmt = stmt.add_cte(ins.cte(f"new_{n}"))
        binds = [b for _ins, bs in parts for b in bs]
        return ((_as_text(stmt, dialect, binds), frozenset(b.key for b in binds)),)
    return tuple(
        (_as_text(ins, dialect, binds), frozenset(b.key for b in binds)) for ins, binds in parts
    )


async def insert_new(
    executor: AsyncSession | AsyncConnection, groups: Sequence[Sequence[Base]], dialect: Dialect
) -> None:
    """Insert new (transient) ORM objects, one group per table, parents first."""
    shape: list[tuple[Table, tuple[str, ...], int]] = []
    params: dict[str, Any] = {}
    for objs in groups:
        if not objs:
            continue
        table = objs[0].__table__
        assert isinstance(table, Table)
        rows = [_values(o, table) for o in objs]
        columns = tuple(sorted(rows[0]))
        part = len(shape)
        shape.append((table, columns, len(rows)))
        for r, row in enumerate(rows):
            for c in columns:
                params[_name(part, r, c)] = row[c]
    for stmt, names in _statements(tuple(shape), dialect.name):
        await executor.execute(stmt, {k: v for k, v in params.items() if k in names})
