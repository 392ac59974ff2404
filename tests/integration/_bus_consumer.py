"""A bus consumer that applies events idempotently into PostgreSQL, for the crash test.

    python -m tests.integration._bus_consumer REDIS_URL STREAM GROUP PG_DSN KILL_AFTER

It handles events of GROUP and, right after committing the KILL_AFTER-th event (before
the bus acknowledges it), sends itself SIGKILL: no cleanup, no ack, exactly what a
crashed or OOM-killed worker leaves behind. KILL_AFTER=0 means run until terminated.
The test imports `SCHEMA` and `apply_event` from here so both consumers apply alike.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import asyncpg

from ioc_core.bus import Event, RedisStreamsBus

SCHEMA = """
CREATE TABLE applied (
    event_id text PRIMARY KEY,
    value bigint NOT NULL,
    consumer text NOT NULL
);
-- Every delivery that reached a commit, duplicates included: proves redelivery happened.
CREATE TABLE attempts (
    id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    consumer text NOT NULL
);
-- Derived state that a double application would corrupt.
CREATE TABLE totals (
    id int PRIMARY KEY,
    applied_count bigint NOT NULL,
    value_sum bigint NOT NULL
);
INSERT INTO totals VALUES (1, 0, 0);
"""


async def apply_event(conn: asyncpg.Connection, event: Event, consumer: str) -> bool:
    """Apply `event` once, whatever the number of deliveries; True if this one applied it."""
    value = int(event.payload["value"])
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO attempts (event_id, consumer) VALUES ($1, $2)", event.event_id, consumer
        )
        inserted = await conn.fetchval(
            "INSERT INTO applied (event_id, value, consumer) VALUES ($1, $2, $3)"
            " ON CONFLICT (event_id) DO NOTHING RETURNING 1",
            event.event_id,
            value,
            consumer,
        )
        if inserted is not None:
            await conn.execute(
                "UPDATE totals SET applied_count = applied_count + 1,"
                " value_sum = value_sum + $1 WHERE id = 1",
                value,
            )
    return inserted is not None


async def main(argv: list[str]) -> None:
    redis_url, stream, group, dsn, kill_after_raw = argv
    kill_after = int(kill_after_raw)
    consumer = f"doomed-{os.getpid()}"
    conn = await asyncpg.connect(dsn)
    handled = 0

    async def handler(event: Event) -> None:
        nonlocal handled
        await apply_event(conn, event, consumer)
        handled += 1
        if handled == kill_after:
            # Committed in PostgreSQL, not yet acknowledged in Redis.
            os.kill(os.getpid(), signal.SIGKILL)

    # A long claim_idle_ms: this consumer must not steal anything, only die.
    bus = RedisStreamsBus(
        url=redis_url, stream=stream, consumer_name=consumer, claim_idle_ms=600_000
    )
    bus.subscribe(group=group, handler=handler)
    await bus.start()
    print("started", consumer, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await bus.close()
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
