"""The switchboard's REST API and events on both databases: calls, call-backs, queues and agents,
fed through the calls service exactly as the AMI/ARI observers feed it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ioc_core import events as ev
from ioc_core.bus import Event, InProcessBus
from ioc_core.config import Settings
from ioc_core.runtime import Core, start_core
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.settings import SwitchboardSettings
from telephony.speech.engine import Transcript as SpeechTranscript
from tests.helpers import auth, make_token, wait_until


def _store(core: Core, **env: str) -> CallStore:
    return CallStore(
        sessions=core.sessions,
        settings=SwitchboardSettings.from_env(env),
        on_commit=core.relay.notify,
    )


async def _abandoned(store: CallStore, uid: str, service: str, ani: str) -> None:
    await store.record(uid, Fact.ARRIVED, ani=ani, service=service, channel=f"PJSIP/trunk-{uid}")
    await store.record(uid, Fact.QUEUED, queue=f"emergency-{service}", position=1)
    await store.record(uid, Fact.ABANDONED)
    await store.record(uid, Fact.HANGUP, hangup_cause="Normal Clearing")  # AMI repeats it


async def _answered(store: CallStore, uid: str, ani: str) -> None:
    await store.record(uid, Fact.ARRIVED, ani=ani, service="1022")
    await store.record(uid, Fact.IVR_STARTED)
    await store.record(uid, Fact.IVR_DONE, language="en", ivr_choices=[["lang", "2"]])
    await store.record(uid, Fact.QUEUED, queue="hotline-1022", position=1)
    await store.record(uid, Fact.AGENT_RINGING, agent="1001")
    await store.record(uid, Fact.ANSWERED, agent="1001")


@asynccontextmanager
async def _core_seeing(
    settings: Settings, *prefixes: str
) -> AsyncIterator[tuple[Core, list[Event]]]:
    """A core whose in-process bus records the events named with one of `prefixes`."""
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        if event.name.startswith(prefixes):
            seen.append(event)

    bus = InProcessBus()
    bus.subscribe(group="test-switchboard", handler=handler)
    core = await start_core(settings, bus=bus, migrate=False)
    try:
        yield core, seen
    finally:
        await core.close()


async def test_calls_and_their_events(settings: Settings) -> None:
    async with _core_seeing(settings, "call.", "callback.") as (core, seen):
        store = _store(core)
        await _answered(store, "1700000000.1", "+84 912 000 111")
        await store.record("1700000000.1", Fact.HANGUP)
        names = await wait_until(
            lambda: [e.name for e in seen] if len(seen) >= 4 else None, what="four events"
        )
        assert names == [ev.CALL_ARRIVED, ev.CALL_QUEUED, ev.CALL_ANSWERED, ev.CALL_ENDED]
        for e in seen:
            version, keys = ev.SCHEMAS[e.name]
            assert e.version == version and keys <= set(e.payload), e.name
            assert e.correlation_id == "1700000000.1"
            assert "0912000111" not in str(e.payload), "no caller number on the bus"
        call = await store.get_call("1700000000.1")
        assert call is not None and call["ani"] == "0912000111"  # one form of every number
        assert call["outcome"] == "answered" and call["wait_s"] >= 0


async def test_live_transcript_events(settings: Settings) -> None:
    """Partials are events only; a final is kept and published; neither carries the number."""
    async with _core_seeing(settings, "call.transcript.") as (core, seen):
        store = _store(core)
        await _answered(store, "1700000000.2", "0912000222")
        await store.transcripts.partial(
            "1700000000.2", text="cháy ở chợ", start_s=1.0, end_s=2.0, engine="fake"
        )
        # Staff read what the tap hears through the calls API; the event names it only.
        call = await store.get_call("1700000000.2")
        assert call is not None and call["live"] == {
            "call_id": "1700000000.2", "text": "cháy ở chợ", "start_s": 1.0, "end_s": 2.0,
            "engine": "fake",
        }  # fmt: skip
        said = SpeechTranscript(
            text="cháy ở chợ Đồng Xoài", language="vi", engine="fake", model="m",
            duration_s=2.5, elapsed_s=0.2,
        )  # fmt: skip
        kept = await store.transcripts.add(
            "1700000000.2", kind="live", audio_path="call:1700000000.2#t=1.0,3.5",
            language="vi", transcript=said,
        )  # fmt: skip
        assert kept["emergency"] == "114"
        names = await wait_until(
            lambda: [e.name for e in seen] if len(seen) >= 2 else None, what="two events"
        )
        assert names == [ev.CALL_TRANSCRIPT_PARTIAL, ev.CALL_TRANSCRIPT_FINAL]
        for e in seen:
            version, keys = ev.SCHEMAS[e.name]
            assert e.version == version and keys <= set(e.payload), e.name
            assert "0912000222" not in str(e.payload)
        assert seen[0].payload["start_s"] == 1.0 and seen[1].payload["kind"] == "live"
        assert all("cháy" not in str(e.payload) for e in seen), "no caller's words on the bus"
        assert [t["kind"] for t in await store.transcripts.of_call("1700000000.2")] == ["live"]
        call = await store.get_call("1700000000.2")
        assert call is not None and call["live"] is None, "the final replaced the partial"


async def test_defect_05_transcript_event_carries_no_text(
    settings: Settings, client: TestClient[Any, Any], core: Core
) -> None:
    """What a caller said stays off the bus; staff read it through the calls API."""
    async with _core_seeing(settings, "call.transcript.final") as (other, seen):
        store = _store(other)
        await _answered(store, "1700000000.5", "0912000555")
        said = SpeechTranscript(
            text="nhà tôi bị cháy ở số 5 Lê Lợi", language="vi", engine="fake", model="m",
            duration_s=2.5, elapsed_s=0.2,
        )  # fmt: skip
        for kind in ("message", "ivr", "live"):
            await store.transcripts.add(
                "1700000000.5", kind=kind, audio_path="x.wav", language="vi", transcript=said
            )
        await wait_until(lambda: len(seen) >= 3 or None, what="three final events")
        for e in seen:
            version, keys = ev.SCHEMAS[e.name]
            assert e.version == version == 2 and keys <= set(e.payload), e.payload
            flat = str(e.to_dict())
            assert "cháy" not in flat and "Lê Lợi" not in flat, "no words on the bus"
            assert "0912000555" not in flat and "text" not in e.payload
    # The words are one authorised read away: the event names the transcript.
    store = _store(core)
    await _answered(store, "1700000000.6", "0912000666")
    kept = await store.transcripts.add(
        "1700000000.6", kind="ivr", audio_path="y.wav", language="vi", transcript=said
    )
    staff = auth(await make_token(core, "calltaker"))
    got = await (await client.get("/api/v1/calls/1700000000.6", headers=staff)).json()
    assert [(x["id"], x["text"]) for x in got["transcripts"]] == [(kept["id"], said.text)]
    assert (await client.get("/api/v1/calls/1700000000.6")).status == 401


async def test_defect_12_refused_call_backs_wait_for_a_person_with_the_reason(
    core: Core,
) -> None:
    store = _store(core, IOC_CALLBACK_FIRST_DELAY_S="0", IOC_CALLBACK_MAX_PER_HOUR="2")
    # Abroad, withheld-but-garbled, and one national number that abandons three times.
    await _abandoned(store, "3.1", "113", "+1 202 555 0123")
    await _abandoned(store, "3.2", "114", "12#34*56")
    for n in range(3):
        await _abandoned(store, f"3.{3 + n}", "115", "0912000333")
    items = {i["call_id"]: i for i in await store.callbacks.items()}
    assert len(items) == 5 and all(i["automatic"] for i in items.values())

    claimed = await store.callbacks.due()
    assert len(claimed) == 2, "two automatic call-backs an hour to one number, no more"
    dialled = {(await store.callbacks.get(i) or {})["ani"] for i in claimed}
    assert dialled == {"0912000333"}
    assert await store.callbacks.due() == []  # and none later: the rest wait for a person
    for item in await store.callbacks.items():
        if item["id"] in claimed:
            continue
        # Never dropped: still open, no longer automatic, with the reason for the person.
        assert item["status"] == "pending" and not item["automatic"], item
        assert item["last_outcome"] == "refused" and item["attempts"] == 0
        assert "Không gọi lại tự động" in item["note"] and "Not called back" in item["note"]
    notes = {i["ani"]: i["note"] for i in await store.callbacks.items()}
    assert "danh sách số được phép" in notes["+12025550123"]
    assert "hợp lệ" in notes["12#34*56"]


@pytest.fixture
async def staff(core: Core) -> dict[str, str]:
    return auth(await make_token(core, "calltaker", name="Lê Thị Cúc"))


async def test_calls_api_filters_and_refuses_what_is_wrong(
    client: TestClient[Any, Any], core: Core, staff: dict[str, str]
) -> None:
    store = _store(core)
    await _abandoned(store, "1.1", "113", "0912000001")
    await _answered(store, "1.2", "0912000002")

    assert (await client.get("/api/v1/calls")).status == 401
    citizen = auth(await make_token(core, "citizen", subject="zalo:1"))
    denied = await client.get("/api/v1/calls", headers=citizen)
    assert denied.status == 403 and (await denied.json())["error_id"] == "staff-only"

    everything = await (await client.get("/api/v1/calls", headers=staff)).json()
    assert [c["id"] for c in everything["items"]] == ["1.2", "1.1"]  # newest first
    live = await client.get("/api/v1/calls?status=connected,queued", headers=staff)
    assert [c["id"] for c in (await live.json())["items"]] == ["1.2"]
    by_service = await client.get("/api/v1/calls?service=113", headers=staff)
    (emergency,) = (await by_service.json())["items"]
    assert emergency["outcome"] == "abandoned" and emergency["queue"] == "emergency-113"
    later = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    empty = await client.get("/api/v1/calls", params={"since": later}, headers=staff)
    assert (await empty.json())["items"] == []

    for query, field in (
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("service=11a", "service"),
        ("since=yesterday", "since"),
        ("colour=red", "colour"),
    ):
        bad = await client.get(f"/api/v1/calls?{query}", headers=staff)
        body = await bad.json()
        assert bad.status == 422, query
        assert field in body["message"], (query, body)

    one = await client.get("/api/v1/calls/1.2", headers=staff)
    assert (await one.json())["ivr_choices"] == [["lang", "2"]]
    missing = await client.get("/api/v1/calls/nope", headers=staff)
    assert missing.status == 404 and "Không có cuộc gọi" in (await missing.json())["message"]


async def test_call_back_items_and_their_actions(
    client: TestClient[Any, Any], core: Core, staff: dict[str, str]
) -> None:
    store = _store(core, IOC_CALLBACK_FIRST_DELAY_S="0")
    await _abandoned(store, "2.1", "114", "0912000003")  # automatic (emergency)
    await store.record("2.2", Fact.ARRIVED, ani="0912000004", service="1022")
    await store.record("2.2", Fact.IVR_STARTED)
    await store.record("2.2", Fact.HANGUP)  # hung up in the menu: abandoned too

    listed = await (await client.get("/api/v1/callbacks", headers=staff)).json()
    items = {i["ani"]: i for i in listed["items"]}
    assert items["0912000003"]["automatic"] and items["0912000003"]["priority"] == 10
    assert not items["0912000004"]["automatic"] and items["0912000004"]["max_attempts"] == 0
    assert listed["items"][0]["ani"] == "0912000003", "emergencies first"
    hotline = items["0912000004"]["id"]

    claimed = await client.post(f"/api/v1/callbacks/{hotline}/claim", json={}, headers=staff)
    assert claimed.status == 200
    body = await claimed.json()
    assert body["status"] == "claimed" and body["assigned_to"] == "Lê Thị Cúc"
    again = await client.post(f"/api/v1/callbacks/{hotline}/claim", json={}, headers=staff)
    assert again.status == 409 and (await again.json())["error_id"] == "callback-state"
    no_note = await client.post(f"/api/v1/callbacks/{hotline}/cancel", json={}, headers=staff)
    assert no_note.status == 409 and "note" in (await no_note.json())["message"]
    done = await client.post(
        f"/api/v1/callbacks/{hotline}/complete",
        json={"note": "Đã gọi lại, công dân báo đèn đường hỏng"},
        headers=staff,
    )
    assert (await done.json())["status"] == "done"

    assert (await client.post("/api/v1/callbacks/999/claim", json={}, headers=staff)).status == 404
    assert (await client.post(f"/api/v1/callbacks/{hotline}/explode", headers=staff)).status in (
        404,
        405,
    )
    bad = await client.post(f"/api/v1/callbacks/{hotline}/claim", data="not json", headers=staff)
    assert bad.status == 415
    unknown = await client.post(
        f"/api/v1/callbacks/{hotline}/claim", json={"priority": 1}, headers=staff
    )
    assert unknown.status == 422 and "priority" in (await unknown.json())["message"]

    # The automatic one: the dialler claims it; a missed attempt waits `spacing_s` (60 s).
    (due,) = await store.callbacks.due()
    assert (await store.callbacks.get(due) or {})["status"] == "calling"
    await store.callbacks.attempt_finished(due, "no_answer")
    assert await store.callbacks.due() == []
    pending = await store.callbacks.get(due)
    assert pending is not None and pending["status"] == "pending" and pending["attempts"] == 1
    retry = await client.post(f"/api/v1/callbacks/{due}/retry", json={}, headers=staff)
    assert retry.status == 409  # pending: the dialler still owns it
    # Out of attempts: the item fails over to people, who may send it back to the dialler.
    last = _store(core, IOC_CALLBACK_FIRST_DELAY_S="0", IOC_CALLBACK_ATTEMPTS="1")
    await _abandoned(last, "2.3", "115", "0912000009")
    (due,) = await last.callbacks.due()
    assert (await last.callbacks.attempt_finished(due, "busy") or {})["status"] == "failed"
    retry = await client.post(f"/api/v1/callbacks/{due}/retry", json={}, headers=staff)
    assert retry.status == 200 and (await retry.json())["status"] == "pending"
    assert await last.callbacks.due() == [due]


async def test_queues_and_agents(
    client: TestClient[Any, Any], core: Core, staff: dict[str, str]
) -> None:
    store = _store(core)
    await _abandoned(store, "3.1", "115", "0912000005")
    await _answered(store, "3.2", "0912000006")
    await store.record("3.3", Fact.QUEUED, ani="0912000007", queue="emergency-115")

    board = await (await client.get("/api/v1/queues", headers=staff)).json()
    queues = {q["queue"]: q for q in board["items"]}
    assert set(queues) == {"emergency-113", "emergency-114", "emergency-115", "hotline-1022"}
    assert queues["emergency-115"]["waiting"] == 1 and queues["emergency-115"]["abandoned"] == 1
    assert queues["hotline-1022"]["answered"] == 1
    assert queues["hotline-1022"]["service_level"] == {"15s": 1.0, "20s": 1.0}
    assert board["switchboard"] is False

    agents = await (await client.get("/api/v1/agents", headers=staff)).json()
    assert agents["items"] == []
    # A call-taker acts on their own extension only (a token has none); a supervisor on any.
    mine = await client.post("/api/v1/agents/1001/login", json={}, headers=staff)
    assert mine.status == 403 and (await mine.json())["error_id"] == "not-your-extension"
    supervisor = auth(await make_token(core, "supervisor"))
    down = await client.post("/api/v1/agents/1001/login", json={}, headers=supervisor)
    assert down.status == 503 and (await down.json())["error_id"] == "switchboard-down"
    assert (await client.post("/api/v1/agents/1001/login", json={})).status == 401


async def test_recordings_are_served_to_staff_from_the_spool_only(
    client: TestClient[Any, Any], core: Core, staff: dict[str, str]
) -> None:
    store = _store(core)
    spool = core.settings.data_dir / "asterisk" / "spool"
    (spool / "monitor").mkdir(parents=True)
    (spool / "monitor" / "4.1.wav").write_bytes(b"RIFF....WAVEfmt ")
    await store.record("4.1", Fact.ARRIVED, ani="0912000020", service="114")
    await store.record("4.1", Fact.ANSWERED, agent="1001", recording_path="monitor/4.1.wav")
    await store.record("4.2", Fact.ARRIVED, ani="0912000021", service="114")
    await store.record("4.2", Fact.ANSWERED, agent="1001", recording_path="../../../etc/passwd")
    await store.record("4.3", Fact.ARRIVED, ani="0912000022", service="114")

    got = await client.get("/api/v1/calls/4.1/recording", headers=staff)
    assert got.status == 200 and got.content_type == "audio/wav"
    assert await got.read() == b"RIFF....WAVEfmt "
    assert (await client.get("/api/v1/calls/4.1/recording")).status == 401
    for uid in ("4.2", "4.3"):  # outside the spool; no recording at all
        refused = await client.get(f"/api/v1/calls/{uid}/recording", headers=staff)
        assert refused.status == 404 and (await refused.json())["error_id"] == "no-recording"


async def test_a_message_reported_after_the_hang_up_joins_its_call_back(core: Core) -> None:
    store = _store(core)
    await store.warm()  # as the switchboard does at start: now memory knows every live call
    await store.record("5.1", Fact.ARRIVED, ani="0912000030", service="1022")
    await store.record("5.1", Fact.IVR_STARTED)
    ended = await store.record("5.1", Fact.HANGUP, hangup_cause="Normal Clearing")
    assert ended is not None and ended.call["outcome"] == "abandoned"
    assert await store.record("5.1", Fact.HANGUP, hangup_cause="again") is None  # no write
    assert await store.record("agent-leg", Fact.HANGUP, hangup_cause="x") is None
    late = await store.record("5.1", Fact.RECORDED, recording_path="recording/ioc-msg/5.1.wav")
    assert late is not None and late.call["outcome"] == "recorded"
    (item,) = [i for i in await store.callbacks.items() if i["ani"] == "0912000030"]
    assert item["reason"] == "voicemail" and item["recording_path"].endswith("5.1.wav")


async def test_facts_of_many_calls_commit_together_and_a_bad_one_sinks_only_itself(
    core: Core,
) -> None:
    store = _store(core)
    await store.warm()

    async def call(i: int) -> None:
        await _abandoned(store, f"6.{i}", "114", f"09120001{i:02d}")

    bad = store.record("6.bad", Fact.ARRIVED, ani="0912000199", service="114", caller_calls="x")
    results = await asyncio.gather(*(call(i) for i in range(20)), bad, return_exceptions=True)
    assert isinstance(results[-1], ValueError)  # its own caller hears of it ...
    assert results[:-1] == [None] * 20  # ... and the calls beside it are all there
    calls = await store.list_calls(service="114", limit=100)
    assert len([c for c in calls if c["id"].startswith("6.")]) == 20
    assert all(c["outcome"] == "abandoned" for c in calls if c["id"].startswith("6."))
    items = await store.callbacks.items(limit=100)
    assert len([i for i in items if i["ani"].startswith("09120001")]) == 20


async def test_a_caller_the_menu_served_is_not_abandoned(core: Core) -> None:
    """The 1022 procedures node ends with "#" (goodbye): no call-back item, no abandon."""
    store = _store(core)
    uid = "1700000099.1"
    await store.record(uid, Fact.ARRIVED, ani="0912000099", service="1022")
    await store.record(uid, Fact.IVR_STARTED)
    await store.record(uid, Fact.IVR_DONE, language="vi", ivr_choices=[["procedures", "#"]])
    await store.record(uid, Fact.SELF_SERVED)
    await store.record(uid, Fact.HANGUP, hangup_cause="Normal Clearing")
    call = await store.get_call(uid)
    assert call is not None and (call["status"], call["outcome"]) == ("ended", "self_served")
    assert not [i for i in await store.callbacks.items() if i["ani"] == "0912000099"]
