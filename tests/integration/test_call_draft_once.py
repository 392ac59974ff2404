"""An answered call's draft incident is made from the bus, exactly once: not lost when the
process dies right after the call's commit, not doubled when `call.answered` comes again.
Runs on both databases, without Asterisk: the call is recorded the way the AMI observer
records it, and the draft is made by the switchboard's own consumer."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ioc_core import events as ev
from ioc_core.access.roles import SYSTEM
from ioc_core.api import CoreApi, InProcessCoreApi
from ioc_core.bus import Event, InProcessBus
from ioc_core.config import Settings
from ioc_core.db import make_engine, make_sessionmaker
from ioc_core.incidents.models import Incident
from ioc_core.outbox import ConsumedEvent
from ioc_core.runtime import Core, start_core
from telephony.asterisk.config import AsteriskSettings
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.role import build_switchboard
from telephony.settings import SwitchboardSettings
from telephony.speech.engine import Transcript
from telephony.switchboard.app import Switchboard
from telephony.switchboard.draft import DRAFTS
from tests.helpers import wait_until

REPO = Path(__file__).resolve().parents[2]
ANI = "0912555444"


def _switchboard(core: Core, store: CallStore, api: CoreApi, tmp: Path) -> Switchboard:
    return build_switchboard(
        store=store,
        settings=store_settings(),
        asterisk=AsteriskSettings.from_env(tmp / "asterisk", {}),
        api=api,
        bus=core.bus,
    )


def store_settings() -> SwitchboardSettings:
    return SwitchboardSettings.from_env({})


async def _drafts_of(core: Core, uid: str) -> list[str]:
    async with core.sessions() as s:
        rows = await s.scalars(select(Incident.code).where(Incident.external_ref == f"call:{uid}"))
        return list(rows.all())


async def _answer(store: CallStore, uid: str, service: str = "113") -> None:
    queue = "hotline-1022" if service == "1022" else f"emergency-{service}"
    await store.record(uid, Fact.ARRIVED, ani=ANI, service=service, channel=f"PJSIP/t-{uid}")
    await store.record(uid, Fact.QUEUED, queue=queue, position=1)
    await store.record(uid, Fact.AGENT_RINGING, agent="1001")
    await store.record(uid, Fact.ANSWERED, agent="1001")


async def _linked(store: CallStore, uid: str) -> str | None:
    call = await store.get_call(uid)
    return call["incident_code"] if call else None


async def _crash_after_the_answer(settings: Settings, database_url: str, uid: str) -> None:
    """Run a hub that dies right after the answered call commits; check what it left."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration._draft_crash",
        database_url,
        str(settings.data_dir),
        uid,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == -signal.SIGKILL, out.decode()
    assert "answered" in out.decode().splitlines()
    # The answered call is there, its draft not yet.
    engine = make_engine(database_url)
    try:
        before = CallStore(sessions=make_sessionmaker(engine), settings=store_settings())
        call = await before.get_call(uid)
        assert call is not None and call["status"] == "connected" and not call["incident_code"]
    finally:
        await engine.dispose()


async def _one_draft(core: Core, store: CallStore, uid: str) -> None:
    code = await wait_until(lambda: _linked(store, uid), 20, "the draft after the restart")
    assert isinstance(core.bus, InProcessBus)
    await core.bus.wait_idle(10)
    assert await _drafts_of(core, uid) == [code]
    staff = InProcessCoreApi(core=core, principal=SYSTEM).calltaker("Lê Thị Cúc")
    draft = await staff.get_incident(code)
    assert draft["state"] == "draft" and draft["category"] == "an_ninh_trat_tu"
    assert draft["reporters"][0]["phone"] == ANI


async def test_i12_03_a_crash_right_after_the_answer_commits_still_makes_one_draft(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    uid = "1700000300.1"
    await _crash_after_the_answer(settings, database_url, uid)
    # The hub comes back. Its consumer subscribes before the relay's first pass (start_core
    # has not yielded since it started the relay): the kept `call.answered` reaches it.
    bus = InProcessBus()
    core = await start_core(settings, bus=bus, migrate=False)
    try:
        store = CallStore(
            sessions=core.sessions, settings=store_settings(), on_commit=core.relay.notify
        )
        sb = _switchboard(core, store, InProcessCoreApi(core=core, principal=SYSTEM), tmp_path)
        sb.drafts.subscribe(bus)
        await _one_draft(core, store, uid)
        await sb.drafts.catch_up()  # what the switchboard's start does too: nothing more
        assert len(await _drafts_of(core, uid)) == 1
        await sb.drafts.unsubscribe()
    finally:
        await core.close()


async def test_i12_03_a_crash_whose_event_nobody_heard_is_caught_up_at_start(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """The telephony role subscribes after the core's relay has started: the kept event may
    have gone to no consumer (the in-process bus keeps no history). The start catches up."""
    uid = "1700000304.1"
    await _crash_after_the_answer(settings, database_url, uid)
    bus = InProcessBus()
    core = await start_core(settings, bus=bus, migrate=False)
    try:
        await wait_until(_backlog_empty(core), 10, "the kept event published to nobody")
        store = CallStore(
            sessions=core.sessions, settings=store_settings(), on_commit=core.relay.notify
        )
        sb = _switchboard(core, store, InProcessCoreApi(core=core, principal=SYSTEM), tmp_path)
        sb.drafts.subscribe(bus)
        await sb._start_up()  # the switchboard's once-per-start work
        await _one_draft(core, store, uid)
        await sb.drafts.unsubscribe()
    finally:
        await core.close()


def _backlog_empty(core: Core) -> Callable[[], Awaitable[bool]]:
    async def empty() -> bool:
        return await core.relay.backlog() == 0

    return empty


async def test_i12_03_a_redelivered_call_answered_makes_no_second_draft(
    core: Core, tmp_path: Path
) -> None:
    store = CallStore(
        sessions=core.sessions, settings=store_settings(), on_commit=core.relay.notify
    )
    sb = _switchboard(core, store, InProcessCoreApi(core=core, principal=SYSTEM), tmp_path)
    seen: list[Event] = []

    async def spy(event: Event) -> None:
        seen.append(event)

    core.bus.subscribe(group="spy", handler=spy, names={ev.CALL_ANSWERED})
    sb.drafts.subscribe(core.bus)
    try:
        uid = "1700000301.1"
        await _answer(store, uid)
        code = await wait_until(lambda: _linked(store, uid), 10, "the draft")
        assert len(seen) == 1
        answered = seen[0]

        # The same event again (a redelivery), and a copy of it under a new id.
        assert isinstance(core.bus, InProcessBus)
        again = Event(
            name=answered.name,
            payload=dict(answered.payload),
            correlation_id=answered.correlation_id,
        )
        await core.bus.publish([answered, again])
        await core.bus.wait_idle(10)
        assert await sb.drafts.make(uid, key=answered.event_id) is None
        assert await _drafts_of(core, uid) == [code]
        async with core.sessions() as s:
            marks = await s.scalar(
                select(func.count())
                .select_from(ConsumedEvent)
                .where(ConsumedEvent.consumer == DRAFTS)
            )
        assert marks == 2  # the event and its copy, each once
    finally:
        await sb.drafts.unsubscribe()
        await core.bus.unsubscribe("spy")


class _FailsOnce:
    """The core API, whose first draft request fails as a dying process's would: the draft
    consumer has claimed the call's slot, and the core has not been asked — or, with
    `after_core`, the core has made the draft and the answer is lost on the way back."""

    def __init__(self, api: InProcessCoreApi, *, after_core: bool = False) -> None:
        self._api = api
        self._after_core = after_core
        self.failed = 0

    def calltaker(self, name: str) -> Any:
        outer = self

        class Staff:
            def __getattr__(self, attr: str) -> Any:
                return getattr(outer._api.calltaker(name), attr)

            async def report_incident(
                self, report: Mapping[str, Any], **how: Any
            ) -> dict[str, Any]:
                if outer.failed:
                    return await outer._api.calltaker(name).report_incident(report, **how)
                outer.failed += 1
                if outer._after_core:
                    await outer._api.calltaker(name).report_incident(report, **how)
                raise ConnectionError("the core went away")

        return Staff()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._api, attr)


@pytest.mark.parametrize("after_core", [False, True], ids=["before-the-core", "after-the-core"])
async def test_i12_03_a_draft_interrupted_after_its_claim_is_made_on_the_next_delivery(
    core: Core, tmp_path: Path, after_core: bool
) -> None:
    """Interrupted before the core was asked, or after the core made the draft (its answer
    lost): the next delivery makes exactly one draft, the second by the call's own key."""
    store = CallStore(
        sessions=core.sessions, settings=store_settings(), on_commit=core.relay.notify
    )
    api = _FailsOnce(InProcessCoreApi(core=core, principal=SYSTEM), after_core=after_core)
    sb = _switchboard(core, store, api, tmp_path)
    sb.drafts.subscribe(core.bus)
    try:
        uid = "1700000302.1"
        await _answer(store, uid)
        code = await wait_until(lambda: _linked(store, uid), 10, "the draft on the retry")
        assert api.failed == 1
        assert await _drafts_of(core, uid) == [code]
    finally:
        await sb.drafts.unsubscribe()


async def test_i12_03_a_description_kept_after_the_draft_is_noted_on_it_once(
    core: Core, tmp_path: Path
) -> None:
    """The caller's words, transcribed after the draft was opened: a note on the draft, kept
    durable by their own event (`call.transcript.final`), written once however often it
    comes."""
    store = CallStore(
        sessions=core.sessions, settings=store_settings(), on_commit=core.relay.notify
    )
    api = InProcessCoreApi(core=core, principal=SYSTEM)
    sb = _switchboard(core, store, api, tmp_path)
    seen: list[Event] = []

    async def spy(event: Event) -> None:
        seen.append(event)

    core.bus.subscribe(group="spy", handler=spy, names={ev.CALL_TRANSCRIPT_FINAL})
    sb.drafts.subscribe(core.bus)
    try:
        uid = "1700000303.1"
        await store.record(uid, Fact.ARRIVED, ani=ANI, service="1022")
        await store.record(uid, Fact.IVR_STARTED)
        await store.record(uid, Fact.IVR_DONE, language="vi", ivr_choices=[])
        await store.record(uid, Fact.QUEUED, queue="hotline-1022", position=1)
        await store.record(uid, Fact.AGENT_RINGING, agent="1001")
        await store.record(uid, Fact.ANSWERED, agent="1001")
        code = await wait_until(lambda: _linked(store, uid), 10, "the draft")
        said = "cây đổ chắn ngang đường trước chợ"
        await store.transcripts.add(
            uid,
            kind="ivr",
            audio_path="recording/x.wav",
            language="vi",
            transcript=Transcript(
                text=said, language="vi", engine="test", model="m", duration_s=2, elapsed_s=1
            ),
        )

        async def noted() -> list[str]:
            notes = (await api.calltaker("Lê Thị Cúc").get_incident(code))["notes"]
            return [n["body"] for n in notes if said in n["body"]]

        await wait_until(noted, 10, "the description as a note")
        assert isinstance(core.bus, InProcessBus)
        await core.bus.publish(seen)  # delivered again
        await core.bus.wait_idle(10)
        assert len(await noted()) == 1
    finally:
        await sb.drafts.unsubscribe()
        await core.bus.unsubscribe("spy")


async def test_i12_03_a_call_known_answered_only_from_asterisks_records_gets_no_draft(
    core: Core, tmp_path: Path
) -> None:
    """A call answered while the hub was away is completed from Asterisk's call records
    (telephony.calls.reconcile) with no agent: nobody to open a draft as, and the call was
    handled without one (README, ADR 0018). Neither the consumer nor the start makes one."""
    store = CallStore(
        sessions=core.sessions, settings=store_settings(), on_commit=core.relay.notify
    )
    sb = _switchboard(core, store, InProcessCoreApi(core=core, principal=SYSTEM), tmp_path)
    sb.drafts.subscribe(core.bus)
    try:
        uid = "1700000305.1"
        # As the reconciler applies a record whose verdict is "answered".
        await store.record(uid, Fact.ANSWERED, ani=ANI, service="113", queue="emergency-113")
        await store.record(uid, Fact.HANGUP, hangup_cause="hub away")
        assert isinstance(core.bus, InProcessBus)
        await wait_until(_backlog_empty(core), 10, "call.answered handled")
        await core.bus.wait_idle(10)
        await sb.drafts.catch_up()
        call = await store.get_call(uid)
        assert call is not None and call["outcome"] == "answered"
        assert not call["incident_code"] and await _drafts_of(core, uid) == []
    finally:
        await sb.drafts.unsubscribe()
