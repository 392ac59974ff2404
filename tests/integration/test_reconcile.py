"""The reconciler on a real database (both backends): Asterisk's call records in, call records
and call-back items out, each once, from a cursor that survives a restart (ADR 0018)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ioc_core.db import utcnow
from ioc_core.runtime import Core
from telephony.calls.lifecycle import Fact
from telephony.calls.reconcile import Reconciler
from telephony.calls.service import CallStore
from telephony.settings import SwitchboardSettings


def _record(uid: str, ani: str, service: str, end: datetime, **over: Any) -> str:
    start = end - timedelta(seconds=3)
    return json.dumps(
        {
            "linkedid": uid,
            "uniqueid": uid,
            "channel": "PJSIP/trunk-00000001",
            "src": ani,
            "dst": service,
            "dcontext": "queue",
            "dstchannel": "",
            "lastapp": "Queue",
            "start": start.timestamp(),
            "answer": start.timestamp() + 0.01,
            "end": end.timestamp(),
            "disposition": "ANSWERED",
            "sequence": 1,
            "ioc_service": service,
        }
        | over
    )


async def test_defect_09_reconciling_is_idempotent_and_resumes_from_its_cursor(
    core: Core, tmp_path: Path
) -> None:
    settings = SwitchboardSettings.from_env({})
    store = CallStore(sessions=core.sessions, settings=settings)
    now = utcnow()
    old = now - timedelta(seconds=60)
    # B was seen live (arrived, then abandoned) before Asterisk's record is read.
    await store.record("b.1", Fact.ARRIVED, ani="0912000002", service="114")
    live = await store.record("b.1", Fact.ABANDONED)
    assert live is not None and live.callback_id is not None
    path = tmp_path / "ioc-calls.json"
    lines = [
        _record("a.1", "0912000001", "114", old),  # never seen by the hub: abandoned
        _record("b.1", "0912000002", "114", old),
        _record("c.1", "0912000003", "113", old, dstchannel="PJSIP/1001-00000002"),  # answered
        _record("d.1", "0912000004", "1022", old, dcontext="overflow", lastapp="Record"),
        # f: an agent let it ring, another answered (two records, written together at the end).
        _record(
            "f.1", "0912000006", "113", old, dstchannel="PJSIP/1002-1", disposition="NO ANSWER"
        ),
        _record("f.1", "0912000006", "113", old, dstchannel="PJSIP/1003-2"),
        _record("x.1", "1001", "", old),  # an agent's own call: not ours
        _record("e.1", "0912000005", "115", now),  # just ended: the live path goes first
    ]
    path.write_text("\n".join(lines) + "\n")

    def make(clock_offset_s: float = 0) -> Reconciler:
        return Reconciler(
            store=store,
            sessions=core.sessions,
            settings=settings,
            path=path,
            settle_s=5,
            clock=lambda: utcnow() + timedelta(seconds=clock_offset_s),
        )

    assert await make().once() == 4  # a, c, d, f (b is known; e is not settled yet)
    calls = {c["id"]: c for c in await store.list_calls(limit=100)}
    assert set(calls) == {"a.1", "b.1", "c.1", "d.1", "f.1"}
    assert {uid: (c["status"], c["outcome"]) for uid, c in calls.items()} == {
        "a.1": ("ended", "abandoned"),
        "b.1": ("ended", "abandoned"),
        "c.1": ("ended", "answered"),
        "d.1": ("ended", "recorded"),
        "f.1": ("ended", "answered"),
    }
    # The call keeps Asterisk's times, and so does its call-back item (what the greeting says).
    a = calls["a.1"]
    assert datetime.fromisoformat(a["arrived_at"]) == old - timedelta(seconds=3)
    assert datetime.fromisoformat(a["ended_at"]) == old
    assert a["ani"] == "0912000001" and a["queue"] == "emergency-114"
    callbacks = await store.callbacks.items(limit=100)
    assert len(callbacks) == 3  # a, b (the live one, not a second), d; none for c or f
    reasons = sorted((cb["ani"], cb["reason"], cb["automatic"]) for cb in callbacks)
    assert reasons == [
        ("0912000001", "abandoned", True),
        ("0912000002", "abandoned", True),
        ("0912000004", "voicemail", False),
    ]
    assert live.callback_id in {cb["id"] for cb in callbacks}

    # A restart: a new reconciler reads on from the stored cursor; e has settled by now.
    assert await make(clock_offset_s=10).once() == 1
    assert await make(clock_offset_s=10).once() == 0  # nothing new, nothing twice
    e = await store.get_call("e.1")
    assert e is not None and (e["status"], e["outcome"]) == ("ended", "abandoned")
    assert len(await store.callbacks.items(limit=100)) == 4
    assert len(await store.list_calls(limit=100)) == 6
