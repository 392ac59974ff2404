"""The ARI driver against a recording stand-in for AriClient (the real Asterisk is in
tests/integration/test_ivr.py): playbacks, barge-in, timers, hang-ups and failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from telephony.ari.client import AriClient, AriError, ChannelGone
from telephony.ari.events import channel_of
from telephony.ivr.menus import Menu, load_menu, parse_menu
from telephony.ivr.session import IvrResult, run_ivr
from tests.helpers import wait_until

NOON = datetime(2025, 11, 26, 5, 0, tzinfo=UTC)
CHANNEL = "1795649438.0"
QUICK = parse_menu(
    {
        "menu": {"start": "m"},
        "nodes": {
            "m": {
                "prompt": "service-menu",
                "timeout_s": 0.05,
                "retries": 0,
                "choices": {"1": {"outcome": "record"}},
                "on_timeout": {"outcome": "queue"},
            }
        },
    },
    name="quick",
)


class FakeAri(AriClient):
    def __init__(self) -> None:
        super().__init__(base_url="http://127.0.0.1:1", user="u", password="p", app="ioc")
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.fail: dict[tuple[str, str], Exception] = {}  # (method, path prefix) -> error

    async def request(self, method: str, path: str, **params: Any) -> Any:
        self.calls.append((method, path, params))
        for (m, prefix), error in self.fail.items():
            if m == method and path.startswith(prefix):
                raise error
        return {"id": params.get("playbackId")}

    def plays(self) -> list[str]:
        return [p["media"] for m, path, p in self.calls if m == "POST" and path.endswith("/play")]

    def last_playback(self) -> str:
        posts = [p for m, path, p in self.calls if m == "POST" and path.endswith("/play")]
        return str(posts[-1]["playbackId"])


def dtmf(digit: str, channel: str = CHANNEL) -> dict[str, Any]:
    return {"type": "ChannelDtmfReceived", "digit": digit, "channel": {"id": channel}}


def finished(playback: str, state: str = "done") -> dict[str, Any]:
    return {
        "type": "PlaybackFinished",
        "playback": {"id": playback, "target_uri": f"channel:{CHANNEL}", "state": state},
    }


class Call:
    def __init__(self, menu: Menu, **options: Any) -> None:
        self.ari = FakeAri()
        self.events: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(
            run_ivr(
                ari=self.ari,
                channel_id=CHANNEL,
                menu=menu,
                events=self.events,
                now=NOON,
                **options,
            )
        )

    async def played(self, count: int) -> str:
        """Wait for the `count`-th playback to start; its id."""
        await wait_until(lambda: len(self.ari.plays()) >= count, 2, f"playback {count}")
        return self.ari.last_playback()

    async def send(self, event: Mapping[str, Any]) -> None:
        await self.events.put(event)
        await asyncio.sleep(0)

    async def result(self) -> IvrResult:
        return await asyncio.wait_for(self.task, 2)


async def test_barge_in_stops_the_prompt_and_the_announcement_plays_to_its_end() -> None:
    call = Call(load_menu())
    welcome = await call.played(1)
    await call.send(dtmf("2"))
    service = await call.played(2)
    await call.send(finished(welcome, "done"))  # the stopped one reporting: ignored
    await call.send(dtmf("0"))
    connecting = await call.played(3)
    await call.send(dtmf("0", channel="someone-else"))  # not ours
    await call.send(finished(connecting))
    result = await call.result()
    assert result == IvrResult(
        outcome="queue",
        language="en",
        choices=(("lang", "2"), ("service", "0")),
        hung_up=False,
        last_node="service",
    )
    assert call.ari.plays() == [
        "sound:ioc/vi/welcome",
        "sound:ioc/en/service-menu",
        "sound:ioc/en/connecting",
    ]
    deletes = [path for m, path, _ in call.ari.calls if m == "DELETE"]
    assert deletes == [f"/playbacks/{welcome}", f"/playbacks/{service}"]
    post = call.ari.calls[0]
    assert post[1] == f"/channels/{CHANNEL}/play" and post[2]["lang"] == "vi"


def recording(kind: str, name: str) -> dict[str, Any]:
    return {"type": kind, "recording": {"name": name, "target_uri": f"channel:{CHANNEL}"}}


def records(ari: FakeAri) -> list[dict[str, Any]]:
    return [p for m, path, p in ari.calls if m == "POST" and path.endswith("/record")]


async def test_report_records_the_callers_description_then_queues() -> None:
    call = Call(load_menu())
    await call.send(dtmf("2"))
    await call.played(2)
    await call.send(dtmf("1"))
    describe = await call.played(3)
    await call.send(finished(describe))
    await wait_until(lambda: records(call.ari), 2, "the recording to start")
    rec = records(call.ari)[0]
    assert rec["name"] == f"ioc-describe/{CHANNEL}" and rec["beep"] == "true"
    assert (rec["maxDurationSeconds"], rec["maxSilenceSeconds"], rec["terminateOn"]) == (20, 3, "#")
    await call.send(recording("RecordingFinished", "ioc-msg/other"))  # not this recording
    await call.send(recording("RecordingFinished", rec["name"]))
    await call.send(finished(await call.played(4)))  # "connecting"
    result = await call.result()
    assert result.outcome == "queue" and result.choices == (("lang", "2"), ("service", "1"))
    assert result.description_path == f"recording/ioc-describe/{CHANNEL}.wav"


async def test_a_failed_description_recording_still_queues_without_one() -> None:
    call = Call(load_menu())
    await call.send(dtmf("1"))  # Vietnamese; then "report" at the service menu
    await call.played(2)
    await call.send(dtmf("1"))
    await call.send(dtmf("9"))  # skips the instructions
    await wait_until(lambda: records(call.ari), 2, "the recording to start")
    await call.send(recording("RecordingFailed", records(call.ari)[0]["name"]))
    await call.send(finished(await call.played(4)))
    result = await call.result()
    assert (result.outcome, result.description_path) == ("queue", None)


async def test_silence_times_out_into_the_queue() -> None:
    call = Call(QUICK)
    await call.send(finished(await call.played(1)))
    result = await call.result()
    assert (result.outcome, result.hung_up) == ("queue", False)


async def test_a_key_pressed_while_listening_counts() -> None:
    call = Call(load_menu())
    await call.played(1)
    await call.send(dtmf("1"))
    menu = await call.played(2)
    await call.send(finished(menu))
    await call.send(dtmf("3"))
    assert await call.played(3)
    assert call.ari.plays()[-1] == "sound:ioc/vi/procedures"
    deletes = [c for c in call.ari.calls if c[0] == "DELETE"]
    assert len(deletes) == 1, "the welcome was cut short; the finished menu needs no stop"
    call.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call.task


async def test_a_prompt_that_fails_to_play_does_not_stall_the_menu() -> None:
    call = Call(QUICK)
    await call.send(finished(await call.played(1), state="failed"))
    assert (await call.result()).outcome == "queue"


@pytest.mark.parametrize(
    "event",
    [
        {"type": "StasisEnd", "channel": {"id": CHANNEL}},
        {"type": "ChannelHangupRequest", "channel": {"id": CHANNEL}, "cause": 16},
        {"type": "ChannelDestroyed", "channel": {"id": CHANNEL}},
    ],
    ids=lambda e: e["type"],
)
async def test_a_hang_up_ends_the_session(event: dict[str, Any]) -> None:
    call = Call(load_menu())
    await call.played(1)
    await call.send(dtmf("2"))
    await call.played(2)
    await call.send(event)
    result = await call.result()
    assert (result.hung_up, result.outcome, result.language) == (True, "hangup", "en")
    assert result.choices == (("lang", "2"),)


async def test_a_vanished_channel_is_a_hang_up_not_an_error() -> None:
    call = Call(load_menu())
    await call.played(1)
    call.ari.fail[("POST", "/channels/")] = ChannelGone(404, "/channels/x/play")
    await call.send(dtmf("1"))
    result = await call.result()
    assert result.hung_up is True and result.choices == (("lang", "1"),)


async def test_a_playback_that_already_ended_is_fine_to_stop() -> None:
    call = Call(QUICK)
    await call.played(1)
    call.ari.fail[("DELETE", "/playbacks/")] = AriError(404, "Playback not found")
    await call.send(dtmf("1"))
    assert (await call.result()).outcome == "record"


@pytest.mark.parametrize(("method", "path"), [("POST", "/channels/"), ("DELETE", "/playbacks/")])
async def test_anything_unexpected_sends_the_call_to_the_queue(method: str, path: str) -> None:
    call = Call(load_menu())
    await call.played(1)
    call.ari.fail[(method, path)] = AriError(500, "Internal Server Error")
    await call.send(dtmf("2"))
    result = await call.result()
    assert (result.outcome, result.hung_up, result.language) == ("queue", False, "en")


async def test_a_silent_asterisk_cannot_hold_the_caller_forever() -> None:
    call = Call(load_menu(), guard_s=0.05)  # no PlaybackFinished ever arrives
    result = await call.result()
    assert (result.outcome, result.hung_up) == ("queue", False)
    assert ("DELETE", f"/playbacks/{call.ari.last_playback()}", {}) in call.ari.calls


@pytest.mark.parametrize(
    ("event", "channel"),
    [
        (dtmf("1"), CHANNEL),
        (finished("p1"), CHANNEL),
        ({"type": "PlaybackFinished", "playback": {"target_uri": "bridge:b1"}}, None),
        ({"type": "RecordingFinished", "recording": {"target_uri": f"channel:{CHANNEL}"}}, CHANNEL),
        ({"type": "ChannelVarset"}, None),
    ],
)
def test_channel_of(event: Mapping[str, Any], channel: str | None) -> None:
    assert channel_of(event) == channel
