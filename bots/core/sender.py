"""Delivers the queued messages of one channel: in order per chat, at most `chat_rate` per
second to a chat and `global_rate` per second overall (Telegram: about 1/s per chat and 30/s
per bot), waiting as long as the cloud asks (`retry_after`), retrying transient failures
with back-off, and keeping what can never be delivered as dead, with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta

from bots.core.channel import Channel, RetryLater, Undeliverable
from bots.messages import Reply
from bots.store.models import Outgoing
from bots.store.service import BotStore
from ioc_core.db import utcnow

logger = logging.getLogger(__name__)

POLL_S = 0.5  # other processes queue messages too; nobody tells us about theirs
IN_FLIGHT = 8  # sends at once (to different chats)


class Sender:
    def __init__(
        self,
        *,
        channel: Channel,
        store: BotStore,
        chat_rate: float = 1.0,
        global_rate: float = 30.0,
        attempts: int = 5,
    ) -> None:
        self.channel, self.store = channel, store
        self.chat_gap = 1.0 / chat_rate
        self.global_gap = 1.0 / global_rate
        self.attempts = attempts
        self._wake = asyncio.Event()
        self._next_to_chat: dict[str, float] = {}
        self._next_global = 0.0
        self._busy: set[str] = set()
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        # asyncio.timeout, not wait_for: in Python 3.11 wait_for may swallow a cancellation
        # that lands as the event fires, and this loop would then never end (seen in the
        # suite as a hung shutdown); the flag ends it whatever happens to the cancellation.
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self.round()
            except Exception:
                logger.exception("%s sender: round failed", self.channel.name)
                delay = POLL_S
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def round(self) -> float:
        """Start what may go now; returns how long until something else may."""
        now = time.monotonic()
        wait = POLL_S
        held: set[str] = set()
        for item in await self.store.due(self.channel.name):
            chat = item.chat_id
            if chat in self._busy or chat in held:
                held.add(chat)  # keep the chat's order: nothing overtakes a waiting message
                continue
            ready = self._next_to_chat.get(chat, 0.0)
            if ready > now:
                held.add(chat)
                wait = min(wait, ready - now)
                continue
            # The overall rate: space the starts out, never burst past it.
            start = max(now, self._next_global)
            self._next_global = start + self.global_gap
            self._next_to_chat[chat] = start + self.chat_gap
            self._busy.add(chat)
            task = asyncio.create_task(self._send(item, start))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return wait

    async def _send(self, item: Outgoing, start: float) -> None:
        """At `start` (monotonic, the rates' slot), then as soon as one of the IN_FLIGHT
        slots is free. Waiting for the start first: a wait measured from scheduling, taken
        after queueing for a slot, counted the queueing twice and halved the rate under a
        backlog (bench.bots: 15 messages/s where 30/s were allowed)."""
        try:
            if (delay := start - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            async with self._slots:
                await self._deliver(item)
        finally:
            self._busy.discard(item.chat_id)
            self.wake()

    async def _deliver(self, item: Outgoing) -> None:
        name, window = self.channel.name, self.channel.window
        if window is not None:  # one more read per message, only where a window applies
            last = await self.store.last_inbound(name, item.chat_id)
            if last is None or utcnow() - last > window:
                days = window.total_seconds() / 86400
                refused = f"the citizen has not written in the last {days:g} days ({name}'s window)"
                await self.store.failed(item.id, refused, retry_at=None)
                logger.warning("%s: %s to %s not sent: %s", name, item.kind, item.chat_id, refused)
                return
        try:
            await self.channel.send(item.chat_id, Reply.from_json(item.payload))
        except RetryLater as exc:
            self._next_to_chat[item.chat_id] = time.monotonic() + exc.seconds
            await self._again(item, str(exc), exc.seconds)
        except Undeliverable as exc:
            logger.warning(
                "%s: message %d to %s undeliverable: %s", name, item.id, item.chat_id, exc
            )
            await self.store.failed(item.id, str(exc), retry_at=None)
        except Exception as exc:  # network trouble, the cloud's 5xx: try again later
            await self._again(item, f"{type(exc).__name__}: {exc}", 2.0**item.attempts)
        else:
            await self.store.sent(item.id)

    async def _again(self, item: Outgoing, error: str, seconds: float) -> None:
        if item.attempts + 1 >= self.attempts:
            logger.error(
                "%s: message %d to %s dead after %d attempts: %s",
                self.channel.name,
                item.id,
                item.chat_id,
                item.attempts + 1,
                error,
            )
            await self.store.failed(item.id, error, retry_at=None)
            return
        await self.store.failed(
            item.id, error, retry_at=utcnow() + timedelta(seconds=max(seconds, 0.05))
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
