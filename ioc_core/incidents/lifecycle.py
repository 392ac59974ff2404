"""Incident lifecycle: a pure transition table with guards.

States carry a *phase* (open/active/resolved/closed); queries filter on the phase so adding a
state never changes what "open" means to a report or a KPI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from ioc_core.access.roles import STAFF as STAFF_ROLES
from ioc_core.errors import Conflict, Forbidden, ValidationFailed


class Phase(StrEnum):
    OPEN = "open"
    ACTIVE = "active"
    RESOLVED = "resolved"
    CLOSED = "closed"


class State(StrEnum):
    DRAFT = "draft"  # being completed by a call-taker (phone), not public yet
    NEW = "new"  # received, waiting for IOC verification
    VERIFIED = "verified"  # accepted by the IOC as a real, in-scope report
    ASSIGNED = "assigned"  # handed to an agency
    IN_PROGRESS = "in_progress"  # the agency is acting
    RESOLVED = "resolved"  # the agency reported a result
    CLOSED = "closed"  # result accepted
    REJECTED = "rejected"  # not a valid / in-scope report
    CANCELLED = "cancelled"  # a draft abandoned
    MERGED = "merged"  # a duplicate, now follows its primary


PHASE: Mapping[State, Phase] = {
    State.DRAFT: Phase.OPEN,
    State.NEW: Phase.OPEN,
    State.VERIFIED: Phase.ACTIVE,
    State.ASSIGNED: Phase.ACTIVE,
    State.IN_PROGRESS: Phase.ACTIVE,
    State.RESOLVED: Phase.RESOLVED,
    State.CLOSED: Phase.CLOSED,
    State.REJECTED: Phase.CLOSED,
    State.CANCELLED: Phase.CLOSED,
    State.MERGED: Phase.CLOSED,
}

# States a citizen or the public ever sees; drafts exist only inside the IOC.
PUBLIC_STATES: frozenset[State] = frozenset(State) - {State.DRAFT, State.CANCELLED}

STAFF = frozenset(r.value for r in STAFF_ROLES)  # the transition table names roles as text
AGENCY = frozenset({"agency"})
SYSTEM = frozenset({"system"})


@dataclass(frozen=True)
class Transition:
    action: str
    source: State
    target: State
    roles: frozenset[str]
    requires_note: bool = False
    requires_agency: bool = False


def _t(
    action: str, sources: tuple[State, ...], target: State, roles: frozenset[str], **guards: bool
) -> list[Transition]:
    return [Transition(action, s, target, roles, **guards) for s in sources]


TRANSITIONS: tuple[Transition, ...] = tuple(
    _t("submit", (State.DRAFT,), State.NEW, STAFF)
    + _t("cancel", (State.DRAFT,), State.CANCELLED, STAFF, requires_note=True)
    + _t("verify", (State.NEW,), State.VERIFIED, STAFF)
    + _t("reject", (State.NEW, State.VERIFIED), State.REJECTED, STAFF, requires_note=True)
    + _t(
        "assign",
        (State.NEW, State.VERIFIED, State.ASSIGNED, State.IN_PROGRESS),
        State.ASSIGNED,
        STAFF,
        requires_agency=True,
    )
    # An agency that cannot handle the case hands it back with a reason (RP-7).
    + _t("decline", (State.ASSIGNED,), State.VERIFIED, AGENCY | STAFF, requires_note=True)
    + _t("start", (State.ASSIGNED,), State.IN_PROGRESS, AGENCY | STAFF)
    + _t(
        "resolve",
        (State.ASSIGNED, State.IN_PROGRESS),
        State.RESOLVED,
        AGENCY | STAFF,
        requires_note=True,
    )
    + _t(
        "reopen",
        (State.RESOLVED, State.CLOSED),
        State.IN_PROGRESS,
        STAFF - {"calltaker"},
        requires_note=True,
    )
    + _t("close", (State.RESOLVED,), State.CLOSED, STAFF - {"calltaker"})
    + _t(
        "merge",
        (State.NEW, State.VERIFIED, State.ASSIGNED, State.IN_PROGRESS),
        State.MERGED,
        STAFF | SYSTEM,
    )
    # Unmerge restores the state the incident had when it was merged (see services).
)

_INDEX: dict[tuple[State, str], Transition] = {(t.source, t.action): t for t in TRANSITIONS}
ACTIONS: frozenset[str] = frozenset(t.action for t in TRANSITIONS)


def available_actions(state: State, role: str) -> list[str]:
    """Actions `role` may take from `state` (for UIs: which buttons to show)."""
    return sorted(t.action for t in TRANSITIONS if t.source == state and role in t.roles)


def plan(
    state: State, action: str, *, role: str, note: str | None = None, agency: str | None = None
) -> Transition:
    """Check a requested transition against the table and its guards.

    Raises a typed error that names what is wrong; returns the transition otherwise.
    """
    if action not in ACTIONS:
        raise ValidationFailed(
            f"unknown action {action!r}",
            details={"field": "action", "allowed": sorted(ACTIONS)},
            error_id="unknown-action",
        )
    t = _INDEX.get((state, action))
    if t is None:
        raise Conflict(
            f"cannot {action} an incident in state {state.value}",
            details={
                "state": state.value,
                "action": action,
                "allowed": sorted(a for (s, a) in _INDEX if s == state),
            },
            error_id="invalid-transition",
        )
    if role not in t.roles:
        raise Forbidden(
            f"role {role!r} may not {action}",
            details={"action": action, "roles": sorted(t.roles)},
            error_id="transition-not-allowed",
        )
    if t.requires_note and not (note and note.strip()):
        raise ValidationFailed(
            f"{action} needs a note saying why",
            details={"field": "note"},
            error_id="note-required",
        )
    if t.requires_agency and not agency:
        raise ValidationFailed(
            f"{action} needs an agency",
            details={"field": "agency"},
            error_id="agency-required",
        )
    return t
