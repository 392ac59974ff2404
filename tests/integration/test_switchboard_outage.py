"""The hub dies in the middle of calls: Asterisk records every call itself, and the hub, back,
reconciles from those records (ADR 0018). The switchboard runs as a process of its own
(tests/integration/_switchboard_process.py) so it can be SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ioc_core.config import Settings
from ioc_core.runtime import Core
from telephony.asterisk.config import AsteriskSettings, render
from telephony.asterisk.process import AsteriskProcess
from telephony.calls.service import CallStore
from telephony.settings import SwitchboardSettings
from tests.helpers import wait_until
from tests.integration.sipcall import Caller

pytestmark = pytest.mark.asterisk

CALLERS = 24  # at 4 a second: six seconds of calls
BEFORE_KILL = 4  # callers the hub sees before it is killed
OUTAGE_S = 10.0


@pytest.fixture(scope="module")
def pbx(chroot_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskProcess]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path_factory.mktemp("pbx"))
    proc.start(render(AsteriskSettings.from_env(proc.state_dir).placeholders()))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def backend() -> str:
    # Two processes write the database at once: PostgreSQL, as in production.
    return "postgres"


class HubProcess:
    def __init__(self, *, settings: Settings, pbx: AsteriskProcess, log: Path) -> None:
        self._env = {
            **os.environ,
            "IOC_DATA_DIR": str(settings.data_dir),
            "IOC_DATABASE_URL": settings.database_url,
            "IOC_AREA_PROVINCES": "75",
        }
        self._pbx = pbx
        self._log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        log = await asyncio.to_thread(open, self._log, "ab")
        with log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.integration._switchboard_process",
                str(self._pbx.state_dir),
                env=self._env,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line.strip() == b"ready", f"the hub did not start; see {self._log}"

    async def kill(self) -> None:
        """SIGKILL: no clean-up, no last write."""
        if self.proc is not None and self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


@pytest.fixture
async def hub_process(
    settings: Settings,
    pbx: AsteriskProcess,
    tmp_path: Path,
) -> AsyncIterator[HubProcess]:
    hub = HubProcess(settings=settings, pbx=pbx, log=tmp_path / "hub.log")
    try:
        yield hub
    finally:
        await hub.kill()
        await asyncio.to_thread(pbx.cli, "channel request hangup all")


async def test_defect_09_callers_during_a_hub_outage_get_a_call_record_and_a_call_back(
    core: Core,
    hub_process: HubProcess,
    pbx: AsteriskProcess,
    tmp_path: Path,
) -> None:
    store = CallStore(sessions=core.sessions, settings=SwitchboardSettings.from_env({}))
    await hub_process.start()
    anis = [f"0912{n:06d}" for n in range(900, 900 + CALLERS)]
    callers: list[Caller] = []
    restarted: asyncio.Task[None] | None = None
    try:
        for n, ani in enumerate(anis):
            if n == BEFORE_KILL:
                await hub_process.kill()  # in the middle of the calls
                restarted = asyncio.create_task(_after(OUTAGE_S, hub_process.start()))
            caller = Caller(
                service="114", ani=ani, hold_ms=2000, folder=tmp_path, sip_port=pbx_port(pbx)
            )
            callers.append(await caller.start())
            await asyncio.sleep(0.25)
        results = await asyncio.gather(*(c.done() for c in callers))
        assert results == [0] * CALLERS, "every caller got through to the queue and hung up"
        assert restarted is not None
        await restarted
    finally:
        for c in callers:
            c.stop()

    async def everyone() -> dict[str, Any] | None:
        calls = await store.list_calls(service="114", limit=1000)
        items = await store.list_callbacks(limit=1000)
        mine = [c for c in calls if c["ani"] in anis]
        if {c["ani"] for c in mine} != set(anis) or any(c["status"] != "ended" for c in mine):
            return None
        by_call = {c["id"] for c in mine}
        if len({cb["call_id"] for cb in items if cb["ani"] in anis}) < len(by_call):
            return None
        return {"calls": mine, "callbacks": [cb for cb in items if cb["ani"] in anis]}

    try:
        found: dict[str, Any] = await wait_until(
            everyone,
            30,
            "every caller with an ended call record and a call-back item",
            interval=0.5,
        )
    except AssertionError:
        calls = await store.list_calls(service="114", limit=1000)
        items = await store.list_callbacks(limit=1000)
        kept = {c["ani"] for c in calls if c["status"] == "ended"} & {cb["ani"] for cb in items}
        lost = [a for a in anis if a not in kept]
        raise AssertionError(
            f"{len(lost)} of {CALLERS} callers have no ended call record with a call-back item"
            f" ({len(anis) - BEFORE_KILL} called while the hub was down): {lost}"
        ) from None
    calls, items = found["calls"], found["callbacks"]
    assert len(calls) == CALLERS, "one call record per caller, none counted twice"
    assert len(items) == CALLERS, "one call-back item per call, none made twice"
    during = {c["ani"]: c for c in calls if c["ani"] in anis[BEFORE_KILL + 1 :]}
    # The callers the hub never saw: abandoned (not "unknown"), owed an automatic call-back.
    assert {c["outcome"] for c in during.values()} == {"abandoned"}
    assert all(
        cb["automatic"] and cb["reason"] == "abandoned" for cb in items if cb["ani"] in during
    )
    # Late, but at the time they called: the record keeps Asterisk's times.
    first = min(c["arrived_at"] for c in during.values())
    assert all(c["ended_at"] > c["arrived_at"] for c in calls)
    assert first < max(cb["created_at"] for cb in items)


def pbx_port(proc: AsteriskProcess) -> int:
    return AsteriskSettings.from_env(proc.state_dir).sip_port


async def _after(delay_s: float, step: Any) -> None:
    await asyncio.sleep(delay_s)
    await step
