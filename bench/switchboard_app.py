"""The switchboard under test, in a process of its own (`python -m bench.switchboard_app`).

`bench.switchboard` starts this for the app phases and stops it for the bare ones. It wires
the same objects as `telephony.role` does for `ioc run` (a Core, the CallStore, the
switchboard from `build_switchboard(menu=load_menu())` and the `caller_lookup_server` FastAGI
server, on uvloop like the server), only without the HTTP API. A process of its own so that
the phones, SIPp and the benchmark's own bookkeeping do not share its GIL or its CPU figures,
as in production where the switchboard runs in the hub's primary worker.

Configuration comes from the environment (IOC_DATA_DIR, IOC_DATABASE_URL, IOC_ASTERISK_*;
`--state-dir` is the Asterisk instance's state folder, where its secrets are). Control is a
line protocol: one JSON object per line on stdin, one JSON reply per line on stdout:

    {"cmd": "stats"}                    since the last "stats": event-loop lag, and the
                                        warnings the app logged (by message), then reset
    {"cmd": "calls", "ani_prefix": P}   calls from numbers starting with P, by status
    {"cmd": "login", "extensions": [..]} desk.login (all queues) of each extension
    {"cmd": "stop"}                     close everything and exit (so does end of input)

The first line it writes is {"ready": true} once ARI and AMI are connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core.access.roles import Principal, Role
from ioc_core.api import InProcessCoreApi
from ioc_core.config import Settings
from ioc_core.runtime import start_core
from telephony.asterisk.config import AsteriskSettings
from telephony.calls.models import Call, Callback
from telephony.calls.service import CallStore
from telephony.ivr.menus import load_menu
from telephony.role import build_switchboard, caller_lookup_server
from telephony.settings import SwitchboardSettings
from telephony.switchboard.blocked import BlockedNumbers

logger = logging.getLogger("bench.switchboard_app")

LAG_TICK_S = 0.01  # the lag probe sleeps this long and notes how late it wakes
CONNECT_TIMEOUT_S = 20.0
# Automatic call-backs off: abandoned bench calls must not make the switchboard dial out.
SWITCHBOARD_ENV = {"IOC_CALLBACK_ATTEMPTS": "0"}


class WarningCounter(logging.Handler):
    """Counts WARNING and worse records by logger and message template: a look-up refused or
    timed out, a failed handler... what a caller never sees in SIPp's figures."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.name}: {record.msg}"[:160]
        self.counts[key] = self.counts.get(key, 0) + 1

    def take(self) -> dict[str, int]:
        got, self.counts = self.counts, {}
        return got


class LagProbe:
    """How late the event loop runs a timer: what every ARI/AMI/AGI task waits on top of its
    own work when the loop is busy."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(LAG_TICK_S)
            self.samples.append(max(0.0, loop.time() - start - LAG_TICK_S))
            if len(self.samples) > 200_000:  # ~30 min of samples: keep memory bounded
                del self.samples[:100_000]

    def take(self) -> dict[str, float]:
        got, self.samples = sorted(self.samples), []
        if not got:
            return {"samples": 0}

        def q(p: float) -> float:
            return round(got[min(len(got) - 1, int(p / 100 * len(got)))] * 1000, 2)

        return {"samples": len(got), "p50_ms": q(50), "p99_ms": q(99), "max_ms": q(100)}


async def _wait(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise RuntimeError(f"{what} not connected within {CONNECT_TIMEOUT_S:.0f} s") from None


def _reply(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def serve(state_dir: Path) -> None:
    settings = Settings.from_env()
    core = await start_core(settings, migrate=False)
    sb_settings = SwitchboardSettings.from_env({**os.environ, **SWITCHBOARD_ENV})
    asterisk = AsteriskSettings.from_env(state_dir)
    store = CallStore(sessions=core.sessions, settings=sb_settings, on_commit=core.relay.notify)
    # What telephony.role does with system_api(app, name="switchboard").
    api = InProcessCoreApi(core=core, principal=Principal(role=Role.SERVICE, name="switchboard"))
    sb = build_switchboard(
        store=store,
        settings=sb_settings,
        asterisk=asterisk,
        api=api,
        menu=load_menu(),
        bus=core.bus,  # answered calls' drafts, as the telephony role makes them
    )
    agi = caller_lookup_server(
        store=store,
        api=api,
        blocked=BlockedNumbers(path=settings.data_dir / "blocked-numbers.txt"),
        port=asterisk.agi_port,
    )
    probe = LagProbe()
    warnings = WarningCounter()
    logging.getLogger().addHandler(warnings)
    await agi.start()
    tasks = [asyncio.create_task(sb.run()), asyncio.create_task(probe.run())]
    try:
        await _wait(sb.ari.connected, "ARI")
        await _wait(sb.ami.connected, "AMI")
        probe.take()
        warnings.take()
        _reply({"ready": True, "pid": os.getpid()})
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            try:
                request = json.loads(line)
                cmd = request.get("cmd")
                if cmd == "stop":
                    break
                if cmd == "stats":
                    _reply({"lag": probe.take(), "warnings": warnings.take()})
                elif cmd == "calls":
                    _reply(await _calls(core.sessions, str(request["ani_prefix"])))
                elif cmd == "login":
                    for ext in request["extensions"]:
                        await sb.desk.login(str(ext))
                    _reply({"ok": True})
                else:
                    _reply({"error": f"unknown command {cmd!r}"})
            except Exception as exc:  # a bad request must not end the app under test
                logger.exception("command failed")
                _reply({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await sb.close()
        await agi.close()
        await core.close()


async def _calls(sessions: async_sessionmaker[AsyncSession], prefix: str) -> dict[str, Any]:
    """Calls from numbers starting with `prefix` (one bench run), by status; and the
    call-back items they opened."""
    mine = Call.ani.startswith(prefix, autoescape=True)
    async with sessions() as s:
        rows = (
            await s.execute(select(Call.status, func.count()).where(mine).group_by(Call.status))
        ).all()
        callbacks = await s.scalar(
            select(func.count())
            .select_from(Callback)
            .join(Call, Callback.call_id == Call.id)
            .where(mine)
        )
    by_status = {str(status): int(n) for status, n in rows}
    return {"by_status": by_status, "total": sum(by_status.values()), "callbacks": callbacks}


def _run(coro: Any) -> None:
    """uvloop when installed, as `ioc run` does."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.switchboard_app", description=__doc__)
    p.add_argument("--state-dir", type=Path, required=True, help="the Asterisk state folder")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    try:
        _run(serve(args.state_dir))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
