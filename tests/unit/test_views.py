"""The serialisation layer over the full visibility matrix, on in-memory ORM objects (no database).

Every role × (confidential reporter or not) × (own report or not, for citizens) is checked
against a table written from the rules (RP-3, RP-4, PL-2), not computed from `VISIBILITY`:

* the public, and citizens on others' reports, see no reporter at all;
* a citizen sees everything they gave on their own report, confidential or not;
* an agency sees a non-confidential reporter's identity and contact, never a confidential one;
* a channel service sees a non-confidential reporter's identity, never contact details, and
  nothing of a confidential one;
* staff see everything, internal notes included, and a confidential reporter shown to them is
  reported back in `Rendered.revealed` (that list feeds the access log).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ioc_core.access.roles import STAFF, Principal, Role
from ioc_core.incidents.models import Entry, Incident, Reporter, TimelineEntry
from ioc_core.incidents.views import (
    PUBLIC_TIMELINE,
    render_detail,
    render_reporter,
    render_summary,
    render_timeline,
)

NOW = datetime(2025, 3, 4, 8, 0, tzinfo=UTC)

BASE = frozenset({"id", "channel", "confidential", "created_at"})
IDENTITY = frozenset({"name", "channel_user_id"})
CONTACT = frozenset({"phone", "email"})
FULL = BASE | IDENTITY | CONTACT

# Sentinel per reporter field: a rendered body contains the value iff it shows the field.
SENTINELS = {
    "name": "SENTINEL-NAME",
    "channel_user_id": "SENTINEL-UID",
    "phone": "0999000111",
    "email": "sentinel@example.vn",
}
NOTE_TEXT = "SENTINEL-NOTE"
REPLY_TEXT = "Đã tiếp nhận phản ánh"

# (role, confidential reporter, own report) -> keys of the rendered reporter; None = hidden.
EXPECTED_REPORTER: dict[tuple[Role, bool, bool], frozenset[str] | None] = {
    (Role.PUBLIC, False, False): None,
    (Role.PUBLIC, True, False): None,
    (Role.CITIZEN, False, False): None,
    (Role.CITIZEN, True, False): None,
    (Role.CITIZEN, False, True): FULL,
    (Role.CITIZEN, True, True): FULL,
    (Role.AGENCY, False, False): FULL,
    (Role.AGENCY, True, False): None,
    (Role.SERVICE, False, False): BASE | IDENTITY,
    (Role.SERVICE, True, False): None,
    (Role.CALLTAKER, False, False): FULL,
    (Role.CALLTAKER, True, False): FULL,
    (Role.SUPERVISOR, False, False): FULL,
    (Role.SUPERVISOR, True, False): FULL,
    (Role.LEADER, False, False): FULL,
    (Role.LEADER, True, False): FULL,
    (Role.ADMIN, False, False): FULL,
    (Role.ADMIN, True, False): FULL,
}
# Who reads internal notes and the full timeline (actors, internal notes of any row).
EXPECTED_INTERNAL: dict[Role, bool] = {
    Role.PUBLIC: False,
    Role.CITIZEN: False,
    Role.AGENCY: False,
    Role.SERVICE: False,
    Role.CALLTAKER: True,
    Role.SUPERVISOR: True,
    Role.LEADER: True,
    Role.ADMIN: True,
}
ROLES: list[Role] = sorted(Role, key=str)
CASES = sorted(EXPECTED_REPORTER, key=lambda c: (c[0].value, c[1], c[2]))


def _case_id(case: tuple[Role, bool, bool]) -> str:
    role, confidential, own = case
    return f"{role.value}-{'conf' if confidential else 'open'}{'-own' if own else ''}"


def test_the_matrix_covers_every_role() -> None:
    assert {role for role, _, _ in EXPECTED_REPORTER} == set(Role)
    assert set(EXPECTED_INTERNAL) == set(Role)
    for role in Role:
        assert (role, False, False) in EXPECTED_REPORTER
        assert (role, True, False) in EXPECTED_REPORTER
    assert {r for r, v in EXPECTED_INTERNAL.items() if v} == set(STAFF)


def _principal(role: Role) -> Principal:
    return Principal(
        role=role,
        name=f"unit-{role.value}",
        agency_code="SNNMT" if role is Role.AGENCY else None,
        subject="zalo:owner" if role is Role.CITIZEN else "",
    )


def _incident(**over: Any) -> Incident:
    fields: dict[str, Any] = dict(
        id="inc-1",
        code="PA-2025-000001",
        category_code="moi_truong.rac_thai",
        category_group="moi_truong",
        title="Rác thải đổ trộm",
        description="Rác thải đổ trộm đầu hẻm 12",
        priority="normal",
        severity="unknown",
        channel="zalo",
        language="vi",
        state="assigned",
        phase="active",
        track="timed",
        due_at=NOW + timedelta(days=3),
        escalated=False,
        lat=11.5349,
        lon=106.8832,
        address="Hẻm 12, Đồng Xoài",
        area_code="25210",
        agency_code="SNNMT",
        primary_id=None,
        merged_from_state=None,
        reporter_count=1,
        external_ref=None,
        created_at=NOW - timedelta(hours=2),
        updated_at=NOW - timedelta(hours=1),
        resolved_at=None,
        closed_at=None,
        version=3,
        chain_seq=0,
        chain_head="0" * 64,
    )
    fields.update(over)
    return Incident(**fields)


def _reporter(*, confidential: bool) -> Reporter:
    return Reporter(
        id="rep-1",
        incident_id="inc-1",
        name=SENTINELS["name"],
        phone=SENTINELS["phone"],
        email=SENTINELS["email"],
        channel="zalo",
        channel_user_id=SENTINELS["channel_user_id"],
        confidential=confidential,
        subject="zalo:owner",
        created_at=NOW - timedelta(hours=2),
    )


def _entries() -> list[Entry]:
    def entry(i: int, kind: str, body: str, role: str) -> Entry:
        return Entry(
            id=f"entry-{i}",
            incident_id="inc-1",
            kind=kind,
            body=body,
            author=f"unit-{role}",
            author_role=role,
            agency_code=None,
            created_at=NOW - timedelta(minutes=30 - i),
        )

    return [entry(1, "reply", REPLY_TEXT, "calltaker"), entry(2, "note", NOTE_TEXT, "supervisor")]


def _detail(role: Role, *, confidential: bool, own: bool) -> Any:
    return render_detail(
        incident=_incident(),
        reporters=[_reporter(confidential=confidential)],
        entries=_entries(),
        attachments=[],
        duplicates=[],
        primary=None,
        own=own,
        principal=_principal(role),
        now=NOW,
    )


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_render_reporter(case: tuple[Role, bool, bool]) -> None:
    role, confidential, own = case
    out = render_reporter(_reporter(confidential=confidential), _principal(role), own=own)
    expected = EXPECTED_REPORTER[case]
    if expected is None:
        assert out is None
        return
    assert out is not None
    assert set(out) == expected
    for key, value in SENTINELS.items():
        if key in expected:
            assert out[key] == value
    assert out["confidential"] is confidential


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_render_detail(case: tuple[Role, bool, bool]) -> None:
    role, confidential, own = case
    out = _detail(role, confidential=confidential, own=own)
    body = out.body
    text = json.dumps(body, ensure_ascii=False)
    expected = EXPECTED_REPORTER[case]

    if expected is None:
        assert body["reporters"] == []
    else:
        assert [set(r) for r in body["reporters"]] == [expected]
    for key, value in SENTINELS.items():
        shown = expected is not None and key in expected
        assert (value in text) is shown, (key, case)

    internal = EXPECTED_INTERNAL[role]
    assert ("notes" in body) is internal
    assert (NOTE_TEXT in text) is internal
    if internal:
        assert [n["body"] for n in body["notes"]] == [NOTE_TEXT]
    # Replies are public: everyone in scope reads them.
    assert [r["body"] for r in body["replies"]] == [REPLY_TEXT]
    # Only staff's views of someone else's confidential report are audited.
    assert out.revealed == (["inc-1"] if confidential and role in STAFF and not own else [])
    assert ("external_ref" in body) is (role in STAFF)


@pytest.mark.parametrize("role", ROLES, ids=str)
def test_render_summary_never_shows_reporters_or_notes(role: Role) -> None:
    body = render_summary(_incident(external_ref="CALL-1"), _principal(role), NOW)
    assert not {"reporters", "notes", "replies"} & set(body)
    assert ("external_ref" in body) is (role in STAFF)


def _timeline() -> list[TimelineEntry]:
    rows: list[tuple[str, str | None, str | None, str, dict[str, Any]]] = [
        ("created", None, "new", "", {"category": "moi_truong.rac_thai", "attachments": 0}),
        ("transition", "new", "assigned", "TNOTE-ASSIGN", {"action": "assign", "agency": "SNNMT"}),
        ("note", None, None, "", {"entry_id": "entry-2", "sha256": "ab" * 32}),
        ("reply", None, None, "", {"entry_id": "entry-1", "sha256": "cd" * 32}),
        ("escalation", None, None, "TNOTE-ESCALATE", {"escalated": True}),
        ("updated", None, None, "", {"fields": ["reporter"]}),
        ("transition", "assigned", "verified", "TNOTE-DECLINE", {"action": "decline"}),
        ("duplicate_added", None, None, "TNOTE-MERGE", {"duplicate": "PA-2025-000002"}),
        ("transition", "verified", "rejected", "PUBLIC-REJECT", {"action": "reject"}),
        ("transition", "rejected", "resolved", "PUBLIC-RESOLVE", {"action": "resolve"}),
    ]
    out = []
    for seq, (kind, src, dst, note, data) in enumerate(rows, start=1):
        out.append(
            TimelineEntry(
                id=seq,
                incident_id="inc-1",
                seq=seq,
                at=NOW - timedelta(minutes=60 - seq),
                actor="calltaker:SENTINEL-ACTOR",
                actor_role="calltaker",
                channel="web",
                kind=kind,
                from_state=src,
                to_state=dst,
                note=note,
                data=data,
                prev_hash="0" * 64,
                hash=f"{seq:064d}",
            )
        )
    return out


@pytest.mark.parametrize("role", ROLES, ids=str)
def test_render_timeline(role: Role) -> None:
    rows = _timeline()
    items = render_timeline(rows, _principal(role))
    text = json.dumps(items, ensure_ascii=False)
    full = EXPECTED_INTERNAL[role]
    if full:
        assert [i["seq"] for i in items] == [r.seq for r in rows]
        assert all(i["actor"] == "calltaker:SENTINEL-ACTOR" for i in items)
        assert all({"note", "data", "hash", "prev_hash"} <= set(i) for i in items)
        for note in ("TNOTE-ASSIGN", "TNOTE-ESCALATE", "TNOTE-DECLINE", "TNOTE-MERGE"):
            assert note in text
        return
    assert [i["kind"] for i in items] == [r.kind for r in rows if r.kind in PUBLIC_TIMELINE]
    assert {"note", "escalation", "updated"}.isdisjoint(i["kind"] for i in items)
    assert "SENTINEL-ACTOR" not in text and "TNOTE-" not in text
    for item in items:
        assert not {"actor", "data", "hash", "prev_hash"} & set(item)
    # The reason of a result or a refusal is the public answer; nothing else carries a note.
    assert [i["note"] for i in items if "note" in i] == ["PUBLIC-REJECT", "PUBLIC-RESOLVE"]
