"""RedisStreamsBus against the machine's Redis (and PostgreSQL for the crash test).

Every test works on its own stream (uuid in the name) and deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from redis.asyncio import Redis

from ioc_core.bus import Event, Handler, RedisStreamsBus
from tests.conftest import PG_ADMIN as PG_ADMIN_DSN
from tests.conftest import REDIS_URL
from tests.helpers import wait_until
from tests.integration._bus_consumer import SCHEMA, apply_event

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]


def ev(name: str = "incident.created", **payload: object) -> Event:
    return Event(name=name, payload=payload, correlation_id="test")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def stream(redis: Redis) -> AsyncIterator[str]:
    name = f"test:bus:{uuid.uuid4().hex}"
    yield name
    await redis.delete(name, f"{name}:dead")


@pytest.fixture
async def make_bus(stream: str) -> AsyncIterator[Callable[..., RedisStreamsBus]]:
    """Factory for buses on the test stream; all are closed at teardown."""
    buses: list[RedisStreamsBus] = []

    def factory(**kwargs: object) -> RedisStreamsBus:
        options: dict[str, object] = {
            "url": REDIS_URL,
            "stream": stream,
            "block_ms": 100,
            "retry_backoff_ms": 10,
        }
        options.update(kwargs)
        bus = RedisStreamsBus(**options)  # type: ignore[arg-type]
        buses.append(bus)
        return bus

    yield factory
    for bus in buses:
        await bus.close(grace_s=2)


async def group_pending(redis: Redis, stream: str, group: str) -> int:
    for info in await redis.xinfo_groups(stream):
        if info["name"] == group:
            return int(info["pending"])
    raise AssertionError(f"no group {group}")


async def group_drained(redis: Redis, stream: str, group: str) -> bool:
    """Everything delivered to the group and acknowledged."""
    for info in await redis.xinfo_groups(stream):
        if info["name"] == group:
            return int(info["pending"]) == 0 and info["lag"] == 0
    return False


async def entries(
    redis: Redis, key: str, start: str = "-", count: int | None = None
) -> list[tuple[str, dict[str, str]]]:
    """XRANGE as the decode_responses client returns it (redis-py's types allow bytes)."""
    rows = await redis.xrange(key, min=start, count=count) or []
    return [(str(i), {str(k): str(v) for k, v in (f or {}).items()}) for i, f in rows]


def recorder(into: list[Event]) -> Handler:
    async def handler(event: Event) -> None:
        into.append(event)

    return handler


async def test_fan_out_across_groups(
    redis: Redis, stream: str, make_bus: Callable[..., RedisStreamsBus]
) -> None:
    bus = make_bus()
    seen: dict[str, list[Event]] = {"audit": [], "notify": [], "calls": []}
    bus.subscribe(group="audit", handler=recorder(seen["audit"]))
    bus.subscribe(group="notify", handler=recorder(seen["notify"]))
    bus.subscribe(group="calls", handler=recorder(seen["calls"]), names={"call.abandoned"})
    await bus.start()
    events = [ev("incident.created" if i % 3 else "call.abandoned", i=i) for i in range(30)]
    await bus.publish(events[:10])
    await bus.publish(events[10:])
    await wait_until(
        lambda: len(seen["audit"]) == 30 and len(seen["notify"]) == 30 and len(seen["calls"]) == 10,
        5,
        "both groups to see every event",
    )
    # One consumer per group here, so each group sees the stream order, intact.
    assert seen["audit"] == events
    assert seen["notify"] == events
    assert seen["calls"] == [e for e in events if e.name == "call.abandoned"]
    for group in seen:
        await wait_until(partial(group_drained, redis, stream, group), 5, f"{group} drained")
    health = await bus.health()
    assert health["status"] == "ok"
    assert health["kind"] == "redis-streams"
    assert health["length"] == 30
    assert health["dead_letters"] == 0
    assert health["groups"] == {g: {"pending": 0, "lag": 0} for g in seen}


async def test_competing_consumers_share_the_work(
    redis: Redis, stream: str, make_bus: Callable[..., RedisStreamsBus]
) -> None:
    handled_by: dict[str, list[str]] = defaultdict(list)

    def handler_for(consumer: str) -> Handler:
        async def handler(event: Event) -> None:
            await asyncio.sleep(0.001)  # some work, so the other consumer gets a turn
            handled_by[consumer].append(event.event_id)

        return handler

    for consumer in ("c1", "c2"):
        bus = make_bus(consumer_name=consumer, batch=10)
        bus.subscribe(group="workers", handler=handler_for(consumer))
        await bus.start()
    events = [ev(i=i) for i in range(200)]
    await bus.publish(events)
    await wait_until(
        lambda: sum(map(len, handled_by.values())) >= 200, 10, "all events to be handled"
    )
    await wait_until(lambda: group_drained(redis, stream, "workers"), 5, "group drained")
    c1, c2 = set(handled_by["c1"]), set(handled_by["c2"])
    assert c1 and c2, "both consumers should have had work"
    assert not c1 & c2, "an event was handled by both consumers"
    assert c1 | c2 == {e.event_id for e in events}
    assert len(handled_by["c1"]) + len(handled_by["c2"]) == 200


@pytest.mark.parametrize(
    ("fail_times", "dead"),
    [
        pytest.param(2, False, id="retried then succeeds on the last delivery"),
        pytest.param(100, True, id="dead-lettered after max deliveries"),
    ],
)
async def test_failing_handler_is_retried_then_dead_lettered(
    fail_times: int,
    dead: bool,
    redis: Redis,
    stream: str,
    make_bus: Callable[..., RedisStreamsBus],
) -> None:
    max_deliveries = 3
    calls: Counter[str] = Counter()
    ok: list[Event] = []

    async def handler(event: Event) -> None:
        calls[event.event_id] += 1
        if event.name == "poison" and calls[event.event_id] <= fail_times:
            raise RuntimeError(f"cannot apply, try {calls[event.event_id]}")
        ok.append(event)

    bus = make_bus(max_deliveries=max_deliveries)
    bus.subscribe(group="g", handler=handler)
    await bus.start()
    poison = ev("poison")
    others = [ev(i=i) for i in range(5)]
    await bus.publish([others[0], poison, *others[1:]])
    await wait_until(lambda: group_drained(redis, stream, "g"), 10, "group drained")
    # A failure does not hold back the entries behind it.
    assert [e for e in ok if e.name != "poison"] == others
    assert calls[poison.event_id] == max_deliveries if dead else fail_times + 1
    dead_entries = await entries(redis, f"{stream}:dead")
    if not dead:
        assert poison in ok
        assert dead_entries == []
        return
    assert poison not in ok
    assert len(dead_entries) == 1
    fields = dead_entries[0][1]
    assert Event.from_json(fields["event"]) == poison
    assert fields["group"] == "g"
    assert fields["deliveries"] == str(max_deliveries)
    assert fields["error"] == f"RuntimeError: cannot apply, try {max_deliveries}"
    assert (await bus.health())["dead_letters"] == 1


async def test_idle_entries_of_a_dead_consumer_are_claimed(
    redis: Redis, stream: str, make_bus: Callable[..., RedisStreamsBus]
) -> None:
    # A consumer that read entries and vanished, simulated at the protocol level.
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    survivor = make_bus(claim_idle_ms=100, consumer_name="survivor")
    events = [ev(i=i) for i in range(5)]
    await survivor.publish(events)
    await redis.xreadgroup("g", "ghost", {stream: ">"}, count=10)
    assert await group_pending(redis, stream, "g") == 5
    seen: list[Event] = []
    survivor.subscribe(group="g", handler=recorder(seen))
    await survivor.start()
    await wait_until(lambda: group_drained(redis, stream, "g"), 5, "claimed and acked")
    assert seen == events


async def test_entry_delivered_too_often_without_ack_is_dead_lettered(
    redis: Redis, stream: str, make_bus: Callable[..., RedisStreamsBus]
) -> None:
    # A handler that kills its process never fails "properly"; the delivery count still
    # grows with every claim, and past max_deliveries the entry must stop circulating.
    await redis.xgroup_create(stream, "g", id="0", mkstream=True)
    survivor = make_bus(claim_idle_ms=50, consumer_name="survivor", max_deliveries=3)
    killer, fine = ev("killer"), ev("fine")
    await survivor.publish([killer, fine])
    await redis.xreadgroup("g", "ghost", {stream: ">"}, count=1)
    for _ in range(2):  # two more deliveries to crashing consumers
        await redis.xreadgroup("g", "ghost", {stream: "0"}, count=1)
    seen: list[Event] = []
    survivor.subscribe(group="g", handler=recorder(seen))
    await survivor.start()
    await wait_until(lambda: group_drained(redis, stream, "g"), 5, "group drained")
    assert seen == [fine]
    [(_, fields)] = await entries(redis, f"{stream}:dead")
    assert Event.from_json(fields["event"]) == killer
    assert fields["deliveries"] == "4"
    assert fields["error"] == "never acknowledged"


async def test_health_reports_down_without_raising() -> None:
    bus = RedisStreamsBus(url="redis://127.0.0.1:1/0", stream="unused")
    health = await bus.health()
    assert health["status"] == "down"
    assert health["kind"] == "redis-streams"
    assert "error" in health
    await bus.close()


# ------------------------------------------------------------------ crash mid-batch


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"ioc_bus_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield urlsplit(PG_ADMIN_DSN)._replace(path=f"/{name}").geturl()
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def subprocesses() -> Iterator[list[asyncio.subprocess.Process]]:
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:
            proc.kill()


@pytest.mark.postgres
async def test_consumer_dies_mid_batch_and_no_event_is_lost_or_applied_twice(
    redis: Redis,
    stream: str,
    pg_dsn: str,
    make_bus: Callable[..., RedisStreamsBus],
    subprocesses: list[asyncio.subprocess.Process],
) -> None:
    n, kill_after, group = 200, 50, "apply"
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(SCHEMA)
        events = [ev("incident.created", value=i + 1) for i in range(n)]
        publisher = make_bus()
        await publisher.publish(events)

        # 1. A consumer in another process takes a batch, applies 50 events and is
        #    SIGKILLed right after committing the 50th, before acknowledging it.
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration._bus_consumer",
            REDIS_URL,
            stream,
            group,
            pg_dsn,
            str(kill_after),
            cwd=ROOT,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        subprocesses.append(proc)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 15)
        except TimeoutError:
            pytest.fail("the doomed consumer did not kill itself in time")
        assert proc.returncode == -signal.SIGKILL, (out.decode(), err.decode())

        # What the crash left: K applied and committed, the K-th still pending in Redis.
        assert await conn.fetchval("SELECT count(*) FROM applied") == kill_after
        killed_event = events[kill_after - 1]
        pending = await redis.xpending_range(stream, group, min="-", max="+", count=n)
        assert pending, "the dead consumer should hold unacknowledged entries"
        assert {p["consumer"] for p in pending} == {f"doomed-{proc.pid}"}
        first_pending = await entries(redis, stream, start=str(pending[0]["message_id"]), count=1)
        assert json.loads(first_pending[0][1]["event"])["event_id"] == killed_event.event_id

        # 2. A second consumer of the same group claims the dead one's entries and
        #    finishes the stream.
        survivor_conn = await asyncpg.connect(pg_dsn)

        async def survivor_handler(event: Event) -> None:
            await apply_event(survivor_conn, event, "survivor")

        survivor = make_bus(claim_idle_ms=200, consumer_name="survivor")
        survivor.subscribe(group=group, handler=survivor_handler)
        await survivor.start()
        try:

            async def all_applied() -> bool:
                return await conn.fetchval("SELECT applied_count FROM totals") == n and (
                    await group_drained(redis, stream, group)
                )

            await wait_until(all_applied, 10, "the survivor to apply and ack everything")
        finally:
            await survivor.close(grace_s=2)
            await survivor_conn.close()

        # Every event applied exactly once, derived totals consistent.
        rows = await conn.fetch("SELECT event_id, value FROM applied")
        assert len(rows) == n
        assert {r["event_id"] for r in rows} == {e.event_id for e in events}
        totals = await conn.fetchrow("SELECT applied_count, value_sum FROM totals")
        assert (totals["applied_count"], totals["value_sum"]) == (n, n * (n + 1) // 2)
        assert await group_pending(redis, stream, group) == 0
        # The committed-but-unacknowledged event was delivered again, and absorbed.
        twice = await conn.fetch(
            "SELECT event_id, array_agg(consumer ORDER BY id) AS consumers"
            " FROM attempts GROUP BY event_id HAVING count(*) > 1"
        )
        assert [(r["event_id"], r["consumers"]) for r in twice] == [
            (killed_event.event_id, [f"doomed-{proc.pid}", "survivor"])
        ]
        assert await conn.fetchval("SELECT count(*) FROM attempts") == n + 1
        assert (
            await conn.fetchval(
                "SELECT consumer FROM applied WHERE event_id = $1", killed_event.event_id
            )
            == f"doomed-{proc.pid}"
        )
    finally:
        await conn.close()
