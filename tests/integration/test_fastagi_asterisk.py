"""A real Asterisk asks our FastAGI server about a caller before the call goes on.

Each call is a Local channel originated through ARI into a test context that sets the caller's
number, runs the `caller-lookup` subroutine the hotline contexts use, then enters
`Stasis(agitest,${AGISTATUS})`, where the test reads the channel variables over ARI.

This Asterisk must not share a chroot with another one running on the machine (two instances
would mount over the same /etc/asterisk): `IOC_TEST_ASTERISK_ROOT` names a private copy; the
ports come from IOC_ASTERISK_* as everywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ioc_core.artifacts import mounts_under
from telephony.agi.fastagi import STATUS_VARIABLE, AgiRequest, FastAgiServer, Handler
from telephony.agi.lookups import (
    CALLER_BLOCKED,
    CALLER_CALLS,
    CALLER_FLAGGED,
    CALLER_LAST_REF,
    CALLER_OPEN,
    DEFAULTS,
    SCRIPT,
    make_caller_lookup,
)
from telephony.ari.client import AriClient, ChannelGone
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render
from telephony.asterisk.process import AsteriskProcess

pytestmark = pytest.mark.asterisk

APP = "agitest"

# Test only: <service><caller's digits> as the extension.
TEST_CONTEXT = """
[agi-test]
exten => _1022X.,1,Set(CALLERID(num)=${EXTEN:4})
 same => n,Gosub(caller-lookup,s,1(1022))
 same => n,Stasis(agitest,${AGISTATUS})
 same => n,Hangup()
exten => _11[345]X.,1,Set(CALLERID(num)=${EXTEN:3})
 same => n,Gosub(caller-lookup,s,1(${EXTEN:0:3}))
 same => n,Stasis(agitest,${AGISTATUS})
 same => n,Hangup()
"""

READ = (*DEFAULTS, STATUS_VARIABLE, "AGISTATUS")


@pytest.fixture(scope="module")
def asterisk(
    chroot_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AsteriskProcess]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path_factory.mktemp("agi-asterisk"))
    ensure_secrets(proc.state_dir)
    config = render(AsteriskSettings.from_env(proc.state_dir).placeholders())
    extensions = config["extensions.conf"]
    assert "[caller-lookup]" in extensions  # the project's own subroutine is under test
    config["extensions.conf"] = extensions + TEST_CONTEXT
    try:
        proc.start(config)
        yield proc
    finally:
        proc.stop()
        assert mounts_under(chroot_root) == [], "nothing stays mounted in the chroot"


class Calls:
    """The test's Stasis app: originates calls, collects the ones that reach Stasis."""

    def __init__(self, *, ari: AriClient, asterisk: AsteriskProcess) -> None:
        self.ari = ari
        self.asterisk = asterisk
        self.arrived: dict[str, asyncio.Future[Mapping[str, Any]]] = {}

    async def on_event(self, event: Mapping[str, Any]) -> None:
        if event["type"] == "StasisStart" and event.get("args"):  # the dialplan's half
            waiting = self.arrived.get(event["channel"]["dialplan"]["exten"])
            if waiting is not None and not waiting.done():
                waiting.set_result(event)

    async def use_port(self, agi_port: int) -> None:
        """The port of this test's server, as the global the dialplan reads."""
        await asyncio.to_thread(self.asterisk.cli, f"dialplan set global IOC_AGI_PORT {agi_port}")

    async def place(self, extension: str) -> tuple[dict[str, str], float]:
        """Call `extension` in [agi-test]; the channel's variables once it reached Stasis,
        and how long the dialplan took to get there."""
        self.arrived[extension] = asyncio.get_running_loop().create_future()
        started = time.monotonic()
        origin = await self.ari.request(
            "POST", "/channels", endpoint=f"Local/{extension}@agi-test", app=APP
        )
        try:
            event = await asyncio.wait_for(self.arrived[extension], 10)
            elapsed = time.monotonic() - started
            channel = event["channel"]["id"]
            found = {}
            for name in READ:
                got = await self.ari.request("GET", f"/channels/{channel}/variable", variable=name)
                found[name] = got["value"]
            assert event["args"] == [found["AGISTATUS"]]
            return found, elapsed
        finally:
            with contextlib.suppress(ChannelGone):  # hanging up one half ends both
                await self.ari.request("DELETE", f"/channels/{origin['id']}")
            missing = [line for line in self.asterisk.log_problems() if "No application" in line]
            assert missing == [], "the dialplan uses an application modules.conf does not load"


@pytest.fixture
async def calls(asterisk: AsteriskProcess) -> AsyncIterator[Calls]:
    settings = AsteriskSettings.from_env(asterisk.state_dir)
    ari = AriClient(
        base_url=f"http://127.0.0.1:{settings.http_port}",
        user=settings.ari_user,
        password=settings.ari_password,
        app=APP,
    )
    calls = Calls(ari=ari, asterisk=asterisk)
    task = asyncio.create_task(ari.run(calls.on_event))
    try:
        await asyncio.wait_for(ari.connected.wait(), 10)
        yield calls
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ari.close()


class Switchboard:
    """Fake sources: one caller with history, open incidents and a place on the block list."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def history(self, number: str) -> int:
        self.asked.append(number)
        return 5 if number == "0912345678" else 0

    async def open_incidents(self, number: str) -> tuple[int, str | None]:
        return (2, "PA-2026-000123") if number == "0912345678" else (0, None)

    async def blocked(self, number: str) -> bool:
        return number == "0912345678"

    def lookup(self) -> Handler:
        return make_caller_lookup(
            history=self.history, open_incidents=self.open_incidents, blocked=self.blocked
        )


async def test_the_hotline_learns_who_is_calling(calls: Calls) -> None:
    switchboard = Switchboard()
    async with FastAgiServer(handlers={SCRIPT: switchboard.lookup()}, port=0) as server:
        await calls.use_port(server.port)
        found, _ = await calls.place("102284912345678")
        other, _ = await calls.place("10220387654321")
    assert found == {
        CALLER_CALLS: "5",
        CALLER_OPEN: "2",
        CALLER_LAST_REF: "PA-2026-000123",
        CALLER_BLOCKED: "1",
        CALLER_FLAGGED: "1",
        STATUS_VARIABLE: "ok",
        "AGISTATUS": "SUCCESS",
    }
    assert switchboard.asked == ["0912345678", "0387654321"]  # as dialled: 84912345678
    assert other[CALLER_CALLS] == "0" and other[CALLER_BLOCKED] == "0"
    assert other[STATUS_VARIABLE] == "ok"


@pytest.mark.parametrize("service", ["113", "114", "115"])
async def test_an_emergency_from_a_blocked_number_is_only_flagged(
    calls: Calls, service: str
) -> None:
    async with FastAgiServer(handlers={SCRIPT: Switchboard().lookup()}, port=0) as server:
        await calls.use_port(server.port)
        found, _ = await calls.place(f"{service}0912345678")
    assert found[CALLER_BLOCKED] == "0"
    assert found[CALLER_FLAGGED] == "1"
    assert found[STATUS_VARIABLE] == "ok"


async def test_with_the_server_down_the_call_goes_on_with_the_defaults(calls: Calls) -> None:
    server = FastAgiServer(handlers={SCRIPT: Switchboard().lookup()}, port=0)
    async with server:
        await calls.use_port(server.port)
    # Nothing listens on that port any more.
    found, elapsed = await calls.place("10220912345678")
    # Every variable the look-up declares has its default from the dialplan.
    assert found == {**DEFAULTS, STATUS_VARIABLE: "unavailable", "AGISTATUS": "FAILURE"}
    assert elapsed < 3, f"the call waited {elapsed:.1f}s for a dead look-up"


async def test_a_slow_lookup_does_not_hold_the_call(calls: Calls) -> None:
    async def slow(request: AgiRequest) -> Mapping[str, str]:
        await asyncio.sleep(30)
        return {CALLER_BLOCKED: "1"}

    async with FastAgiServer(handlers={SCRIPT: slow}, port=0, timeout_s=0.5) as server:
        await calls.use_port(server.port)
        found, elapsed = await calls.place("11384912345678")
    assert found[STATUS_VARIABLE] == "failed"
    assert found["AGISTATUS"] == "SUCCESS"  # the session itself ended normally
    assert found[CALLER_BLOCKED] == "0"  # the default stands
    assert elapsed < 2.5, f"the call waited {elapsed:.1f}s for a slow look-up"


async def test_an_unknown_script_is_reported_not_fatal(calls: Calls) -> None:
    async with FastAgiServer(handlers={"other": Switchboard().lookup()}, port=0) as server:
        await calls.use_port(server.port)
        found, _ = await calls.place("11584912345678")
    assert found[STATUS_VARIABLE] == "unknown-script"
    assert found[CALLER_FLAGGED] == "0"


async def test_a_busy_server_refuses_at_once_and_the_call_goes_on(calls: Calls) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    async def held(request: AgiRequest) -> Mapping[str, str]:
        entered.set()
        await release.wait()
        return {CALLER_OPEN: "1"}

    async with FastAgiServer(
        handlers={SCRIPT: held}, port=0, max_sessions=1, timeout_s=5
    ) as server:
        await calls.use_port(server.port)
        first = asyncio.create_task(calls.place("10220912345678"))
        await asyncio.wait_for(entered.wait(), 10)
        refused, elapsed = await calls.place("11380912345678")
        release.set()
        served, _ = await first
    # Closed before a word: Asterisk calls that a SUCCESS; only IOC_AGI_STATUS tells.
    assert refused["AGISTATUS"] == "SUCCESS"
    assert refused[STATUS_VARIABLE] == "unavailable" and refused[CALLER_OPEN] == "0"
    assert elapsed < 1.5, f"a refused look-up held the call for {elapsed:.1f}s"
    assert served[STATUS_VARIABLE] == "ok" and served[CALLER_OPEN] == "1"
