"""The 1022 voice menu on a real Asterisk, driven by real SIPp calls pressing RFC 2833 keys.

Runs beside another Asterisk if need be: IOC_TEST_ASTERISK_ROOT names a private chroot copy
(two Asterisks must not share one: each binds its own /etc/asterisk over it), and the
IOC_ASTERISK_*_PORT / RTP_* variables move this one off the default ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ioc_core.artifacts import mounts_under
from telephony.ari.client import AriClient
from telephony.ari.events import channel_of
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render
from telephony.asterisk.process import AsteriskProcess
from telephony.ivr.menus import Menu, load_menu, parse_menu
from telephony.ivr.prompts import ensure_prompts
from telephony.ivr.session import IvrResult, run_ivr
from tests.helpers import wait_until
from tests.sip.sipp import SCENARIOS, dtmf_pcaps, run_sipp

pytestmark = pytest.mark.asterisk
NOON = datetime(2025, 11, 26, 5, 0, tzinfo=UTC)  # a Wednesday, 12:00 in Hồ Chí Minh City


@pytest.fixture(scope="module")
def switchboard(
    chroot_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AsteriskProcess]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path_factory.mktemp("ivr-switchboard"))
    ensure_prompts(proc.state_dir / "sounds")  # what `ioc setup` does before the start
    try:
        ensure_secrets(proc.state_dir)
        proc.start(render(AsteriskSettings.from_env(proc.state_dir).placeholders()))
        yield proc
    finally:
        proc.stop()
        assert mounts_under(chroot_root) == [], "nothing stays mounted inside the chroot"


class Router:
    """The part of the switchboard's Stasis router this feature needs: a call that enters
    `Stasis(ioc,ivr,...)` gets a menu session, and its channel's events go to that session."""

    def __init__(self, *, ari: AriClient, menu: Menu) -> None:
        self.ari = ari
        self.menu = menu
        self.queues: dict[str, asyncio.Queue[Mapping[str, Any]]] = {}
        self.sessions: dict[str, asyncio.Task[IvrResult]] = {}

    async def handle(self, event: Mapping[str, Any]) -> None:
        if event["type"] == "StasisStart" and event.get("args", [])[:1] == ["ivr"]:
            channel = event["channel"]["id"]
            self.queues[channel] = asyncio.Queue()
            self.sessions[channel] = asyncio.create_task(
                run_ivr(
                    ari=self.ari,
                    channel_id=channel,
                    menu=self.menu,
                    events=self.queues[channel],
                    now=NOON,
                )
            )
        elif (channel_id := channel_of(event)) in self.queues:
            self.queues[channel_id].put_nowait(event)

    async def result(self, within: float) -> tuple[str, IvrResult]:
        await wait_until(lambda: len(self.sessions) == 1, within, "the call to enter the menu")
        channel, task = next(iter(self.sessions.items()))
        await wait_until(task.done, within, "the menu to end")
        return channel, task.result()


@pytest.fixture
async def connect(switchboard: AsteriskProcess) -> AsyncIterator[Any]:
    """`await connect(menu)` -> a Router listening as the `ioc` app."""
    settings = AsteriskSettings.from_env(switchboard.state_dir)
    ari = AriClient(
        base_url=f"http://127.0.0.1:{settings.http_port}",
        user=settings.ari_user,
        password=settings.ari_password,
        app="ioc",
    )
    tasks: list[asyncio.Task[None]] = []

    async def make(menu: Menu) -> Router:
        router = Router(ari=ari, menu=menu)
        tasks.append(asyncio.create_task(ari.run(router.handle)))
        await asyncio.wait_for(ari.connected.wait(), 10)
        return router

    try:
        yield make
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ari.close()


def _sipp(
    switchboard: AsteriskProcess, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """One call to 1022 from the carrier's address (127.0.0.1 is the default trunk IP)."""
    sip_port = AsteriskSettings.from_env(switchboard.state_dir).sip_port
    return run_sipp(sip_port, "-s", "1022", *args, timeout_s=40, cwd=cwd)


# ERROR/WARNING lines about playing sounds. Other parts of the dialplan log their own (e.g. the
# FastAGI caller look-up with no server running here): not this feature's business.
SOUND_PROBLEM = re.compile(r"ioc/|file\.c|res_stasis_playback|format_wav|codec_|translate\.c")


@pytest.fixture
def problems(switchboard: AsteriskProcess) -> Any:
    """`problems(hung_up=channel)` -> the sound problems this test caused.

    Asterisk quirk: a prompt cut short by the caller's hang-up is logged as
    `WARNING res_stasis_playback.c: <channel>: Playback failed for sound:...` (the same words
    as a prompt that could not play); for a channel whose caller hung up mid-prompt that one
    line is expected. A missing file also logs `File ... does not exist in any format`.
    """
    before = len(switchboard.log_problems())

    def new(hung_up: str | None = None) -> list[str]:
        lines = switchboard.log_problems()[before:]
        cut_short = f"{hung_up}: Playback failed for sound:ioc/" if hung_up else None
        return [
            line
            for line in lines
            if SOUND_PROBLEM.search(line) and (cut_short is None or cut_short not in line)
        ]

    return new


async def test_a_caller_chooses_english_then_an_operator_and_reaches_the_queue(
    switchboard: AsteriskProcess, connect: Any, problems: Any, tmp_path: Path
) -> None:
    router: Router = await connect(load_menu())
    dtmf_pcaps(tmp_path, "20")  # "report an incident" (1) records first: test_switchboard
    scenario = str(SCENARIOS / "uac_ivr_dtmf.xml")
    call = asyncio.create_task(asyncio.to_thread(_sipp, switchboard, "-sf", scenario, cwd=tmp_path))
    channel, result = await router.result(within=20)
    assert result.hung_up is False
    assert result.outcome == "queue"
    assert result.language == "en"
    assert list(result.choices) == [("lang", "2"), ("service", "0")]
    # The switchboard's part: back to the dialplan, the priority after Stasis() -> the queue.
    await router.ari.continue_in_dialplan(channel)
    queue_log = switchboard.log_dir / "queue_log"
    await wait_until(
        lambda: queue_log.exists() and "|hotline-1022|NONE|ENTERQUEUE|" in queue_log.read_text(),
        5,
        "ENTERQUEUE hotline-1022",
    )
    done = await call
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert problems() == []


async def test_a_caller_who_hangs_up_during_the_menu_ends_the_session_promptly(
    switchboard: AsteriskProcess, connect: Any, problems: Any
) -> None:
    router: Router = await connect(load_menu())
    # SIPp's built-in caller hangs up 1.5 s after the answer, mid-way through the welcome.
    done = await asyncio.to_thread(_sipp, switchboard, "-sn", "uac", "-d", "1500")
    hung_up_at = time.monotonic()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    channel, result = await router.result(within=5)
    assert time.monotonic() - hung_up_at < 2, "the session noticed the hang-up at once"
    assert result.hung_up is True and result.outcome == "hangup"
    assert result.choices == () and result.last_node == "lang"
    assert problems(hung_up=channel) == []


async def test_out_of_hours_the_caller_hears_why_and_is_left_to_record(
    switchboard: AsteriskProcess, connect: Any, problems: Any
) -> None:
    # Closed all week: the menu announces it in full (no barge-in) and ends with `record`.
    menu = parse_menu(
        {
            "menu": {"start": "service", "languages": ["vi", "en"]},
            "hours": {"closed_prompt": "invalid", "closed_outcome": "record"},
            "nodes": {"service": {"prompt": "service-menu", "during_hours": True}},
        },
        name="closed-test",
    )
    router: Router = await connect(menu)
    call = asyncio.create_task(asyncio.to_thread(_sipp, switchboard, "-sn", "uac", "-d", "6000"))
    _channel, result = await router.result(within=10)
    assert (result.outcome, result.language, result.hung_up) == ("record", "vi", False)
    assert result.choices == () and result.last_node == "service"
    done = await call  # the switchboard would record now; here the caller just hangs up
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert problems() == []


async def test_a_missing_prompt_is_logged_and_the_menu_goes_on(
    switchboard: AsteriskProcess, connect: Any, problems: Any
) -> None:
    """The other tests' "no problems" checks mean something: a prompt Asterisk cannot find
    is logged, and the session treats the failed playback as ended instead of waiting."""
    menu = parse_menu(
        {
            "menu": {"start": "m"},
            "nodes": {"m": {"prompt": "no-input", "timeout_s": 0.5, "retries": 0}},
        },
        name="missing-test",
    )
    prompt = switchboard.state_dir / "sounds" / "vi" / "no-input.wav"
    hidden = prompt.with_name("hidden.bak")
    prompt.rename(hidden)
    try:
        router: Router = await connect(menu)
        call = asyncio.create_task(
            asyncio.to_thread(_sipp, switchboard, "-sn", "uac", "-d", "3000")
        )
        _channel, result = await router.result(within=5)
        assert (result.outcome, result.hung_up) == ("queue", False)  # timed out into the queue
        done = await call
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    finally:
        hidden.rename(prompt)
    logged = "\n".join(problems())
    assert "ioc/vi/no-input" in logged and "does not exist" in logged, logged
