"""An embedded hub (in-process bus) that dies with events queued and not yet consumed.

    python -m tests.integration._embedded_crash DATABASE_URL DATA_DIR REPORTS HANDLED

It reports REPORTS incidents; its consumer (group `crash-test`) handles the first HANDLED
`incident.created` events (effect and dedupe mark committed together, as real consumers do)
and prints `handled <incident_id>` for each, then stops making progress. Once the relay has
queued every event it prints `queued` and sends itself SIGKILL: the events still in memory
were never consumed, which is the moment an embedded hub must not lose them at.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from ioc_core import events as ev
from ioc_core.access.roles import SYSTEM
from ioc_core.bus import Event, InProcessBus
from ioc_core.db import transaction
from ioc_core.incidents import reporting
from ioc_core.incidents.schemas import ReportIn
from ioc_core.outbox import first_time
from ioc_core.runtime import Core, start_core
from tests.conftest import make_settings
from tests.helpers import report, wait_until

CONSUMER = "crash-test"


async def main(argv: list[str]) -> None:
    url, data_dir, reports_raw, handled_raw = argv
    reports, budget = int(reports_raw), int(handled_raw)
    holder: dict[str, Core] = {}
    handled = 0

    async def handler(event: Event) -> None:
        nonlocal handled
        if handled >= budget:
            await asyncio.Event().wait()  # a slow consumer: the rest stays queued
        async with transaction(holder["core"].sessions) as s:
            await first_time(s, CONSUMER, event.event_id)
        handled += 1
        print("handled", event.payload["incident_id"], flush=True)

    bus = InProcessBus()
    bus.subscribe(group=CONSUMER, handler=handler, names={ev.INCIDENT_CREATED})
    core = holder["core"] = await start_core(
        make_settings(Path(data_dir), url), bus=bus, migrate=False
    )
    for i in range(reports):
        body = report(location={"lat": 10.0 + i / 10, "lon": 106.0})
        await reporting.report_incident(core, ReportIn.model_validate(body), principal=SYSTEM)
    await wait_until(
        lambda: core.relay.published >= reports and handled >= budget,
        within=60,
        what="every event queued",
    )
    print("queued", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
