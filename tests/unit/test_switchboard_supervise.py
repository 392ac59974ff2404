"""Supervision of the switchboard's parts and the report `/health` shows (pure parts)."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from telephony.switchboard.supervise import (
    Backoff,
    Health,
    publish,
    read_published,
    supervise,
)

FAST = Backoff(first_s=0.01, max_s=0.04)


async def test_defect_11_a_failing_part_is_started_again_with_growing_pauses() -> None:
    health = Health()
    tries: list[float] = []
    loop = asyncio.get_running_loop()

    async def part() -> None:
        tries.append(loop.time())
        if len(tries) <= 4:
            raise ConnectionError(f"database unavailable ({len(tries)})")

    await asyncio.wait_for(supervise("start-up", part, health=health, backoff=FAST), 5)
    state = health.parts["start-up"]
    assert len(tries) == 5 and state.restarts == 4 and state.status == "done"
    assert state.last_error == "ConnectionError: database unavailable (4)"
    pauses = [b - a for a, b in itertools.pairwise(tries)]
    assert pauses[0] >= 0.01 and pauses[-1] >= 0.04 - 0.005  # doubled up to max_s
    assert health.last_error is not None and health.last_error["part"] == "start-up"


async def test_defect_11_cancelling_a_supervised_part_stops_it() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervise("ari", forever, health=Health(), backoff=FAST))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize(
    ("links", "failed", "status"),
    [
        ({"ari": True, "ami": True, "fastagi": True}, False, "ok"),
        ({"ari": True, "ami": True, "fastagi": True}, True, "degraded"),
        ({"ari": True, "ami": False, "fastagi": True}, False, "degraded"),
        ({"ari": True, "ami": True, "fastagi": False}, False, "degraded"),
        ({"ari": False, "ami": False, "fastagi": True}, False, "down"),
    ],
)
def test_defect_11_the_report_says_what_is_connected(
    links: dict[str, bool], failed: bool, status: str
) -> None:
    health = Health()
    health.running("ari")
    if failed:
        health.failed("ami-catch-up", OSError("database unavailable"))
    report = health.report(links)
    assert report["status"] == status
    assert report["asterisk"] == ("reachable" if links["ari"] or links["ami"] else "unreachable")
    assert report["ari"] == ("connected" if links["ari"] else "disconnected")


def test_defect_11_other_workers_read_the_primary_report_and_notice_it_stopped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "switchboard-health.json"
    now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    assert read_published(path, now=now, stale_s=15)["status"] == "down"  # never written
    publish(path, Health(clock=lambda: now).report({"ari": True, "ami": True}))
    assert read_published(path, now=now + timedelta(seconds=10), stale_s=15)["status"] == "ok"
    late = read_published(path, now=now + timedelta(seconds=20), stale_s=15)
    assert late["status"] == "down" and "not reported since" in late["error"]
