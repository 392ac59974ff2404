"""Keeping the switchboard alive, and saying how it is.

The switchboard is a handful of long-lived parts (the ARI Stasis app, the AMI observer, the
call-back loop, ...) plus work that must succeed once per (re)connection (re-reading Asterisk
into the calls table). A database error or a bug in any of them used to end the whole
switchboard for good, silently. Here a part that fails is logged, noted in `Health` and started
again after a growing pause; work that must succeed is retried the same way; and `Health` is
what `/health` reports (ADR 0017)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ioc_core.db import utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Pauses between tries: `first_s`, doubling up to `max_s`; a part that ran `healthy_s`
    before failing starts again from `first_s`."""

    first_s: float = 0.5
    max_s: float = 30.0
    healthy_s: float = 60.0

    def next(self, delay: float) -> float:
        return min(delay * 2, self.max_s)


DEFAULT_BACKOFF = Backoff()


@dataclass(kw_only=True)
class PartState:
    status: str = "starting"  # starting | running | failed | done
    restarts: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None


@dataclass(kw_only=True)
class Health:
    """The switchboard's parts as `/health` shows them (kept in memory by the primary worker,
    and written to `publish_to` so the other workers can report it too)."""

    clock: Callable[[], datetime] = utcnow
    parts: dict[str, PartState] = field(default_factory=dict)
    last_error: dict[str, Any] | None = None

    def part(self, name: str) -> PartState:
        return self.parts.setdefault(name, PartState())

    def running(self, name: str) -> None:
        self.part(name).status = "running"

    def done(self, name: str) -> None:
        self.part(name).status = "done"

    def failed(self, name: str, exc: BaseException) -> None:
        state = self.part(name)
        state.status = "failed"
        state.restarts += 1
        state.last_error = f"{type(exc).__name__}: {exc}"[:500]
        state.last_error_at = self.clock()
        self.last_error = {
            "part": name,
            "error": state.last_error,
            "at": state.last_error_at.isoformat(),
        }

    def report(self, connected: Mapping[str, bool]) -> dict[str, Any]:
        """`connected`: live links by name (ari, ami, fastagi). Down when Asterisk cannot be
        reached at all; degraded when a link or a part is not running."""
        parts = {
            name: {
                "status": p.status,
                "restarts": p.restarts,
                "last_error": p.last_error,
                "last_error_at": p.last_error_at.isoformat() if p.last_error_at else None,
            }
            for name, p in sorted(self.parts.items())
        }
        reachable = bool(connected.get("ari") or connected.get("ami"))
        if not reachable:
            status = "down"
        elif not all(connected.values()) or any(p.status == "failed" for p in self.parts.values()):
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "asterisk": "reachable" if reachable else "unreachable",
            **{name: "connected" if up else "disconnected" for name, up in connected.items()},
            "parts": parts,
            "last_error": self.last_error,
            "at": self.clock().isoformat(),
        }


async def supervise(
    name: str,
    start: Callable[[], Awaitable[None]],
    *,
    health: Health,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> None:
    """Run a long-lived part; when it fails, log it and start it again after a pause. A part
    that returns has finished its work (e.g. a loop that is switched off)."""
    loop = asyncio.get_running_loop()
    delay = backoff.first_s
    while True:
        health.running(name)
        began = loop.time()
        try:
            await start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health.failed(name, exc)
            if loop.time() - began >= backoff.healthy_s:
                delay = backoff.first_s
            logger.exception("switchboard part %s failed; starting it again in %.1fs", name, delay)
            await asyncio.sleep(delay)
            delay = backoff.next(delay)
            continue
        health.done(name)
        return


async def retry(
    name: str,
    work: Callable[[], Awaitable[None]],
    *,
    health: Health,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> None:
    """Do `work` until it succeeds once (the database may come back any time)."""
    await supervise(name, work, health=health, backoff=backoff)


def publish(path: Path, report: Mapping[str, Any]) -> None:
    """Write the report where the other HTTP workers read it (atomically: no torn reads)."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report), "utf-8")
    tmp.replace(path)


def read_published(path: Path, *, now: datetime, stale_s: float) -> dict[str, Any]:
    """The primary worker's last report, or `down` when it stopped writing it (a dead or hung
    primary worker)."""
    try:
        report: dict[str, Any] = json.loads(path.read_text("utf-8"))
        at = datetime.fromisoformat(report["at"])
    except (OSError, ValueError, KeyError) as exc:
        return {"status": "down", "error": f"no switchboard report ({exc.__class__.__name__})"}
    if (now - at).total_seconds() > stale_s:
        return {
            "status": "down",
            "error": f"the switchboard's worker has not reported since {report['at']}",
        }
    return report
