"""AMI events as call facts and queue-member snapshots: pure functions, no I/O.

Field names are app_queue's (Asterisk 22 manager events). The caller's channel `Uniqueid` is
the call's id everywhere: ARI's channel id for the same channel is the same string.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from telephony.calls.lifecycle import Fact

# The manager events the switchboard needs; manager.conf filters everything else out so a
# busy switchboard does not spend its loop parsing Newexten/VarSet floods.
CALL_EVENTS: Final = {
    "QueueCallerJoin": Fact.QUEUED,
    "AgentCalled": Fact.AGENT_RINGING,
    "AgentRingNoAnswer": Fact.RING_NO_ANSWER,
    "AgentConnect": Fact.ANSWERED,
    "QueueCallerAbandon": Fact.ABANDONED,
    "Hangup": Fact.HANGUP,
}
MEMBER_EVENTS: Final = frozenset(
    {
        "QueueMemberAdded",
        "QueueMemberRemoved",
        "QueueMemberStatus",
        "QueueMemberPause",
        "QueueMemberPenalty",
        "QueueMemberRinginuse",
    }
)
OTHER_EVENTS: Final = frozenset({"AgentComplete", "UserEvent", "FullyBooted"})


@dataclass(frozen=True, kw_only=True)
class Observed:
    uid: str
    fact: Fact
    ani: str = ""
    channel: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def call_fact(msg: dict[str, str]) -> Observed | None:
    fact = CALL_EVENTS.get(msg.get("Event", ""))
    uid = msg.get("Uniqueid", "")
    if fact is None or not uid:
        return None
    info: dict[str, Any] = {}
    if "Queue" in msg:
        info["queue"] = msg["Queue"]
    if fact is Fact.QUEUED and msg.get("Position", "").isdigit():
        info["position"] = int(msg["Position"])
    if fact in (Fact.AGENT_RINGING, Fact.ANSWERED) and msg.get("MemberName"):
        info["agent"] = msg["MemberName"]
    if fact is Fact.HANGUP:
        info["hangup_cause"] = msg.get("Cause-txt") or msg.get("Cause") or ""
    ani = msg.get("CallerIDNum", "")
    return Observed(
        uid=uid,
        fact=fact,
        ani="" if ani in ("<unknown>", "") else ani,
        channel=msg.get("Channel", ""),
        info=info,
    )


@dataclass(frozen=True, kw_only=True)
class Member:
    """One agent's membership of one queue, as app_queue reports it."""

    extension: str
    queue: str
    paused: bool
    reason: str
    device: str  # AST_DEVICE_* number as text
    in_call: bool
    last_call: float  # epoch seconds the last call ended (0 = none)


def member(msg: dict[str, str]) -> Member | None:
    """A QueueMember* event or a QueueStatus `QueueMember` entry as a Member."""
    name = msg.get("MemberName") or msg.get("Name") or ""
    queue = msg.get("Queue", "")
    if not name or not queue:
        return None
    return Member(
        extension=name,
        queue=queue,
        paused=msg.get("Paused") == "1",
        reason=msg.get("PausedReason", ""),
        device=msg.get("Status", "0"),
        in_call=msg.get("InCall") == "1",
        last_call=float(msg.get("LastCall") or 0),
    )
