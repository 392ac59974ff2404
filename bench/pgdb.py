"""The run's own PostgreSQL database: created fresh, emptied between phases, dropped at the end."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

ADMIN_DSN = os.environ.get(
    "IOC_BENCH_POSTGRES_DSN",
    os.environ.get("IOC_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
# What one report writes, and what reading it back may touch (access_log: confidential views).
REPORT_TABLES = ("incidents", "reporters", "timeline", "outbox", "attachments", "access_log")


def dsn_for(name: str, admin: str = ADMIN_DSN) -> str:
    """libpq URL of database `name` on the admin DSN's server."""
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def sqlalchemy_url(name: str, admin: str = ADMIN_DSN) -> str:
    return dsn_for(name, admin).replace("postgresql://", "postgresql+asyncpg://", 1)


async def _admin(sql: str, admin: str) -> None:
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(admin: str = ADMIN_DSN) -> AsyncIterator[str]:
    """CREATE DATABASE ioc_bench_<random>; always DROP ... WITH (FORCE) afterwards."""
    name = f"ioc_bench_{secrets.token_hex(5)}"
    await _admin(f'CREATE DATABASE "{name}"', admin)
    try:
        yield name
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', admin)


async def empty_report_tables(dsn: str) -> None:
    """Every phase starts from the same (empty) tables: duplicate look-ups and index sizes
    depend on how many incidents exist, so a later phase must not inherit an earlier one's."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET lock_timeout = '15s'")
        await conn.execute(f"TRUNCATE {', '.join(REPORT_TABLES)} RESTART IDENTITY CASCADE")
        await conn.execute("ANALYZE incidents")
    finally:
        await conn.close()


async def preload_open_incidents(dsn: str, count: int, *, category: str) -> None:
    """`count` open incidents of `category`'s group created over the last 100 minutes, spread
    like the load's points: what duplicate look-ups meet after running a while at a high rate
    (the duplicate window is 120 minutes)."""
    if count <= 0:
        return
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO incidents (id, code, category_code, category_group, title, description,
                priority, severity, channel, language, state, phase, track, escalated, lat, lon,
                address, area_code, reporter_count, created_at, updated_at, version, chain_seq,
                chain_head)
            SELECT gen_random_uuid()::text, 'PRELOAD-' || g, c.code, c.group_code, c.name_vi,
                '', c.priority, 'unknown', 'web', 'vi', 'new', 'open', c.track, false,
                8.5 + random() * 14.5, 102.5 + random() * 6.5, '', NULL, 1,
                now() - random() * interval '100 minutes', now(), 1, 0, repeat('0', 64)
            FROM generate_series(1, $1::int) AS g, categories AS c WHERE c.code = $2
            """,
            count,
            category,
        )
        await conn.execute("ANALYZE incidents")
    finally:
        await conn.close()


async def sessions_opened(dsn: str) -> int:
    """Connections ever opened to this database (pg_stat_database.sessions, PostgreSQL 14+);
    the difference over a phase shows connection-pool churn."""
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(value or 0)
    except asyncpg.UndefinedColumnError:
        return 0
    finally:
        await conn.close()


async def server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def count_incidents(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM incidents"))
    finally:
        await conn.close()
