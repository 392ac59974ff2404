"""A call's lifecycle as data plus pure functions: facts from Asterisk in, changes out.

Facts arrive from two observers that may lag, repeat or miss each other (ARI for calls the
app touches, AMI for queue and agent events, including calls that reached the queue while the
app was down). So `apply` is idempotent and order-tolerant: a fact that no longer fits the
call's status changes nothing; the first sight of an unknown call creates it from any fact.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from ioc_core import events as ev


class Status(StrEnum):
    NEW = "new"  # arrived, not yet in a menu or queue
    IVR = "ivr"  # in the 1022 menu
    QUEUED = "queued"
    RINGING = "ringing"  # an agent's phone rings
    CONNECTED = "connected"  # talking to an agent
    ENDED = "ended"


class Outcome(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"  # the caller hung up before an agent answered
    RECORDED = "recorded"  # left a message (out of hours, overflow)
    SELF_SERVED = "self_served"  # the menu answered and ended the call (information, goodbye)
    UNKNOWN = "unknown"  # ended while the switchboard was away (found gone on reconnect)


class Fact(StrEnum):
    ARRIVED = "arrived"
    IVR_STARTED = "ivr_started"
    IVR_DONE = "ivr_done"
    QUEUED = "queued"
    AGENT_RINGING = "agent_ringing"
    RING_NO_ANSWER = "ring_no_answer"
    ANSWERED = "answered"
    RECORDED = "recorded"
    SELF_SERVED = "self_served"  # the menu ends the call on purpose (the caller chose to)
    ABANDONED = "abandoned"
    HANGUP = "hangup"
    LOST = "lost"  # gone from Asterisk when the switchboard reconnected


class Effect(StrEnum):
    DRAFT_INCIDENT = "draft_incident"  # an agent answered: open the draft in the core
    CALLBACK = "callback"  # the citizen is owed a call-back


WAITING: Final = frozenset({Status.NEW, Status.IVR, Status.QUEUED, Status.RINGING})
LIVE: Final = WAITING | {Status.CONNECTED}

# fact -> (statuses it applies in, status after); None after = unchanged.
TRANSITIONS: Final[dict[Fact, tuple[frozenset[Status], Status | None]]] = {
    Fact.IVR_STARTED: (frozenset({Status.NEW}), Status.IVR),
    Fact.IVR_DONE: (frozenset({Status.IVR}), Status.NEW),
    Fact.QUEUED: (frozenset({Status.NEW, Status.IVR}), Status.QUEUED),
    Fact.AGENT_RINGING: (frozenset({Status.QUEUED, Status.RINGING}), Status.RINGING),
    Fact.RING_NO_ANSWER: (frozenset({Status.RINGING}), Status.QUEUED),
    Fact.ANSWERED: (frozenset(WAITING), Status.CONNECTED),
    # A message may be reported after the hang-up (Asterisk ends the recording on it).
    Fact.RECORDED: (frozenset(WAITING | {Status.ENDED}), None),
    Fact.SELF_SERVED: (frozenset({Status.NEW, Status.IVR}), None),
    Fact.ABANDONED: (frozenset(WAITING), Status.ENDED),
    Fact.HANGUP: (frozenset(LIVE), Status.ENDED),
    Fact.LOST: (frozenset(LIVE), Status.ENDED),
}


@dataclass(frozen=True, kw_only=True)
class CallState:
    status: Status = Status.NEW  # an unknown call is new, whatever fact reveals it
    outcome: Outcome | None = None


@dataclass(frozen=True, kw_only=True)
class Change:
    status: Status
    outcome: Outcome | None
    stamps: tuple[str, ...] = ()  # timestamp columns to set now (if not set yet)
    events: tuple[str, ...] = ()
    effects: tuple[Effect, ...] = ()


def apply(state: CallState, fact: Fact) -> Change | None:
    """What `fact` does to a call in `state`; None when it changes nothing (late or repeated)."""
    if fact is Fact.ARRIVED:
        return None  # creating the row is the arrival; a repeated ARRIVED is a no-op
    allowed, after = TRANSITIONS[fact]
    if state.status not in allowed:
        return None
    status = after or state.status
    outcome = state.outcome
    stamps: list[str] = []
    events: list[str] = []
    effects: list[Effect] = []
    if fact is Fact.IVR_DONE:
        stamps.append("ivr_done_at")
    elif fact is Fact.QUEUED:
        stamps.append("queued_at")
        events.append(ev.CALL_QUEUED)
    elif fact is Fact.ANSWERED:
        stamps.append("answered_at")
        outcome = Outcome.ANSWERED
        events.append(ev.CALL_ANSWERED)
        effects.append(Effect.DRAFT_INCIDENT)
    elif fact is Fact.RECORDED:
        if state.status is Status.ENDED:
            if state.outcome is not Outcome.ABANDONED:
                return None
            # The hang-up came first and opened the call-back item; the message joins it.
            outcome = Outcome.RECORDED
        else:
            outcome = Outcome.RECORDED
            effects.append(Effect.CALLBACK)
    elif fact is Fact.SELF_SERVED:
        # Not abandoned: nobody is owed a call-back, and the queue's figures leave it out.
        outcome = Outcome.SELF_SERVED
    elif fact is Fact.LOST:
        stamps.append("ended_at")
        if state.status is not Status.CONNECTED and outcome is None:
            # It may have been answered or abandoned while we were away: a person checks
            # (a manual call-back item), never an automatic call to someone already served.
            outcome = Outcome.UNKNOWN
            effects.append(Effect.CALLBACK)
        events.append(ev.CALL_ENDED)
    elif fact in (Fact.ABANDONED, Fact.HANGUP):
        stamps.append("ended_at")
        if state.status is not Status.CONNECTED and outcome is None:
            # Hung up before an agent answered, wherever it was (IVR, queue, ringing).
            outcome = Outcome.ABANDONED
            events.append(ev.CALL_ABANDONED)
            effects.append(Effect.CALLBACK)
        events.append(ev.CALL_ENDED)
    if status == state.status and outcome == state.outcome and not stamps:
        return None
    return Change(
        status=status,
        outcome=outcome,
        stamps=tuple(stamps),
        events=tuple(events),
        effects=tuple(effects),
    )


# ---------------------------------------------------------------------- agents


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    BUSY = "busy"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    UNREACHABLE = "unreachable"  # logged in, but the phone is not registered


# Asterisk device states as QueueMemberStatus reports them (AST_DEVICE_*).
_DEVICE_IN_USE: Final = frozenset({"2", "3", "7", "8"})  # in use, busy, ring+inuse, on hold
_DEVICE_RINGING: Final = "6"
_DEVICE_UNAVAILABLE: Final = frozenset({"4", "5"})  # invalid, unavailable


def agent_state(
    *,
    logged_in: bool,
    paused: bool,
    device: str,
    in_call: bool,
    last_call_end: float,
    wrapup_s: float,
    now: float,
) -> AgentState:
    """The one state a supervisor sees, from app_queue's member fields (epoch seconds)."""
    if not logged_in:
        return AgentState.LOGGED_OUT
    if device in _DEVICE_UNAVAILABLE:
        return AgentState.UNREACHABLE
    if in_call or device in _DEVICE_IN_USE:
        return AgentState.BUSY
    if device == _DEVICE_RINGING:
        return AgentState.RINGING
    if paused:
        return AgentState.PAUSED
    if last_call_end and now - last_call_end < wrapup_s:
        # app_queue holds the member back for `wrapuptime` after a call; no event marks
        # the end of it, so the state is derived from the member's LastCall.
        return AgentState.WRAP_UP
    return AgentState.AVAILABLE


def wait_seconds(queued_at: datetime | None, until: datetime) -> float:
    return max(0.0, (until - queued_at).total_seconds()) if queued_at else 0.0
