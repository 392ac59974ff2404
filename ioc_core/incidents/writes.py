"""Writing a new report's rows in as few round trips and as little CPU as the database allows.

A report is the hot path (≥ 1,000/s is the target). The ORM's unit of work cost several
statements and most of the CPU per report, so new rows are inserted with Core statements:
- on PostgreSQL as ONE statement of data-modifying CTEs (foreign keys are checked at the end
  of the statement, so the order of the parts does not matter), compiled once per *shape*
  (which tables, how many rows) and sent straight to asyncpg — SQLAlchemy did not cache the
  compiled form of INSERTs inside CTEs, and compiling them on every report cost more than
  everything else together;
- on SQLite, which has no such CTEs, as one cached INSERT per table in the caller's
  transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import JSON, Table, bindparam, insert, inspect, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ioc_core.db import Base, RawStatement, compile_raw, dialect_name, driver_connection

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


@cache
def _postgres_statement(shape: Shape) -> RawStatement:
    stmt: Any = select(literal_column("1"))
    json_names: set[str] = set()
    for n, (table, columns, nrows) in enumerate(shape):
        rows: list[dict[str, Any]] = [
            {c: bindparam(_name(n, r, c)) for c in columns} for r in range(nrows)
        ]
        stmt = stmt.add_cte(insert(table).values(rows).cte(f"new_{n}"))
        json_names |= {
            _name(n, r, c)
            for r in range(nrows)
            for c in columns
            if isinstance(table.c[c].type, JSON)
        }
    return compile_raw(stmt, frozenset(json_names))


async def insert_new(
    executor: AsyncSession | AsyncConnection, groups: Sequence[Sequence[Base]]
) -> None:
    """Insert new (transient) ORM objects, one group per table, parents first."""
    parts: list[tuple[Table, list[dict[str, Any]]]] = []
    for objs in groups:
        if objs:
            table = objs[0].__table__
            assert isinstance(table, Table)
            parts.append((table, [_values(o, table) for o in objs]))
    if dialect_name(executor) != "postgresql":
        for table, rows in parts:
            await executor.execute(insert(table), rows)
        return
    shape: Shape = tuple((t, tuple(rows[0]), len(rows)) for t, rows in parts)
    params = {
        _name(n, r, c): v
        for n, (_t, rows) in enumerate(parts)
        for r, row in enumerate(rows)
        for c, v in row.items()
    }
    stmt = _postgres_statement(shape)
    await (await driver_connection(executor)).execute(stmt.sql, *stmt.args(params))
