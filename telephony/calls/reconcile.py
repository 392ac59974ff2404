"""Reconciling the calls table from Asterisk's own call records (ADR 0018).

Asterisk writes a record of every call as it ends, whether the hub is up or not
(`telephony.asterisk.cdr`). At start and then periodically the hub reads the records written
since its cursor (kept in the database, so a restart goes on where it stopped) and, for each
citizen's call it has no ended record of, applies the facts the record proves through the
calls service: an abandoned call gets its call-back item exactly as on the live path, late
but certain. Everything is keyed on Asterisk's uniqueid, the live path's call id: a call the
live path recorded is never counted twice, and reading a record again changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core.db import transaction, utcnow
from telephony.asterisk.cdr import CallRecord, Cursor, Verdict, merge, read_new
from telephony.calls.lifecycle import Fact, Status
from telephony.calls.models import Call, RecordCursor
from telephony.calls.service import CallStore
from telephony.settings import SwitchboardSettings

logger = logging.getLogger(__name__)

CURSOR: Final = "cdr"  # record_cursors.name of Asterisk's call records
HANGUP_CAUSE: Final = "from Asterisk's call record"


@dataclass(frozen=True, kw_only=True)
class Step:
    """One fact to apply, with the time it happened."""

    fact: Fact
    at: datetime
    info: dict[str, Any]


def steps(record: CallRecord) -> list[Step]:
    """The facts a record proves, in order (pure: the table-driven unit tests' subject)."""
    end = record.end
    verdict = record.verdict
    if verdict is Verdict.ANSWERED:
        # The agent's answer time is not in the record (answer is the dialplan's Answer()):
        # the call is known answered and ended; no call-back is owed.
        return [Step(fact=Fact.ANSWERED, at=end, info={}), _hangup(end)]
    if verdict is Verdict.RECORDED:
        # The dialplan recorded the message itself (overflow without the app).
        path = f"recording/ioc-msg/{record.uid}.wav"
        return [Step(fact=Fact.RECORDED, at=end, info={"recording_path": path}), _hangup(end)]
    return [Step(fact=Fact.ABANDONED, at=end, info={"hangup_cause": HANGUP_CAUSE})]


def _hangup(at: datetime) -> Step:
    return Step(fact=Fact.HANGUP, at=at, info={"hangup_cause": HANGUP_CAUSE})


class Reconciler:
    def __init__(
        self,
        *,
        store: CallStore,
        sessions: async_sessionmaker[AsyncSession],
        settings: SwitchboardSettings,
        path: Path,
        interval_s: float = 5.0,
        settle_s: float = 3.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`settle_s`: a record younger than this waits for the next round, so the live path
        (a few hundred ms behind Asterisk) records the call first whenever it is up."""
        self._store = store
        self._sessions = sessions
        self._settings = settings
        self.path = path
        self._interval_s = interval_s
        self._settle = timedelta(seconds=settle_s)
        self._clock = clock
        self._at: Cursor | None = None  # the cursor as last saved

    async def run(self) -> None:
        """At start, then every `interval_s`; a failing round is retried, never fatal."""
        while True:
            try:
                await self.once()
            except Exception:
                logger.exception("reconciling from %s failed; retrying", self.path)
            await asyncio.sleep(self._interval_s)

    async def once(self) -> int:
        """Read the records since the cursor and apply them; returns how many calls changed."""
        # The stored cursor is read once; after that this reconciler is its only writer.
        cursor = self._at = self._at or await self._cursor()
        lines, end = await asyncio.to_thread(read_new, self.path, cursor)
        if not lines and end == cursor:
            return 0
        # A call's records are written together when it ends; one younger than `settle_s`
        # holds back its call, and every call written after it, for the next round.
        settled_before = self._clock() - self._settle
        young = {x.record.uid for x in lines if x.record.end > settled_before}
        cut = min((x.start_offset for x in lines if x.record.uid in young), default=None)
        done = end if cut is None else Cursor(file_id=end.file_id, offset=cut)
        calls: dict[str, list[CallRecord]] = {}
        for x in lines:
            if cut is None or x.start_offset < cut:
                calls.setdefault(x.record.uid, []).append(x.record)
        known = await self._ended(set(calls))
        changed = 0
        for uid, records in calls.items():
            if uid in known:
                continue  # the live path has it (or an earlier round did)
            if await self._apply(merge(records)):
                changed += 1
        if done != cursor:  # a young record holding the whole read back moves nothing
            await self._save(done)
        self._at = done
        if changed:
            logger.info("reconciled %d call(s) from Asterisk's call records", changed)
        return changed

    async def _apply(self, record: CallRecord) -> bool:
        service = self._settings.service(record.service)
        first: dict[str, Any] = {"arrived_at": record.start}
        if service is not None and record.last_app == "Queue":
            first["queue"] = service.queue
        changed = False
        for n, step in enumerate(steps(record)):
            done = await self._store.record(
                record.uid,
                step.fact,
                ani=record.ani,
                service=record.service,
                channel="",
                at=step.at,
                **(first if n == 0 else {}),
                **step.info,
            )
            changed = changed or bool(done)
        return changed

    async def _ended(self, uids: set[str]) -> set[str]:
        if not uids:
            return set()
        async with self._sessions() as s:
            rows = await s.scalars(
                select(Call.uid).where(Call.uid.in_(list(uids)), Call.status == Status.ENDED.value)
            )
            return set(rows.all())

    async def _cursor(self) -> Cursor:
        async with self._sessions() as s:
            row = await s.get(RecordCursor, CURSOR)
            return Cursor(file_id=row.file_id, offset=row.offset) if row else Cursor()

    async def _save(self, cursor: Cursor) -> None:
        async with transaction(self._sessions) as s:
            row = await s.get(RecordCursor, CURSOR, with_for_update=True)
            if row is None:
                s.add(
                    RecordCursor(
                        name=CURSOR,
                        file_id=cursor.file_id,
                        offset=cursor.offset,
                        updated_at=self._clock(),
                    )
                )
            else:
                row.file_id, row.offset, row.updated_at = (
                    cursor.file_id,
                    cursor.offset,
                    self._clock(),
                )


@contextlib.asynccontextmanager
async def reconciling(reconciler: Reconciler) -> AsyncIterator[Reconciler]:
    """Run `reconciler` for the lifetime of the block (the role's one-line hook)."""
    task = asyncio.create_task(reconciler.run())
    try:
        yield reconciler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
