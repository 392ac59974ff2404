"""Transactional outbox and its relay; idempotent-consumer bookkeeping.

A service writes its change and the outbox rows in one transaction, so an event exists if and
only if the change committed. The relay publishes rows in id order. A row is deleted only once
its event is safe elsewhere: on Redis Streams as soon as XADD is acknowledged (the stream keeps
it); on the in-process bus, whose queues die with the process, only after every consumer has
run. Until then the row is marked `published_at`, and a relay that starts republishes marked
rows (a crash between queuing and the consumers). Duplicates are absorbed by consumers, which
dedupe on `event_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, Table, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from ioc_core.bus import Bus, Event, InProcessBus
from ioc_core.db import Base, BigId, JSONType, UTCDateTime, transaction, utcnow

logger = logging.getLogger(__name__)


class OutboxRow(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    event: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # In-process bus only: queued in this process's memory, consumers not all done yet.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ConsumedEvent(Base):
    __tablename__ = "consumed_events"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def outbox_rows(events: Sequence[Event]) -> list[OutboxRow]:
    return [
        OutboxRow(event_id=e.event_id, name=e.name, event=e.to_dict(), created_at=e.occurred_at)
        for e in events
    ]


def add_events(session: AsyncSession, events: Sequence[Event]) -> None:
    """Stage events in the caller's transaction (ORM: written at the flush)."""
    session.add_all(outbox_rows(events))


async def stage_events(session: AsyncSession, events: Sequence[Event]) -> None:
    """Stage events in the caller's transaction with one Core INSERT, now: for hot paths that
    skip the ORM's unit of work."""
    if events:
        await session.execute(
            insert(cast(Table, OutboxRow.__table__)),
            [
                {
                    "event_id": e.event_id,
                    "name": e.name,
                    "event": e.to_dict(),
                    "created_at": e.occurred_at,
                }
                for e in events
            ],
        )


async def first_time(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Mark `event_id` consumed by `consumer` in the caller's transaction.

    True when this is the first delivery: apply the effect in the same transaction. False on a
    redelivery: skip it. Commit makes the mark and the effect durable together.
    """
    ins = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = await session.execute(
        ins(ConsumedEvent)
        .values(consumer=consumer, event_id=event_id, at=utcnow())
        .on_conflict_do_nothing()
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


class Relay:
    """Publishes the outbox to the bus. Woken by `notify()` after commits, else it polls."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        batch: int = 500,
        poll_s: float = 0.5,
        linger_s: float = 0.05,
    ) -> None:
        self._sessions = sessions
        self._bus = bus
        self._batch = batch
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._linger_s = linger_s
        self.published = 0
        # The in-process bus loses its queues with the process: rows stay until the bus says
        # every consumer has run (ADR 0021). Redis Streams keeps what it acknowledged.
        self._tracked = isinstance(bus, InProcessBus)
        self._handled: list[str] = []
        self._reclaim = self._tracked
        if isinstance(bus, InProcessBus):
            bus.on_handled(self._mark_handled)

    def _mark_handled(self, event_id: str) -> None:
        self._handled.append(event_id)
        self._wake.set()

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def close(self, *, grace_s: float = 10.0) -> None:
        """Stop after the current batch, then publish what committed before shutdown.

        A stop flag, not task cancellation: a cancel delivered inside the database driver can
        be absorbed there and leave the loop running (seen under load), which would hang
        shutdown. Cancellation is only the fallback after `grace_s`.
        """
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=grace_s)
            if not done:
                logger.warning("outbox relay did not stop within %.0fs; cancelling", grace_s)
                task.cancel()
                await asyncio.wait({task}, timeout=grace_s)
        await self.drain()

    async def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            try:
                sent = await self.publish_batch()
                backoff = 0.5
                if sent >= self._batch:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)
                self._wake.clear()
                if not self._stopping:
                    # Let a burst of commits gather: one batch instead of one per report.
                    await asyncio.sleep(self._linger_s)
            except Exception:
                logger.exception("outbox relay failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def publish_batch(self) -> int:
        if self._tracked:
            return await self._publish_tracked()
        async with transaction(self._sessions) as session:
            stmt = select(OutboxRow.id, OutboxRow.event).order_by(OutboxRow.id).limit(self._batch)
            if session.get_bind().dialect.name == "postgresql":
                # Several relays (one per process) may run: each takes rows nobody holds.
                stmt = stmt.with_for_update(skip_locked=True)
            rows = (await session.execute(stmt)).all()
            if not rows:
                return 0
            await self._bus.publish([Event.from_dict(r.event) for r in rows])
            # Published rows are deleted, not marked: a DELETE adds no row version and no index
            # entries, an UPDATE both (measured on the hot path). The stream keeps the history.
            await session.execute(delete(OutboxRow).where(OutboxRow.id.in_([r.id for r in rows])))
        self.published += len(rows)
        return len(rows)

    async def _publish_tracked(self) -> int:
        """In-process bus: mark the rows, commit, then queue them; they are deleted once
        handled (`delete_handled`). A crash anywhere in between leaves them to the next start.
        """
        if self._reclaim:
            await self._reclaim_marked()
        await self.delete_handled()
        async with transaction(self._sessions) as session:
            stmt = (
                select(OutboxRow.id, OutboxRow.event)
                .where(OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.id)
                .limit(self._batch)
            )
            if session.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = (await session.execute(stmt)).all()
            if not rows:
                return 0
            await session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_([r.id for r in rows]))
                .values(published_at=utcnow())
            )
        # Queued only once the mark committed: the rows are then never deleted unhandled.
        await self._bus.publish([Event.from_dict(r.event) for r in rows])
        self.published += len(rows)
        return len(rows)

    async def _reclaim_marked(self) -> None:
        """Unmark rows a previous process queued in memory and died before its consumers ran
        (the in-process bus serves one process, so no live relay holds them)."""
        async with transaction(self._sessions) as session:
            result = await session.execute(
                update(OutboxRow)
                .where(OutboxRow.published_at.is_not(None))
                .values(published_at=None)
            )
        self._reclaim = False
        redelivered = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if redelivered:
            logger.warning(
                "outbox: %d event(s) queued before a crash are delivered again", redelivered
            )

    async def delete_handled(self) -> None:
        """Delete the rows of events every in-process consumer has finished."""
        while self._handled:
            chunk, self._handled = self._handled[: self._batch], self._handled[self._batch :]
            try:
                async with transaction(self._sessions) as session:
                    await session.execute(delete(OutboxRow).where(OutboxRow.event_id.in_(chunk)))
            except BaseException:
                self._handled[:0] = chunk  # try again next time; a crash only redelivers
                raise

    async def drain(self) -> None:
        while await self.publish_batch():
            pass

    async def backlog(self) -> int:
        async with self._sessions() as session:
            n = await session.scalar(select(func.count()).select_from(OutboxRow))
        return int(n or 0)
