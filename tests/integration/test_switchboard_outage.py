"""The hub dies in the middle of calls: Asterisk records every call itself, and the hub, back,
reconciles from those records (ADR 0018). The switchboard runs as a process of its own
(tests/integration/_switchboard_process.py) so it can be SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from ioc_core.config import Settings
from ioc_core.runtime import Core
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render
from telephony.asterisk.process import AsteriskProcess
from telephony.calls.service import CallStore
from telephony.settings import SwitchboardSettings
from tests.conftest import database_accepts
from tests.helpers import wait_until
from tests.sip.sipp import Caller

pytestmark = pytest.mark.asterisk

CALLERS = 24  # at 4 a second: six seconds of calls
BEFORE_KILL = 4  # callers the hub sees before it is killed
OUTAGE_S = 10.0


@pytest.fixture(scope="module")
def pbx(chroot_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskProcess]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path_factory.mktemp("pbx"))
    ensure_secrets(proc.state_dir)
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
    """The hub is SIGKILLed after the first callers and comes back OUTAGE_S later."""
    await hub_process.start()
    anis = [f"0912{n:06d}" for n in range(900, 900 + CALLERS)]

    async def outage() -> None:
        await hub_process.kill()  # in the middle of the calls
        await asyncio.sleep(OUTAGE_S)
        await hub_process.start()

    await _calls_during(anis, outage, pbx=pbx, folder=tmp_path)
    await _every_caller_kept(_store(core), anis)


async def test_defect_09_callers_during_a_database_outage_get_a_call_record_and_a_call_back(
    core: Core,
    hub_process: HubProcess,
    pbx: AsteriskProcess,
    settings: Settings,
    tmp_path: Path,
) -> None:
    """The same recovery path covers a database outage: the hub stays up while PostgreSQL
    refuses it for OUTAGE_S (writes in flight fail, as in a crash); the router hands each
    call back to the dialplan, Asterisk records it, and the reconciler completes it later."""
    await hub_process.start()
    name = make_url(settings.database_url).database
    assert name
    anis = [f"0913{n:06d}" for n in range(900, 900 + CALLERS)]

    async def outage() -> None:
        await database_accepts(name, up=False)
        try:
            await asyncio.sleep(OUTAGE_S)
        finally:
            await database_accepts(name, up=True)

    try:
        await _calls_during(anis, outage, pbx=pbx, folder=tmp_path)
    finally:
        await database_accepts(name, up=True)
    await _every_caller_kept(_store(core), anis)


def _store(core: Core) -> CallStore:
    return CallStore(sessions=core.sessions, settings=SwitchboardSettings.from_env({}))


async def _calls_during(
    anis: list[str],
    outage: Callable[[], Coroutine[Any, Any, None]],
    *,
    pbx: AsteriskProcess,
    folder: Path,
) -> None:
    """CALLERS callers dial 114 at 4 a second and hang up after 2 s; `outage` begins after
    the first BEFORE_KILL of them and runs while the others call."""
    callers: list[Caller] = []
    during: asyncio.Task[None] | None = None
    try:
        for n, ani in enumerate(anis):
            if n == BEFORE_KILL:
                during = asyncio.create_task(outage())
            caller = Caller(
                service="114", ani=ani, hold_ms=2000, folder=folder, sip_port=pbx_port(pbx)
            )
            callers.append(await caller.start())
            await asyncio.sleep(0.25)
        results = await asyncio.gather(*(c.done() for c in callers))
        assert results == [0] * CALLERS, "every caller got through to the queue and hung up"
        assert during is not None
        await during
    finally:
        for c in callers:
            c.stop()
        if during is not None and not during.done():
            during.cancel()


async def _every_caller_kept(store: CallStore, anis: list[str]) -> None:
    """Every caller ends with one ended call record and one call-back item, the callers of
    the outage as abandoned calls owed an automatic call-back, at the time they called."""

    async def everyone() -> dict[str, Any] | None:
        try:
            calls = await store.list_calls(service="114", limit=1000)
            items = await store.callbacks.items(limit=1000)
        except DBAPIError:  # the test's own pool lost its connections in the outage
            return None
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
        items = await store.callbacks.items(limit=1000)
        kept = {c["ani"] for c in calls if c["status"] == "ended"} & {cb["ani"] for cb in items}
        lost = [a for a in anis if a not in kept]
        raise AssertionError(
            f"{len(lost)} of {CALLERS} callers have no ended call record with a call-back item"
            f" ({len(anis) - BEFORE_KILL} called during the outage): {lost}"
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
