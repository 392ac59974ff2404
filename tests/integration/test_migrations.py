"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ioc_core.db import make_engine, make_sessionmaker
from ioc_core.incidents.verify import verify_all
from ioc_core.migrate import upgrade
from ioc_core.models import all_metadata
from tests.conftest import _pg, pg_url


def _diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    # Core and feature tables (telephony's own branch) alike.
    return list(compare_metadata(ctx, all_metadata()))  # type: ignore[arg-type]


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == [], diff


async def test_defect_16_access_log_rows_written_before_the_upgrade_are_chained(
    backend: str, tmp_path: Path
) -> None:
    """Migration 0004 chains the access log as it found it: old rows verify, edits to them
    are found."""
    if backend == "sqlite":
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}", ""
    else:
        name = f"ioc_m_{uuid.uuid4().hex[:12]}"
        await _pg(f'CREATE DATABASE "{name}"')
        url = pg_url(name)
    try:
        await upgrade(url, "0003")
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                for who in ("calltaker:an", "supervisor:binh"):
                    await conn.execute(
                        text(
                            "INSERT INTO access_log (at, principal, role, incident_id, what)"
                            " VALUES (:at, :who, 'calltaker', 'i-1', 'incident')"
                        ),
                        {"at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "who": who},
                    )
            await upgrade(url)
            sessions = make_sessionmaker(engine)
            report = await verify_all(sessions)
            assert report.ok and report.access_rows == 2, report.problems
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE access_log SET what = 'nothing' WHERE seq = 1"))
            assert [p.problem for p in (await verify_all(sessions)).problems] == [
                "access log row was changed (hash does not match)"
            ]
        finally:
            await engine.dispose()
    finally:
        if name:
            await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
