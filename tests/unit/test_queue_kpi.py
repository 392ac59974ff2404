"""Queue figures: waiting, longest wait, service level, abandoned, agents by state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from telephony.calls.kpi import QueuedCall, queue_stats

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _call(
    queue: str, status: str, outcome: str | None, wait: float | None, ago: float
) -> QueuedCall:
    queued = NOW - timedelta(seconds=ago)
    answered = queued + timedelta(seconds=wait) if wait is not None else None
    return QueuedCall(
        queue=queue,
        status=status,
        outcome=outcome,
        queued_at=queued,
        answered_at=answered,
        ended_at=answered,
    )


def test_queue_figures() -> None:
    calls = [
        _call("emergency-114", "ended", "answered", 5, 600),  # within 15 s
        _call("emergency-114", "ended", "answered", 18, 500),  # within 20 s only
        _call("emergency-114", "ended", "answered", 40, 400),  # neither
        _call("emergency-114", "ended", "abandoned", None, 300),  # counts against
        _call("emergency-114", "queued", None, None, 12),
        _call("emergency-114", "ringing", None, None, 30),
        _call("hotline-1022", "connected", "answered", 3, 100),
    ]
    agents = [
        {"extension": "1001", "state": "available", "queues": ["emergency-114", "hotline-1022"]},
        {"extension": "1002", "state": "busy", "queues": ["emergency-114"]},
        {"extension": "1003", "state": "logged_out", "queues": []},
    ]
    stats = {
        s["queue"]: s
        for s in queue_stats(
            calls, queues=["emergency-114", "hotline-1022", "emergency-113"], agents=agents, now=NOW
        )
    }
    q = stats["emergency-114"]
    assert (q["waiting"], q["longest_wait_s"], q["answered"], q["abandoned"]) == (2, 30.0, 3, 1)
    assert q["service_level"] == {"15s": 0.25, "20s": 0.5}
    assert q["answered_within"] == {"15s": 1, "20s": 2}
    assert q["asa_s"] == 21.0  # (5 + 18 + 40) / 3
    assert q["agents"] == {"available": 1, "busy": 1}
    assert stats["hotline-1022"]["service_level"] == {"15s": 1.0, "20s": 1.0}
    assert stats["emergency-113"] == {
        "queue": "emergency-113",
        "waiting": 0,
        "longest_wait_s": 0.0,
        "answered": 0,
        "abandoned": 0,
        "service_level": {"15s": None, "20s": None},
        "answered_within": {"15s": 0, "20s": 0},
        "asa_s": None,
        "agents": {},
    }
