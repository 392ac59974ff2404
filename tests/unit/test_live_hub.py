"""The live feed's hub and role filter (ioc_core.live): pure, no sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ioc_core.access.roles import Principal, Role
from ioc_core.bus import Event
from ioc_core.live import LiveHub, visible

STAFF = Principal(role=Role.CALLTAKER, name="an")
AGENCY = Principal(role=Role.AGENCY, name="cs", agency_code="CA_DN")


@pytest.mark.parametrize(
    ("name", "payload", "who", "seen"),
    [
        ("call.queued", {}, STAFF, True),
        ("agent.state_changed", {}, Principal(role=Role.SUPERVISOR), True),
        ("chat.handoff_opened", {}, Principal(role=Role.LEADER), True),
        ("incident.created", {}, Principal(role=Role.ADMIN), True),
        ("alert.published", {}, STAFF, False),  # not a console's business (yet)
        ("call.queued", {}, AGENCY, False),
        ("incident.created", {"agency_code": "CA_DN"}, AGENCY, True),
        ("incident.created", {"agencies": ["PCCC", "CA_DN"]}, AGENCY, True),
        ("incident.created", {"agency_code": "PCCC"}, AGENCY, False),
        ("incident.created", {}, AGENCY, False),
        ("incident.created", {}, Principal(role=Role.AGENCY, agency_code=None), False),
        ("incident.created", {}, Principal(role=Role.SERVICE), False),
        ("incident.created", {}, Principal(role=Role.CITIZEN), False),
        ("incident.created", {}, Principal(role=Role.PUBLIC), False),
    ],
)
def test_who_sees_what(name: str, payload: dict[str, Any], who: Principal, seen: bool) -> None:
    assert visible(name, payload, who) is seen


def _event(n: int, name: str = "call.queued") -> Event:
    return Event(name=name, payload={"n": n}, correlation_id=f"c{n}")


def _read(messages: list[str]) -> list[tuple[str, Any]]:
    out = []
    for m in messages:
        data = json.loads(m)
        out.append((data["type"], data["event"]["payload"]["n"] if "event" in data else None))
    return out


def test_a_client_resumes_after_its_cursor_without_gap_or_duplicate() -> None:
    hub = LiveHub(buffer=100, queue=50)
    for n in range(5):
        hub.publish(f"e-{n}", _event(n))
    client = hub.attach(STAFF, after="e-2")
    hub.publish("e-5", _event(5))
    assert _read(client.take()) == [("hello", None), ("event", 3), ("event", 4), ("event", 5)]


def test_an_unknown_or_forgotten_cursor_means_resync() -> None:
    hub = LiveHub(buffer=3, queue=50)
    for n in range(5):
        hub.publish(f"e-{n}", _event(n))
    for after in ("e-0", "other-epoch-7"):
        assert _read(hub.attach(STAFF, after=after).take()) == [("hello", None), ("resync", None)]
    assert _read(hub.attach(STAFF, after=None).take()) == [("hello", None)]


def test_a_stalled_client_is_told_to_resync_and_costs_the_others_nothing() -> None:
    hub = LiveHub(buffer=100, queue=4)
    stalled, healthy = hub.attach(STAFF, after=None), hub.attach(STAFF, after=None)
    got: list[tuple[str, Any]] = []
    for n in range(10):
        hub.publish(f"e-{n}", _event(n))
        got += _read(healthy.take())
    assert got == [("hello", None), *(("event", n) for n in range(10))]
    kinds = [k for k, _ in _read(stalled.take())]
    assert kinds[0] == "resync" and len(kinds) <= 4 and stalled.resyncs >= 1


def test_a_replay_longer_than_the_queue_is_a_resync_and_keeps_hello_first() -> None:
    hub = LiveHub(buffer=100, queue=2)
    for n in range(6):
        hub.publish(f"e-{n}", _event(n))
    assert _read(hub.attach(STAFF, after="e-0").take()) == [("hello", None), ("resync", None)]


def test_an_agency_replay_holds_only_its_own_incidents() -> None:
    hub = LiveHub(buffer=100, queue=10)
    hub.publish("e-0", _event(0))
    hub.publish(
        "e-1",
        Event(
            name="incident.created", payload={"n": 1, "agency_code": "CA_DN"}, correlation_id="x"
        ),
    )
    hub.publish(
        "e-2",
        Event(name="incident.created", payload={"n": 2, "agency_code": "PCCC"}, correlation_id="y"),
    )
    assert _read(hub.attach(AGENCY, after="e-0").take()) == [("hello", None), ("event", 1)]
