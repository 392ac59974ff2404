"""The call lifecycle and agent state: pure tables, tested as tables."""

from __future__ import annotations

import pytest

from ioc_core import events as ev
from telephony.calls.lifecycle import (
    AgentState,
    CallState,
    Effect,
    Fact,
    Outcome,
    Status,
    agent_state,
    apply,
)

S, R, F, X = Status, Outcome, Fact, Effect


@pytest.mark.parametrize(
    ("status", "outcome", "fact", "after", "after_outcome", "events", "effects"),
    [
        (S.NEW, None, F.IVR_STARTED, S.IVR, None, (), ()),
        (S.IVR, None, F.IVR_DONE, S.NEW, None, (), ()),
        (S.NEW, None, F.QUEUED, S.QUEUED, None, (ev.CALL_QUEUED,), ()),
        (S.IVR, None, F.QUEUED, S.QUEUED, None, (ev.CALL_QUEUED,), ()),
        (S.QUEUED, None, F.AGENT_RINGING, S.RINGING, None, (), ()),
        (S.RINGING, None, F.RING_NO_ANSWER, S.QUEUED, None, (), ()),
        (
            S.RINGING,
            None,
            F.ANSWERED,
            S.CONNECTED,
            R.ANSWERED,
            (ev.CALL_ANSWERED,),
            (X.DRAFT_INCIDENT,),
        ),
        # The app was down: the first thing we hear of a call is its agent answering.
        (
            S.NEW,
            None,
            F.ANSWERED,
            S.CONNECTED,
            R.ANSWERED,
            (ev.CALL_ANSWERED,),
            (X.DRAFT_INCIDENT,),
        ),
        (S.CONNECTED, R.ANSWERED, F.HANGUP, S.ENDED, R.ANSWERED, (ev.CALL_ENDED,), ()),
        (
            S.QUEUED,
            None,
            F.ABANDONED,
            S.ENDED,
            R.ABANDONED,
            (ev.CALL_ABANDONED, ev.CALL_ENDED),
            (X.CALLBACK,),
        ),
        # Hanging up in the menu is abandoning too (SW-4: in IVR or queue).
        (
            S.IVR,
            None,
            F.HANGUP,
            S.ENDED,
            R.ABANDONED,
            (ev.CALL_ABANDONED, ev.CALL_ENDED),
            (X.CALLBACK,),
        ),
        # A message left out of hours: the call-back comes from the recording, not twice.
        (S.IVR, None, F.RECORDED, S.IVR, R.RECORDED, (), (X.CALLBACK,)),
        (S.IVR, R.RECORDED, F.HANGUP, S.ENDED, R.RECORDED, (ev.CALL_ENDED,), ()),
        # The hang-up reported before the message: the existing call-back item takes it.
        (S.ENDED, R.ABANDONED, F.RECORDED, S.ENDED, R.RECORDED, (), ()),
        # The caller heard what they wanted from the menu and chose to end: not abandoned,
        # no call-back (the 1022 procedures node's "#").
        (S.NEW, None, F.SELF_SERVED, S.NEW, R.SELF_SERVED, (), ()),
        (S.NEW, R.SELF_SERVED, F.HANGUP, S.ENDED, R.SELF_SERVED, (ev.CALL_ENDED,), ()),
        (S.QUEUED, None, F.LOST, S.ENDED, R.UNKNOWN, (ev.CALL_ENDED,), (X.CALLBACK,)),
        (S.CONNECTED, R.ANSWERED, F.LOST, S.ENDED, R.ANSWERED, (ev.CALL_ENDED,), ()),
    ],
)
def test_facts_move_calls(
    status: Status,
    outcome: Outcome | None,
    fact: Fact,
    after: Status,
    after_outcome: Outcome | None,
    events: tuple[str, ...],
    effects: tuple[Effect, ...],
) -> None:
    change = apply(CallState(status=status, outcome=outcome), fact)
    assert change is not None
    assert (change.status, change.outcome) == (after, after_outcome)
    assert change.events == events and change.effects == effects


@pytest.mark.parametrize(
    ("status", "fact"),
    [
        (S.ENDED, F.HANGUP),  # AMI and ARI both report the hang-up
        (S.ENDED, F.ABANDONED),  # QueueCallerAbandon after Hangup
        (S.ENDED, F.QUEUED),  # a late join
        (S.CONNECTED, F.QUEUED),
        (S.CONNECTED, F.ABANDONED),  # never "abandoned" once answered
        (S.QUEUED, F.RING_NO_ANSWER),
        (S.NEW, F.ARRIVED),
        (S.CONNECTED, F.IVR_DONE),
        (S.ENDED, F.RECORDED),  # ended without abandoning: a stray message event
        (S.QUEUED, F.SELF_SERVED),  # only the menu ends a call as self-served
        (S.ENDED, F.SELF_SERVED),
    ],
)
def test_late_or_repeated_facts_change_nothing(status: Status, fact: Fact) -> None:
    assert apply(CallState(status=status), fact) is None


A = AgentState


@pytest.mark.parametrize(
    ("logged_in", "paused", "device", "in_call", "last_end", "expected"),
    [
        (False, False, "1", False, 0.0, A.LOGGED_OUT),
        (True, False, "5", False, 0.0, A.UNREACHABLE),  # phone not registered
        (True, False, "1", False, 0.0, A.AVAILABLE),
        (True, False, "6", False, 0.0, A.RINGING),
        (True, False, "2", True, 0.0, A.BUSY),
        (True, True, "2", True, 0.0, A.BUSY),  # paused mid-call: still on the call
        (True, False, "1", False, 998.0, A.WRAP_UP),  # 2 s after the call, wrap-up is 5 s
        (True, False, "1", False, 990.0, A.AVAILABLE),
        (True, True, "1", False, 998.0, A.PAUSED),
    ],
)
def test_agent_state(
    logged_in: bool, paused: bool, device: str, in_call: bool, last_end: float, expected: AgentState
) -> None:
    got = agent_state(
        logged_in=logged_in,
        paused=paused,
        device=device,
        in_call=in_call,
        last_call_end=last_end,
        wrapup_s=5,
        now=1000.0,
    )
    assert got is expected
