"""Queue figures for the supervisors' board: pure functions over call rows.

Service level within T seconds = calls answered within T of joining the queue, over the calls
that left the queue (answered or abandoned) — abandoned calls count against it however soon
they hung up: for emergency lines a short abandon is still a citizen who gave up.

The counts behind it travel too (`answered_within`), so a screen may also show Asterisk's
plain SL (answered within T over answered) and label which one it shows; ASA is the queue
wait of answered calls over answered (no IVR time, no ringing before the queue).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telephony.calls.lifecycle import Outcome, Status, wait_seconds

THRESHOLDS_S = (15, 20)


@dataclass(frozen=True, kw_only=True)
class QueuedCall:
    queue: str
    status: str
    outcome: str | None
    queued_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None


def queue_stats(
    calls: Iterable[QueuedCall],
    *,
    queues: Sequence[str],
    agents: Iterable[Mapping[str, Any]],
    now: datetime,
    thresholds: Sequence[int] = THRESHOLDS_S,
) -> list[dict[str, Any]]:
    by_queue: dict[str, list[QueuedCall]] = {q: [] for q in queues}
    for c in calls:
        if c.queue in by_queue and c.queued_at is not None:
            by_queue[c.queue].append(c)
    agent_list = list(agents)
    out = []
    for queue, rows in by_queue.items():
        waiting = [c for c in rows if c.status in (Status.QUEUED, Status.RINGING)]
        answered = [c for c in rows if c.answered_at is not None]
        abandoned = [c for c in rows if c.outcome == Outcome.ABANDONED and c.answered_at is None]
        left = len(answered) + len(abandoned)
        waits = [wait_seconds(c.queued_at, c.answered_at) for c in answered if c.answered_at]
        levels, within_t = {}, {}
        for t in thresholds:
            within = sum(1 for w in waits if w <= t)
            within_t[f"{t}s"] = within
            levels[f"{t}s"] = round(within / left, 4) if left else None
        states: dict[str, int] = {}
        for a in agent_list:
            if queue in (a.get("queues") or []):
                states[a["state"]] = states.get(a["state"], 0) + 1
        out.append(
            {
                "queue": queue,
                "waiting": len(waiting),
                "longest_wait_s": round(
                    max((wait_seconds(c.queued_at, now) for c in waiting), default=0.0), 1
                ),
                "answered": len(answered),
                "abandoned": len(abandoned),
                "service_level": levels,
                "answered_within": within_t,
                "asa_s": round(sum(waits) / len(waits), 1) if waits else None,
                "agents": states,
            }
        )
    return out
