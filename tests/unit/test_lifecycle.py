"""The transition table and its guards, as a table."""

from __future__ import annotations

import pytest

from ioc_core.errors import Conflict, Forbidden, ValidationFailed
from ioc_core.incidents import lifecycle
from ioc_core.incidents.lifecycle import PHASE, Phase, State, plan

OK = [
    # state, action, role, note, agency -> target
    (State.DRAFT, "submit", "calltaker", None, None, State.NEW),
    (State.DRAFT, "cancel", "calltaker", "trùng", None, State.CANCELLED),
    (State.NEW, "verify", "calltaker", None, None, State.VERIFIED),
    (State.NEW, "reject", "supervisor", "ngoài phạm vi", None, State.REJECTED),
    (State.NEW, "assign", "supervisor", None, "CA-TINH", State.ASSIGNED),
    (State.VERIFIED, "assign", "calltaker", None, "SXD", State.ASSIGNED),
    (State.ASSIGNED, "assign", "supervisor", None, "SYT", State.ASSIGNED),  # re-route
    (State.ASSIGNED, "decline", "agency", "không thuộc thẩm quyền", None, State.VERIFIED),
    (State.ASSIGNED, "start", "agency", None, None, State.IN_PROGRESS),
    (State.IN_PROGRESS, "resolve", "agency", "đã xử lý", None, State.RESOLVED),
    (State.ASSIGNED, "resolve", "calltaker", "đã xử lý", None, State.RESOLVED),
    (State.RESOLVED, "close", "supervisor", None, None, State.CLOSED),
    (State.RESOLVED, "reopen", "leader", "chưa triệt để", None, State.IN_PROGRESS),
    (State.CLOSED, "reopen", "admin", "người dân phản ánh lại", None, State.IN_PROGRESS),
    (State.NEW, "merge", "system", None, None, State.MERGED),
]


@pytest.mark.parametrize(("state", "action", "role", "note", "agency", "target"), OK)
def test_allowed(
    state: State, action: str, role: str, note: str | None, agency: str | None, target: State
) -> None:
    assert plan(state, action, role=role, note=note, agency=agency).target is target


REFUSED = [
    # state, action, role, note, agency -> error type, error_id
    (State.NEW, "resolve", "agency", "x", None, Conflict, "invalid-transition"),
    (State.CLOSED, "verify", "calltaker", None, None, Conflict, "invalid-transition"),
    (State.MERGED, "assign", "supervisor", None, "SXD", Conflict, "invalid-transition"),
    (State.NEW, "verify", "agency", None, None, Forbidden, "transition-not-allowed"),
    (State.NEW, "verify", "citizen", None, None, Forbidden, "transition-not-allowed"),
    (State.NEW, "verify", "public", None, None, Forbidden, "transition-not-allowed"),
    (State.RESOLVED, "close", "calltaker", None, None, Forbidden, "transition-not-allowed"),
    (State.NEW, "reject", "calltaker", "   ", None, ValidationFailed, "note-required"),
    (State.IN_PROGRESS, "resolve", "agency", None, None, ValidationFailed, "note-required"),
    (State.NEW, "assign", "calltaker", None, None, ValidationFailed, "agency-required"),
    (State.NEW, "teleport", "admin", None, None, ValidationFailed, "unknown-action"),
]


@pytest.mark.parametrize(
    ("state", "action", "role", "note", "agency", "error", "error_id"), REFUSED
)
def test_refused(
    state: State,
    action: str,
    role: str,
    note: str | None,
    agency: str | None,
    error: type[Exception],
    error_id: str,
) -> None:
    with pytest.raises(error) as info:
        plan(state, action, role=role, note=note, agency=agency)
    assert info.value.error_id == error_id  # type: ignore[attr-defined]


def test_every_state_has_a_phase_and_every_transition_is_reachable() -> None:
    assert set(PHASE) == set(State)
    reachable = {State.DRAFT, State.NEW}
    changed = True
    while changed:
        before = len(reachable)
        reachable |= {t.target for t in lifecycle.TRANSITIONS if t.source in reachable}
        changed = len(reachable) != before
    assert reachable == set(State)


def test_terminal_states_are_closed_phase() -> None:
    for state in (State.CLOSED, State.REJECTED, State.CANCELLED, State.MERGED):
        assert PHASE[state] is Phase.CLOSED


@pytest.mark.parametrize(
    ("state", "role", "actions"),
    [
        (State.NEW, "calltaker", ["assign", "merge", "reject", "verify"]),
        (State.ASSIGNED, "agency", ["decline", "resolve", "start"]),
        (State.RESOLVED, "calltaker", []),
        (State.RESOLVED, "supervisor", ["close", "reopen"]),
        (State.NEW, "public", []),
    ],
)
def test_available_actions(state: State, role: str, actions: list[str]) -> None:
    assert lifecycle.available_actions(state, role) == actions
