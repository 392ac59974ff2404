"""The JSON shapes of calls, call-backs and agents (API, consoles, events), and the small
results the calls store returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Literal

from ioc_core.db import utcnow
from telephony.calls.lifecycle import (
    Effect,
    wait_seconds,
)
from telephony.calls.models import Agent, Call, Callback


@dataclass(frozen=True, kw_only=True)
class Recorded:
    call: dict[str, Any]
    effects: tuple[Effect, ...]
    callback_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class DraftClaim:
    """`claimed`: make the draft; `again`: make it, a maker before was interrupted; `done`:
    nothing to make (made already, or not a citizen's call)."""

    verdict: Literal["claimed", "again", "done"]
    call: dict[str, Any] | None = None
    request: dict[str, Any] | None = None  # what an interrupted maker asked of the core


def call_view(c: Call | SimpleNamespace, now: datetime | None = None) -> dict[str, Any]:
    """The one JSON shape of a call (API and consoles)."""
    now = now or utcnow()
    end = c.answered_at or c.ended_at or now
    return {
        "id": c.uid,
        "channel": c.channel,  # Asterisk's channel name (what a console transfers)
        "direction": c.direction,
        "ani": c.ani,
        "service": c.service,
        "status": c.status,
        "outcome": c.outcome,
        "language": c.language,
        "ivr_choices": c.ivr_choices,
        "queue": c.queue,
        "position": c.position,
        "agent": c.agent,
        "incident_code": c.incident_code,
        "caller_calls": c.caller_calls,
        "recording_path": c.recording_path,
        "hangup_cause": c.hangup_cause,
        "wait_s": round(wait_seconds(c.queued_at, end), 3),
        "arrived_at": iso(c.arrived_at),
        "ivr_done_at": iso(c.ivr_done_at),
        "queued_at": iso(c.queued_at),
        "answered_at": iso(c.answered_at),
        "ended_at": iso(c.ended_at),
        "live": c.live,
    }


def callback_view(cb: Callback) -> dict[str, Any]:
    return {
        "id": cb.id,
        "call_id": cb.call_id,
        "ani": cb.ani,
        "service": cb.service,
        "reason": cb.reason,
        "status": cb.status,
        "automatic": cb.automatic,
        "priority": cb.priority,
        "attempts": cb.attempts,
        "max_attempts": cb.max_attempts,
        "next_attempt_at": iso(cb.next_attempt_at),
        "last_outcome": cb.last_outcome,
        "recording_path": cb.recording_path,
        "transcript": cb.transcript,
        "assigned_to": cb.assigned_to,
        "note": cb.note,
        "created_at": iso(cb.created_at),
        "updated_at": iso(cb.updated_at),
    }


def iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def agent_view(a: Agent) -> dict[str, Any]:
    return {
        "extension": a.extension,
        "name": a.name,
        "state": a.state,
        "pause_reason": a.pause_reason,
        "queues": a.queues,
        "state_since": iso(a.state_since),
    }
