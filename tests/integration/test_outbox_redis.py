"""The scaled-out path: outbox -> relay -> Redis Streams -> idempotent consumer in the database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select

from ioc_core import events as ev
from ioc_core.access.roles import SYSTEM
from ioc_core.bus import Event, RedisStreamsBus
from ioc_core.config import Settings
from ioc_core.db import transaction
from ioc_core.incidents import reporting
from ioc_core.incidents.schemas import ReportIn
from ioc_core.outbox import ConsumedEvent, first_time
from ioc_core.runtime import Core, start_core
from tests.conftest import REDIS_URL
from tests.helpers import report, wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis_core(
    settings: Settings,
) -> AsyncIterator[tuple[Core, list[str], list[Event]]]:
    stream = f"test:ioc:{uuid.uuid4().hex}"
    bus = RedisStreamsBus(url=REDIS_URL, stream=stream, claim_idle_ms=500)
    applied: list[str] = []
    delivered: list[Event] = []
    holder: dict[str, Core] = {}

    async def notifier(e: Event) -> None:
        delivered.append(e)
        # The consumer's effect and its dedupe mark commit together.
        async with transaction(holder["core"].sessions) as s:
            if await first_time(s, "test-notifier", e.event_id):
                applied.append(e.event_id)

    bus.subscribe(group="test-notifier", handler=notifier, names={ev.INCIDENT_CREATED})
    core = await start_core(settings, bus=bus, migrate=False)
    holder["core"] = core
    try:
        yield core, applied, delivered
    finally:
        await core.close()
        r = aioredis.from_url(REDIS_URL)
        await r.delete(stream, f"{stream}:dead")
        await r.aclose()


async def test_reports_reach_a_redis_consumer_exactly_once(
    redis_core: tuple[Core, list[str], list[Event]],
) -> None:
    core, applied, delivered = redis_core
    for i in range(20):
        body = report(location={"lat": 10.0 + i / 10, "lon": 106.0})
        await reporting.report_incident(core, ReportIn.model_validate(body), principal=SYSTEM)
    await wait_until(lambda: len(applied) >= 20, within=10, what="20 created events")
    assert len(set(applied)) == 20
    assert await core.relay.backlog() == 0

    # The relay may publish a batch again (it died between XADD and marking the rows):
    # redelivered events are absorbed by the consumer's dedupe.
    await core.bus.publish(list(delivered))
    health: dict[str, Any] = {}

    async def drained() -> bool:
        health.update(await core.bus.health())
        group = health["groups"]["test-notifier"]
        return bool(group["pending"] == 0 and group["lag"] == 0)

    await wait_until(drained, within=10, what="the redelivered batch to be handled")
    assert len(applied) == 20
    async with core.sessions() as s:
        marks = await s.scalar(select(func.count()).select_from(ConsumedEvent))
    assert marks == 20
    assert health["status"] == "ok" and health["kind"] == "redis-streams"
