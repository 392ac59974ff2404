"""A hub whose process dies right after an answered call's transaction commits, before
anything else runs (the moment an in-memory draft used to be lost at).

    python -m tests.integration._draft_crash DATABASE_URL DATA_DIR CALL_ID

The call arrives on 113 and queues (recorded as the AMI observer records them); then the
switchboard's observer hears the agent answer, and the process sends itself SIGKILL from the
call store's after-commit hook, synchronously: no other task of the hub runs after that commit.
Prints `answered` just before the answer is handed to the observer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from ioc_core.access.roles import SYSTEM
from ioc_core.api import InProcessCoreApi
from ioc_core.bus import InProcessBus
from ioc_core.runtime import start_core
from telephony.asterisk.config import AsteriskSettings
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.role import build_switchboard
from telephony.settings import SwitchboardSettings
from tests.conftest import make_settings

ANI = "0912555444"


async def main(argv: list[str]) -> None:
    url, data_dir, uid = argv
    core = await start_core(make_settings(Path(data_dir), url), bus=InProcessBus(), migrate=False)
    armed = False

    def committed() -> None:
        if armed:
            os.kill(os.getpid(), signal.SIGKILL)
        core.relay.notify()

    settings = SwitchboardSettings.from_env({})
    store = CallStore(sessions=core.sessions, settings=settings, on_commit=committed)
    sb = build_switchboard(
        store=store,
        settings=settings,
        asterisk=AsteriskSettings.from_env(Path(data_dir) / "asterisk", {}),
        api=InProcessCoreApi(core=core, principal=SYSTEM),
        bus=core.bus,
    )
    sb.drafts.subscribe(core.bus)  # what the switchboard's run() does first
    await store.record(uid, Fact.ARRIVED, ani=ANI, service="113", channel=f"PJSIP/trunk-{uid}")
    await store.record(uid, Fact.QUEUED, queue="emergency-113", position=1)
    await store.record(uid, Fact.AGENT_RINGING, agent="1001")
    armed = True
    print("answered", flush=True)
    await sb.on_ami(
        {
            "Event": "AgentConnect",
            "Uniqueid": uid,
            "Queue": "emergency-113",
            "MemberName": "1001",
            "CallerIDNum": ANI,
            "Channel": f"PJSIP/trunk-{uid}",
        }
    )
    await asyncio.sleep(30)  # killed long before


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
