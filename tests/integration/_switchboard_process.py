"""The hub's switchboard as a process of its own, built as the telephony role builds it (Stasis
app, AMI observer, FastAGI look-up, and the reconciler from Asterisk's call records), so a
test can SIGKILL it in the middle of calls.

    python -m tests.integration._switchboard_process PBX_STATE_DIR

The database and data folder come from IOC_DATABASE_URL / IOC_DATA_DIR. Prints "ready" once
ARI and AMI are connected, then runs until killed.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from ioc_core.access.roles import SYSTEM
from ioc_core.api import InProcessCoreApi
from ioc_core.bus import InProcessBus
from ioc_core.config import Settings
from ioc_core.runtime import start_core
from telephony.asterisk.cdr import default_path
from telephony.asterisk.config import AsteriskSettings
from telephony.calls.reconcile import Reconciler, reconciling
from telephony.calls.service import CallStore
from telephony.role import build_switchboard, caller_lookup_server
from telephony.settings import SwitchboardSettings
from telephony.switchboard.blocked import BlockedNumbers


async def main(pbx_state: Path) -> None:
    settings = Settings.from_env()
    core = await start_core(settings, bus=InProcessBus(), migrate=False)
    # No automatic call-back is placed while the test runs (nobody answers at the trunk).
    sw = SwitchboardSettings.from_env({"IOC_CALLBACK_FIRST_DELAY_S": "3600"})
    store = CallStore(sessions=core.sessions, settings=sw, on_commit=core.relay.notify)
    asterisk = AsteriskSettings.from_env(pbx_state)
    api = InProcessCoreApi(core=core, principal=SYSTEM)
    sb = build_switchboard(store=store, settings=sw, asterisk=asterisk, api=api, bus=core.bus)
    agi = caller_lookup_server(
        store=store,
        api=api,
        blocked=BlockedNumbers(path=settings.data_dir / "blocked.txt"),
        port=asterisk.agi_port,
    )
    await agi.start()
    records = Reconciler(
        store=store,
        sessions=core.sessions,
        settings=sw,
        path=default_path(pbx_state / "log"),
        interval_s=1.0,
        settle_s=1.0,
    )
    async with reconciling(records):
        task = asyncio.create_task(sb.run())
        await asyncio.gather(sb.ari.connected.wait(), sb.ami.connected.wait())
        print("ready", flush=True)
        await task


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(Path(sys.argv[1])))
