"""The floor: the rows of one report written with plain asyncpg, no ORM, no HTTP.

Same rows as `report_incident` writes for a new, non-duplicate report (incident, reporter, one
hash-chained timeline row, one outbox event), in one transaction per report, from a pool as
large as the hub's (pool_size 10 + max_overflow 10 = 20 connections). Two shapes:
- "tx": BEGIN; 4 INSERTs; COMMIT (6 round trips; what an ORM at its best would send);
- "1rt": the 4 INSERTs as one statement with data-modifying CTEs (1 round trip, autocommit).
"""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.closed_loop import in_process_result, measure
from bench.payload import AREA_CODE, CATEGORY, LAT_RANGE, LON_RANGE
from bench.probe import Probe
from bench.stats import Result
from ioc_core import events as ev
from ioc_core.bus import Event
from ioc_core.incidents.audit import GENESIS, entry_hash
from ioc_core.incidents.lifecycle import PHASE, State

POOL_SIZE = 20

COLUMNS: dict[str, tuple[str, ...]] = {
    "incidents": (
        "id", "code", "category_code", "category_group", "title", "description", "priority",
        "severity", "channel", "language", "state", "phase", "track", "due_at", "escalated",
        "lat", "lon", "address", "area_code", "reporter_count", "created_at", "updated_at",
        "version", "chain_seq", "chain_head",
    ),
    "reporters": (
        "id", "incident_id", "name", "phone", "email", "channel", "channel_user_id",
        "confidential", "subject", "created_at",
    ),
    "timeline": (
        "incident_id", "seq", "at", "actor", "actor_role", "channel", "kind", "from_state",
        "to_state", "note", "data", "prev_hash", "hash",
    ),
    "outbox": ("event_id", "name", "event", "created_at"),
}  # fmt: skip
TABLES = tuple(COLUMNS)


@dataclass(frozen=True)
class Category:
    code: str
    group: str
    name: str
    priority: str
    track: str
    deadline_days: int | None


def insert_sql(table: str, first: int = 1) -> str:
    cols = COLUMNS[table]
    params = ", ".join(f"${i}" for i in range(first, first + len(cols)))
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({params})"


def one_statement_sql() -> str:
    """incidents, reporters and timeline as CTEs, outbox as the main statement."""
    first, ctes = 1, []
    for table in TABLES[:-1]:
        ctes.append(f"w_{table} AS ({insert_sql(table, first)})")
        first += len(COLUMNS[table])
    return f"WITH {', '.join(ctes)} {insert_sql(TABLES[-1], first)}"


INSERT = {table: insert_sql(table) for table in TABLES}
ONE_STATEMENT = one_statement_sql()


async def load_category(conn: asyncpg.Connection, code: str = CATEGORY) -> Category:
    row = await conn.fetchrow(
        "SELECT code, group_code, name_vi, priority, track, deadline_days"
        " FROM categories WHERE code = $1",
        code,
    )
    if row is None:
        raise RuntimeError(f"category {code!r} missing: was the catalogue loaded?")
    return Category(*row)


def report_rows(number: int, cat: Category, rng: random.Random) -> dict[str, tuple[Any, ...]]:
    """The rows of one new report, with a valid timeline hash and a real outbox event."""
    now = datetime.now(UTC)
    inc_id, state = str(uuid.uuid4()), State.NEW
    timeline = dict(
        incident_id=inc_id, seq=1, at=now, actor="service:bench", actor_role="service",
        channel="web", kind="created", from_state=None, to_state=state.value, note="",
        data={"category": cat.code, "attachments": 0},
    )  # fmt: skip
    digest = entry_hash(GENESIS, timeline)
    lat, lon = rng.uniform(*LAT_RANGE), rng.uniform(*LON_RANGE)
    due = now + timedelta(days=cat.deadline_days) if cat.deadline_days else None
    code = f"RB-{now.year}-{number:07d}"
    event = Event(
        name=ev.INCIDENT_CREATED,
        version=ev.SCHEMAS[ev.INCIDENT_CREATED][0],
        correlation_id=inc_id,
        payload={"incident_id": inc_id, "code": code, "category": cat.code, "channel": "web",
                 "state": state.value, "priority": cat.priority, "track": cat.track,
                 "area_code": AREA_CODE, "lat": lat, "lon": lon},
    )  # fmt: skip
    return {
        "incidents": (
            inc_id, code, cat.code, cat.group, cat.name, "Rác thải đổ trộm (benchmark)",
            cat.priority, "unknown", "web", "vi", state.value, PHASE[state].value, cat.track,
            due, False, lat, lon, "Hẻm 12, Đồng Xoài", AREA_CODE, 1, now, now, 1, 1, digest,
        ),
        "reporters": (
            str(uuid.uuid4()), inc_id, "Nguyễn Văn An", "0912345678", "an@example.vn", "web",
            "zalo-123", False, "", now,
        ),
        "timeline": (
            *(timeline[c] for c in COLUMNS["timeline"][:10]),
            json.dumps(timeline["data"], ensure_ascii=False), GENESIS, digest,
        ),
        "outbox": (event.event_id, event.name, json.dumps(event.to_dict()), now),
    }  # fmt: skip


Writer = Callable[[asyncpg.Connection, dict[str, tuple[Any, ...]]], Awaitable[None]]


async def write_in_transaction(conn: asyncpg.Connection, rows: dict[str, tuple[Any, ...]]) -> None:
    async with conn.transaction():
        for table in TABLES:
            await conn.execute(INSERT[table], *rows[table])


async def write_one_statement(conn: asyncpg.Connection, rows: dict[str, tuple[Any, ...]]) -> None:
    await conn.execute(ONE_STATEMENT, *itertools.chain.from_iterable(rows.values()))


SHAPES: dict[str, tuple[str, Writer]] = {
    "tx": ("raw asyncpg: BEGIN, 4 INSERT, COMMIT", write_in_transaction),
    "1rt": ("raw asyncpg: 1 statement (CTE)", write_one_statement),
}


async def run_raw(
    dsn: str, shape: str, *, concurrency: int, seconds: float, warmup_s: float
) -> Result:
    phase, write = SHAPES[shape]
    rng, numbers = random.Random(7), itertools.count(1)
    pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        async with pool.acquire() as conn:
            cat = await load_category(conn)

        async def op() -> None:
            rows = report_rows(next(numbers), cat, rng)
            async with pool.acquire() as conn:
                await write(conn, rows)

        samples, used, sessions = await measure(
            op, Probe.in_process(dsn), concurrency=concurrency, seconds=seconds, warmup_s=warmup_s
        )
    finally:
        await pool.close()
    return in_process_result(
        phase,
        f"{concurrency} tasks, pool {POOL_SIZE}",
        samples,
        used,
        sessions,
        samples.first_error,
    )
