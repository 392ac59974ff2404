"""The embedded path: outbox -> relay -> in-process bus, across a crash of the process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sqlalchemy import func, select

from ioc_core import events as ev
from ioc_core.bus import Event, InProcessBus
from ioc_core.config import Settings
from ioc_core.db import transaction
from ioc_core.incidents.models import Incident
from ioc_core.outbox import ConsumedEvent, first_time
from ioc_core.runtime import Core, start_core
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]


async def test_defect_13_events_queued_when_the_process_dies_reach_consumers_after_restart(
    settings: Settings, database_url: str
) -> None:
    reports, handled_before = 12, 3
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration._embedded_crash",
        database_url,
        str(settings.data_dir),
        str(reports),
        str(handled_before),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    lines = out.decode().splitlines()
    assert proc.returncode == -signal.SIGKILL, lines
    assert "queued" in lines
    before = {line.split()[1] for line in lines if line.startswith("handled ")}
    assert len(before) == handled_before

    # The hub comes back with the same consumer (same group, same dedupe name).
    holder: dict[str, Core] = {}
    after: list[str] = []

    async def handler(event: Event) -> None:
        async with transaction(holder["core"].sessions) as s:
            if await first_time(s, "crash-test", event.event_id):
                after.append(str(event.payload["incident_id"]))

    bus = InProcessBus()
    bus.subscribe(group="crash-test", handler=handler, names={ev.INCIDENT_CREATED})
    core = holder["core"] = await start_core(settings, bus=bus, migrate=False)
    try:
        async with core.sessions() as s:
            incidents = set((await s.scalars(select(Incident.id))).all())
        assert len(incidents) == reports
        await wait_until(
            lambda: before | set(after) == incidents,
            within=15,
            what="every incident.created event to reach the consumer after the restart",
        )
        await wait_until(
            lambda: _no_backlog(core), within=10, what="handled events to leave the outbox"
        )
        async with core.sessions() as s:
            consumed = await s.scalar(
                select(func.count())
                .select_from(ConsumedEvent)
                .where(ConsumedEvent.consumer == "crash-test")
            )
        assert consumed == reports  # each applied exactly once across both lives
        assert not set(after) & before
    finally:
        await core.close()


async def _no_backlog(core: Core) -> bool:
    return await core.relay.backlog() == 0
