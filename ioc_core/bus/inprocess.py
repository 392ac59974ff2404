"""The in-process bus of the embedded mode: one asyncio queue and one worker per group."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ioc_core.bus.base import Event, Handler, Watcher, error_text, retry_delay

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _LocalGroup:
    name: str
    handler: Handler
    names: frozenset[str] | None
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    # Events published to this group and not yet finished (queued + the one in hand);
    # tracked by us because asyncio.Queue keeps its own count private.
    unfinished: int = 0
    worker: asyncio.Task[None] | None = None


class InProcessBus:
    """Bus for the embedded mode: one asyncio queue and one worker task per group.

    Events are delivered in publish order within a group; a failing handler blocks its
    group while it is retried, which keeps that order. The queues die with the process, so
    the outbox relay keeps each event's row until `on_handled` listeners hear that every
    group it was queued to has run its handler, and republishes kept rows when it starts.
    An event a group dead-letters is not reported handled: its row stays, for the next start.
    """

    def __init__(self, *, max_deliveries: int = 5, retry_delay_s: float = 0.05) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        self._max_deliveries = max_deliveries
        self.retry_delay_s = retry_delay_s
        self._groups: dict[str, _LocalGroup] = {}
        self._started = False
        self._closed = False
        self.dead_letters: list[tuple[str, Event, str]] = []
        # event_id -> groups that still owe it a successful handling; an id leaves the map
        # when the last one succeeds (then listeners hear of it) or fails for good.
        self._owed: dict[str, int] = {}
        self._failed: set[str] = set()
        self._listeners: list[Callable[[str], None]] = []
        self._watchers: list[Watcher] = []
        # Cursors of this process's events: a new epoch per bus, so a cursor from before a
        # restart is never mistaken for one of now.
        self._epoch = uuid.uuid4().hex[:8]
        self._seq = 0

    def on_handled(self, listener: Callable[[str], None]) -> None:
        """Call `listener(event_id)` once every group an event was queued to handled it."""
        self._listeners.append(listener)

    def _settled(self, event_id: str, *, ok: bool) -> None:
        if not ok:
            self._failed.add(event_id)
        left = self._owed.get(event_id, 1) - 1
        if left > 0:
            self._owed[event_id] = left
            return
        self._owed.pop(event_id, None)
        if event_id in self._failed:
            self._failed.discard(event_id)
            return
        for listener in self._listeners:
            listener(event_id)

    def subscribe(
        self, *, group: str, handler: Handler, names: Collection[str] | None = None
    ) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        if group in self._groups:
            # In process there is one handler per group; a second one would silently
            # split the events between two different pieces of code.
            raise ValueError(f"group {group!r} is already subscribed")
        grp = self._groups[group] = _LocalGroup(
            name=group, handler=handler, names=None if names is None else frozenset(names)
        )
        if self._started:  # a feature's role subscribing once the hub runs
            grp.worker = asyncio.create_task(self._work(grp), name=f"bus:{grp.name}")

    async def start(self) -> None:
        if self._started:
            return
        if self._closed:
            raise RuntimeError("bus is closed")
        self._started = True
        for grp in self._groups.values():
            grp.worker = asyncio.create_task(self._work(grp), name=f"bus:{grp.name}")

    async def unsubscribe(self, group: str) -> None:
        grp = self._groups.pop(group, None)
        if grp is not None and grp.worker is not None:
            grp.worker.cancel()
            await asyncio.gather(grp.worker, return_exceptions=True)

    async def publish(self, events: Sequence[Event]) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        for event in events:
            self._tap(event)
            groups = [
                grp for grp in self._groups.values() if grp.names is None or event.name in grp.names
            ]
            if not groups:
                self._owed[event.event_id] = self._owed.get(event.event_id, 0) + 1
                self._settled(event.event_id, ok=True)  # nobody wants it: nothing to keep
                continue
            self._owed[event.event_id] = self._owed.get(event.event_id, 0) + len(groups)
            for grp in groups:
                grp.unfinished += 1
                grp.queue.put_nowait(event)

    def watch(self, listener: Watcher) -> None:
        self._watchers.append(listener)

    def _tap(self, event: Event) -> None:
        self._seq += 1
        cursor = f"{self._epoch}-{self._seq}"
        for listener in self._watchers:
            try:
                listener(cursor, event)
            except Exception:  # a broken screen feed never stops the bus
                logger.exception("bus: watcher failed on %s", event.name)

    # The explicit timeout is the point: tests must fail fast rather than hang.
    async def wait_idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Return once every group has handled (or dead-lettered) all it was given.

        Raises TimeoutError after `timeout` seconds. Handlers may publish more events,
        so the check repeats until one pass finds every group idle.
        """
        async with asyncio.timeout(timeout):
            while any(grp.unfinished for grp in self._groups.values()):
                for grp in self._groups.values():
                    await grp.queue.join()

    async def close(self, *, grace_s: float = 10.0) -> None:
        if self._closed:
            return
        if self._started:
            # Publishing stays open while draining: handlers may emit follow-up events.
            try:
                await self.wait_idle(grace_s)
            except TimeoutError:
                logger.warning(
                    "bus: closing with %d event(s) unhandled after %.1fs",
                    sum(grp.unfinished for grp in self._groups.values()),
                    grace_s,
                )
        elif any(grp.unfinished for grp in self._groups.values()):
            logger.warning("bus: closed before start(); queued events are dropped")
        self._closed = True
        workers = [grp.worker for grp in self._groups.values() if grp.worker is not None]
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    async def health(self) -> Mapping[str, Any]:
        return {
            "status": "ok",
            "kind": "in-process",
            "groups": {name: {"pending": grp.unfinished} for name, grp in self._groups.items()},
        }

    async def _work(self, grp: _LocalGroup) -> None:
        while True:
            event = await grp.queue.get()
            try:
                # Cancelled mid-way (close, unsubscribe): not settled, so the row stays.
                self._settled(event.event_id, ok=await self._deliver(grp, event))
            finally:
                grp.unfinished -= 1
                grp.queue.task_done()

    async def _deliver(self, grp: _LocalGroup, event: Event) -> bool:
        """True once the handler returned; False when it dead-lettered the event."""
        for attempt in range(1, self._max_deliveries + 1):
            try:
                await grp.handler(event)
                return True
            except Exception as exc:
                if attempt >= self._max_deliveries:
                    self.dead_letters.append((grp.name, event, error_text(exc)))
                    logger.error(
                        "bus: group %s dead-lettered %s %s after %d deliveries: %s",
                        grp.name,
                        event.name,
                        event.event_id,
                        attempt,
                        error_text(exc),
                        exc_info=exc,
                    )
                    return False
                delay = retry_delay(self.retry_delay_s, attempt)
                logger.warning(
                    "bus: group %s failed %s %s (delivery %d/%d), retrying in %.2fs: %s",
                    grp.name,
                    event.name,
                    event.event_id,
                    attempt,
                    self._max_deliveries,
                    delay,
                    error_text(exc),
                )
                await asyncio.sleep(delay)
        return False
