"""The agent phone (pyVoIP) against a real Asterisk: register, ring, answer, hang up, deregister.

This module runs its own Asterisk. Two Asterisks must never share a chroot (each binds its
configuration over the chroot's /etc/asterisk), so when another one runs on this machine point
IOC_TEST_ASTERISK_ROOT at a private copy of the chroot and move this one to other ports with
IOC_ASTERISK_HTTP_PORT, _AMI_PORT, _SIP_PORT, _RTP_START, _RTP_END. Without them: the cached
chroot and the default ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from telephony.ari.client import AriClient, AriError
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render
from telephony.asterisk.process import AsteriskProcess
from tests.helpers import wait_until
from tests.sip.agent_phone import (
    AgentPhone,
    AnswerMode,
    NoSuchCall,
    RegistrationRefused,
    RegistrationTimeout,
    pyvoip_threads,
)

pytestmark = pytest.mark.asterisk
AGENT = "1001"
APP = "agent-phone-test"
CALLER = '"Nguyễn Văn An" <0912345678>'


@dataclass(frozen=True)
class Switchboard:
    proc: AsteriskProcess
    settings: AsteriskSettings

    async def cli(self, command: str) -> str:
        return await asyncio.to_thread(self.proc.cli, command)


@pytest.fixture(scope="module")
def switchboard(
    chroot_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Switchboard]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path_factory.mktemp("agent-phone"))
    ensure_secrets(proc.state_dir)
    settings = AsteriskSettings.from_env(proc.state_dir)
    proc.start(render(settings.placeholders()))
    try:
        yield Switchboard(proc, settings)
    finally:
        proc.stop()


@dataclass
class Ari:
    """The project's ARI client as the far end: originates to the agent, hangs up, listens."""

    client: AriClient
    events: list[tuple[float, Mapping[str, Any]]] = field(default_factory=list)

    async def handler(self, event: Mapping[str, Any]) -> None:
        self.events.append((time.monotonic(), event))

    async def originate(self, caller_id: str = CALLER) -> tuple[dict[str, Any], float]:
        """Ring the agent; the channel enters our Stasis app once the phone answers."""
        sent = time.monotonic()
        channel: dict[str, Any] = await self.client.request(
            "POST", "/channels", endpoint=f"PJSIP/{AGENT}", app=APP, callerId=caller_id
        )
        return channel, sent

    async def hangup(self, channel_id: str) -> None:
        await self.client.request("DELETE", f"/channels/{channel_id}")

    async def channel_state(self, channel_id: str) -> str:
        channel = await self.client.request("GET", f"/channels/{channel_id}")
        return str(channel["state"])

    async def sip_call_id(self, channel_id: str) -> str:
        found = await self.client.request(
            "GET", f"/channels/{channel_id}/variable", variable="CHANNEL(pjsip,call-id)"
        )
        return str(found["value"])

    async def set_var(self, channel_id: str, variable: str, value: str) -> None:
        await self.client.request(
            "POST", f"/channels/{channel_id}/variable", variable=variable, value=value
        )

    async def endpoint_state(self) -> str:
        endpoint = await self.client.request("GET", f"/endpoints/PJSIP/{AGENT}")
        return str(endpoint["state"])

    def seen(self, kind: str, channel_id: str) -> Mapping[str, Any] | None:
        for _at, event in self.events:
            if event["type"] == kind and event.get("channel", {}).get("id") == channel_id:
                return event
        return None

    def seen_at(self, kind: str, channel_id: str) -> float | None:
        for at, event in self.events:
            if event["type"] == kind and event.get("channel", {}).get("id") == channel_id:
                return at
        return None


@pytest.fixture
async def ari(switchboard: Switchboard) -> AsyncIterator[Ari]:
    settings = switchboard.settings
    client = AriClient(
        base_url=f"http://127.0.0.1:{settings.http_port}",
        user=settings.ari_user,
        password=settings.ari_password,
        app=APP,
    )
    far_end = Ari(client)
    task = asyncio.create_task(client.run(far_end.handler))
    try:
        await asyncio.wait_for(client.connected.wait(), 10)
        yield far_end
    finally:
        for channel in await client.channels():  # a failed test must not leave calls up
            with contextlib.suppress(AriError):
                await far_end.hangup(channel["id"])
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


MakePhone = Callable[..., AgentPhone]


@pytest.fixture
async def make_phone(switchboard: Switchboard) -> AsyncIterator[MakePhone]:
    settings = switchboard.settings
    made: list[AgentPhone] = []

    def make(
        *,
        password: str | None = None,
        answer: AnswerMode = "auto",
        answer_delay_s: float = 0.0,
        server_port: int | None = None,
    ) -> AgentPhone:
        phone = AgentPhone(
            extension=AGENT,
            password=settings.agents[AGENT] if password is None else password,
            server_port=settings.sip_port if server_port is None else server_port,
            # Right above Asterisk's own RTP range: both bind 127.0.0.1.
            rtp_range=(settings.rtp_end + 2, settings.rtp_end + 201),
            answer=answer,
            answer_delay_s=answer_delay_s,
        )
        made.append(phone)
        return phone

    yield make
    for phone in made:
        await phone.astop()
    await wait_until(lambda: not list(pyvoip_threads()), 5, "pyVoIP's threads to end")


def _contact(phone: AgentPhone) -> str:
    return f"{AGENT}/sip:{AGENT}@127.0.0.1:{phone.sip_port};"


def _rtp_received(stats: str, channel_name: str) -> int | None:
    """Packets Asterisk received on a channel (`pjsip show channelstats`:
    bridge, channel, uptime, codec, receive count, ...)."""
    short = channel_name.removeprefix("PJSIP/")
    for line in stats.splitlines():
        fields = line.split()
        if short in fields:
            return int(fields[fields.index(short) + 3])
    return None


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_registers_and_stop_leaves_no_contact(
    switchboard: Switchboard, ari: Ari, make_phone: MakePhone
) -> None:
    phone = make_phone()
    await phone.astart()
    assert phone.registered and phone.sip_port > 0
    assert phone.register_s is not None and phone.register_s < 1.0
    assert _contact(phone) in await switchboard.cli("pjsip show contacts")
    assert await ari.endpoint_state() == "online"

    assert await phone.astop() is True, "Asterisk confirmed the deregistration"
    assert not phone.registered
    assert _contact(phone) not in await switchboard.cli("pjsip show contacts")

    async def offline() -> bool:
        return await ari.endpoint_state() == "offline"

    await wait_until(offline, 5, "ARI to report the endpoint offline")
    await wait_until(lambda: not list(pyvoip_threads()), 5, "pyVoIP's threads to end")
    assert await phone.astop() is True  # stopping twice is fine


async def test_asterisk_rings_the_phone_it_answers_and_the_far_end_hangs_up(
    switchboard: Switchboard, ari: Ari, make_phone: MakePhone
) -> None:
    phone = make_phone()
    await phone.astart()
    channel, sent = await ari.originate()

    ringing = await phone.wait_for_call(state="ringing", timeout_s=5)
    assert (ringing.from_user, ringing.caller_name, ringing.to_user) == (
        "0912345678",
        "Nguyễn Văn An",
        AGENT,
    )
    assert ringing.ringing_at >= sent
    answered = await phone.wait_for_call(state="answered", timeout_s=5)
    assert answered is ringing and answered.state == "answered"
    assert answered.call_id == await ari.sip_call_id(channel["id"])
    assert answered.codec == "PCMU" and answered.local_rtp_port is not None
    await wait_until(lambda: ari.seen("StasisStart", channel["id"]), 5, "Asterisk sees the answer")

    # Nobody writes audio: pyVoIP's transmitter sends silence every 20 ms by itself.
    async def media_flows() -> bool:
        stats = await switchboard.cli("pjsip show channelstats")
        return (_rtp_received(stats, channel["name"]) or 0) >= 10

    await wait_until(media_flows, 5, "RTP from the phone reaching Asterisk")

    await ari.hangup(channel["id"])
    ended = await phone.wait_for_state(answered, "ended", timeout_s=5)
    assert ended.end_reason == "remote-hangup"
    assert ended.answered_at is not None and ended.ended_at is not None
    assert ended.ringing_at <= ended.answered_at <= ended.ended_at
    assert ended.ended_wall is not None and ended.ringing_wall <= ended.ended_wall
    assert phone.current_call is None and phone.calls == [ended]
    with pytest.raises(NoSuchCall):
        phone.hangup()


async def test_manual_mode_rings_until_answer_then_the_agent_hangs_up(
    switchboard: Switchboard, ari: Ari, make_phone: MakePhone
) -> None:
    phone = make_phone(answer="manual")
    await phone.astart()
    channel, _sent = await ari.originate()
    call = await phone.wait_for_call(timeout_s=5)

    async def channel_is_ringing() -> bool:
        return await ari.channel_state(channel["id"]) == "Ringing"

    await wait_until(channel_is_ringing, 5, "Asterisk hears 180 Ringing")
    # Longer than pyVoIP's 1 s callback timer: an answer from there would show up now.
    with pytest.raises(TimeoutError):
        await phone.wait_for_call(state="answered", timeout_s=1.5)
    assert call.state == "ringing" and await channel_is_ringing()

    assert phone.answer() is call
    await phone.wait_for_state(call, "answered", timeout_s=5)
    await wait_until(lambda: ari.seen("StasisStart", channel["id"]), 5, "Asterisk sees the answer")
    with pytest.raises(NoSuchCall):
        phone.answer()  # nothing rings any more

    assert phone.hangup() is call
    ended = await phone.wait_for_state(call, "ended", timeout_s=5)
    assert ended.end_reason == "local-hangup"
    # Asterisk accepted our BYE: the channel is gone.
    await wait_until(lambda: ari.seen("ChannelDestroyed", channel["id"]), 5, "channel destroyed")


async def test_a_call_cancelled_while_ringing_ends_as_cancelled(
    switchboard: Switchboard, ari: Ari, make_phone: MakePhone
) -> None:
    phone = make_phone(answer="manual")
    await phone.astart()
    channel, _sent = await ari.originate()
    call = await phone.wait_for_call(timeout_s=5)
    await ari.hangup(channel["id"])  # Asterisk sends CANCEL
    ended = await phone.wait_for_state(call, "ended", timeout_s=5)
    assert ended.end_reason == "cancelled" and ended.answered_at is None
    await wait_until(lambda: ari.seen("ChannelDestroyed", channel["id"]), 5, "channel destroyed")
    with pytest.raises(TimeoutError):
        await phone.wait_for_call(state="answered", timeout_s=0.1)


async def test_hanging_up_a_ringing_call_refuses_it_busy(
    switchboard: Switchboard, ari: Ari, make_phone: MakePhone
) -> None:
    phone = make_phone(answer="manual")
    await phone.astart()
    channel, _sent = await ari.originate()
    call = await phone.wait_for_call(timeout_s=5)
    phone.hangup()
    assert (await phone.wait_for_state(call, "ended")).end_reason == "rejected"
    destroyed = await wait_until(
        lambda: ari.seen("ChannelDestroyed", channel["id"]), 5, "channel destroyed"
    )
    assert destroyed["cause"] == 17, "486 Busy Here is Q.850 cause 17 (user busy)"


async def test_auto_answer_waits_answer_delay(ari: Ari, make_phone: MakePhone) -> None:
    phone = make_phone(answer_delay_s=0.3)
    await phone.astart()
    await ari.originate()
    call = await phone.wait_for_call(state="answered", timeout_s=5)
    assert call.answered_at is not None and call.answered_at - call.ringing_at >= 0.3


async def test_a_reinvite_switches_codec_without_doubling_the_media(
    switchboard: Switchboard, ari: Ari, make_phone: MakePhone
) -> None:
    phone = make_phone()
    await phone.astart()
    channel, _sent = await ari.originate()
    call = await phone.wait_for_call(state="answered", timeout_s=5)
    await wait_until(lambda: ari.seen("StasisStart", channel["id"]), 5, "Asterisk sees the answer")

    await ari.set_var(channel["id"], "PJSIP_MEDIA_OFFER(audio)", "alaw")
    await ari.set_var(channel["id"], "PJSIP_SEND_SESSION_REFRESH()", "invite")
    await wait_until(lambda: call.reinvites == 1, 5, "the re-INVITE")
    assert call.codec == "PCMA" and call.state == "answered"

    async def received() -> tuple[float, int]:
        stats = await switchboard.cli("pjsip show channelstats")
        return time.monotonic(), _rtp_received(stats, channel["name"]) or 0

    # pyVoIP alone starts a second transmitter on a re-INVITE (about 100 packets/s).
    start, first = await received()
    await asyncio.sleep(1.0)  # a measuring window, not a wait for something to happen
    end, second = await received()
    rate = (second - first) / (end - start)
    assert 30 <= rate <= 70, f"{rate:.0f} RTP packets/s, expected 50 (20 ms ptime)"
    assert await ari.channel_state(channel["id"]) == "Up"


async def test_stop_hangs_up_the_call_and_deregisters(
    switchboard: Switchboard, ari: Ari, make_phone: MakePhone
) -> None:
    phone = make_phone()
    await phone.astart()
    channel, _sent = await ari.originate()
    call = await phone.wait_for_call(state="answered", timeout_s=5)
    await wait_until(lambda: ari.seen("StasisStart", channel["id"]), 5, "Asterisk sees the answer")
    assert await phone.astop() is True
    assert call.end_reason == "local-hangup"
    await wait_until(lambda: ari.seen("ChannelDestroyed", channel["id"]), 5, "channel destroyed")
    assert _contact(phone) not in await switchboard.cli("pjsip show contacts")


async def test_a_wrong_password_fails_start_clearly(
    switchboard: Switchboard, make_phone: MakePhone
) -> None:
    phone = make_phone(password="not-the-password")
    with pytest.raises(RegistrationRefused) as refused:
        await phone.astart(timeout_s=5)
    assert refused.value.error_id == "softphone-registration-refused"
    assert "refused the credentials" in refused.value.message
    assert f"127.0.0.1:{switchboard.settings.sip_port}" in refused.value.message
    assert not phone.registered
    assert f"{AGENT}/sip:" not in await switchboard.cli("pjsip show contacts")
    await wait_until(lambda: not list(pyvoip_threads()), 5, "pyVoIP's threads to end")


async def test_no_server_fails_start_within_its_timeout(make_phone: MakePhone) -> None:
    phone = make_phone(server_port=_free_udp_port())  # nothing listens there
    began = time.monotonic()
    with pytest.raises(RegistrationTimeout) as silent:
        await phone.astart(timeout_s=0.5)
    assert time.monotonic() - began < 2.0
    assert "no answer within 0.5s" in silent.value.message


def _sipp_call(
    settings: AsteriskSettings, number: str, hold_ms: int
) -> subprocess.CompletedProcess[str]:
    """One call from the carrier's address (127.0.0.1 is the default trunk IP)."""
    return subprocess.run(
        [
            "sipp",
            f"127.0.0.1:{settings.sip_port}",
            *("-i", "127.0.0.1", "-p", str(_free_udp_port())),
            *("-sn", "uac", "-s", number, "-d", str(hold_ms), "-m", "1"),
            *("-timeout", "20s", "-timeout_error", "-nostdin"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_queue_call_rings_the_agent_who_answers(
    switchboard: Switchboard, make_phone: MakePhone
) -> None:
    # No Stasis app "ioc" here: the 114 call falls back to its queue, which rings the member.
    phone = make_phone()
    await phone.astart()
    await switchboard.cli(f"queue add member PJSIP/{AGENT} to emergency-114")
    try:
        caller = asyncio.create_task(
            asyncio.to_thread(_sipp_call, switchboard.settings, "114", 3000)
        )
        call = await phone.wait_for_call(state="answered", timeout_s=10)
        assert call.from_user == "sipp"  # the caller's number, passed on by app_queue
        ended = await phone.wait_for_state(call, "ended", timeout_s=15)
        assert ended.end_reason == "remote-hangup"  # the caller hung up; Queue() ends the leg
        done = await caller
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    finally:
        await switchboard.cli(f"queue remove member PJSIP/{AGENT} from emergency-114")
    queue_log = switchboard.proc.log_dir / "queue_log"
    connected = f"|emergency-114|PJSIP/{AGENT}|CONNECT|"
    await wait_until(lambda: connected in queue_log.read_text(), 5, "CONNECT in queue_log")


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


async def test_latency_from_originate_to_ringing_and_answered(
    ari: Ari, make_phone: MakePhone
) -> None:
    """The figures the switchboard benchmark relies on (printed; run with -s to see them)."""
    registers = []
    for _ in range(5):
        phone = make_phone()
        await phone.astart()
        assert phone.register_s is not None
        registers.append(phone.register_s)
        await phone.astop()

    phone = make_phone()
    await phone.astart()
    ringing, answered, stasis = [], [], []
    for _ in range(20):
        channel, sent = await ari.originate()
        call = await phone.wait_for_call(state="answered", timeout_s=5)
        assert call.answered_at is not None
        stasis_start = partial(ari.seen_at, "StasisStart", channel["id"])
        seen = await wait_until(stasis_start, 5, "StasisStart")
        ringing.append(call.ringing_at - sent)
        answered.append(call.answered_at - sent)
        stasis.append(seen - sent)
        await ari.hangup(channel["id"])
        await phone.wait_for_state(call, "ended", timeout_s=5)

    report = {
        "register": registers,
        "originate->ringing": ringing,
        "originate->answered": answered,
        "originate->StasisStart": stasis,
    }
    for name, values in report.items():
        print(
            f"agent phone {name}: p50 {statistics.median(values) * 1000:.1f} ms, "
            f"p90 {_p(values, 0.9) * 1000:.1f} ms, max {max(values) * 1000:.1f} ms "
            f"(n={len(values)})"
        )
    assert statistics.median(ringing) < 0.25
    assert statistics.median(answered) < 0.5
    assert [c.end_reason for c in phone.calls] == ["remote-hangup"] * 20
