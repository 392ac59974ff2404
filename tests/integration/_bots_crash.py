"""A hub whose bots die in the middle of a report's turn.

    python -m tests.integration._bots_crash DATABASE_URL DATA_DIR PORT KILL_AT

Serves the hub (Telegram configured from the environment, as `ioc run` would) on PORT and
prints `ready`. In the turn that files a report it sends itself SIGKILL at KILL_AT:
- `filed`: the core has filed the report and answered; the bots wrote nothing of it yet;
- `seen`: the report is filed and remembered, the photos dropped; the turn's one write (the
  update marked seen, the conversation moved on, the replies queued) is about to begin.
Telegram then redelivers the update, to the hub once it is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from bots.store.service import BotStore
from ioc_core.bus import InProcessBus
from ioc_core.runtime import start_core
from ioc_core.web.app import make_app
from tests.conftest import make_settings


def _die(*_args: Any, **_kw: Any) -> None:
    print("killed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


async def main(argv: list[str]) -> None:
    url, data_dir, port, kill_at = argv
    if kill_at == "filed":

        async def remember_report(*args: Any, **kw: Any) -> None:
            _die()

        BotStore.remember_report = remember_report  # type: ignore[method-assign]
    elif kill_at == "seen":
        finish = BotStore.finish

        async def finish_or_die(self: BotStore, turn: Any, msg: Any, *a: Any, **kw: Any) -> None:
            if msg.choice == "yes":  # the confirm step's turn, which files the report
                _die()
            await finish(self, turn, msg, *a, **kw)

        BotStore.finish = finish_or_die  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown kill point {kill_at!r}")
    core = await start_core(make_settings(Path(data_dir), url), bus=InProcessBus(), migrate=False)
    runner = web.AppRunner(make_app(core))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(port)).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
