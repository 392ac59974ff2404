"""The Redis Streams bus: one stream, a consumer group per subscriber group, acknowledgements
after the handler, retries with back-off, XAUTOCLAIM of a dead consumer's entries, and a
dead-letter stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ioc_core.bus.base import Event, Handler, Watcher, error_text, retry_delay

logger = logging.getLogger(__name__)

# Back-off bounds while Redis is unreachable; capped so a recovered Redis is noticed soon.
_RECONNECT_MIN_S = 0.1
_RECONNECT_MAX_S = 10.0
# A consumer idle this long with nothing pending is a dead process that left its name
# behind (names are unique per process), so it is removed from the group.
_DEAD_CONSUMER_IDLE_MS = 3_600_000
_CONSUMER_SWEEP_S = 60.0
# Health is polled by load balancers; an answer after this long is as bad as none.
_HEALTH_TIMEOUT_S = 3.0

_Entry = tuple[str, dict[str, str]]


def _stream_entries(response: Any) -> list[_Entry]:
    """Entries of the single stream in an XREADGROUP reply (RESP2 list or RESP3 dict)."""
    if not response:
        return []
    blocks = response.values() if isinstance(response, dict) else [r[1] for r in response]
    entries: list[_Entry] = []
    for block in blocks:
        # RESP3 wraps the entry list in one more list.
        if block and isinstance(block[0], list):
            block = block[0]
        for entry_id, fields in block:
            if entry_id is not None:
                entries.append((str(entry_id), dict(fields or {})))
    return entries


@dataclass(eq=False)
class _StreamGroup:
    name: str
    handler: Handler
    names: frozenset[str] | None
    # Where to resume reading this consumer's own pending entries; None = read new ones.
    # Starts at "0" so a restarted process (same consumer name) finishes what it had.
    history_from: str | None = "0"
    # When failed entries (left pending) are due for another delivery.
    retry_at: float | None = None
    next_claim: float = 0.0
    claim_cursor: str = "0-0"
    next_sweep: float = 0.0
    ready: bool = False
    task: asyncio.Task[None] | None = None
    # Last handler error per pending entry, so the dead letter says why it died.
    last_errors: dict[str, str] = field(default_factory=dict)


class RedisStreamsBus:
    """Bus on one Redis stream with a consumer group per subscriber group.

    At least once: an entry is acknowledged only after its handler returned, so a crash
    in between means the entry is delivered again (to this consumer's next incarnation or,
    after `claim_idle_ms`, to another consumer of the group via XAUTOCLAIM).
    """

    def __init__(
        self,
        *,
        url: str,
        stream: str = "ioc:events",
        max_deliveries: int = 5,
        claim_idle_ms: int = 30000,
        consumer_name: str | None = None,
        block_ms: int = 1000,
        batch: int = 100,
        maxlen: int = 1_000_000,
        retry_backoff_ms: int = 500,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        if block_ms < 1:
            # BLOCK 0 means "forever" to Redis, and the loop must wake to claim and stop.
            raise ValueError("block_ms must be at least 1")
        self.stream = stream
        self.dead_stream = f"{stream}:dead"
        self.consumer_name = (
            consumer_name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        )
        self._max_deliveries = max_deliveries
        self._claim_idle_ms = claim_idle_ms
        self._claim_every_s = max(claim_idle_ms / 2000, 0.05)
        self._block_ms = block_ms
        self._batch = batch
        self._maxlen = maxlen
        self._retry_backoff_s = retry_backoff_ms / 1000
        self._client: Redis = Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=5,
            # Longer than any blocking read, so only a dead connection trips it.
            socket_timeout=block_ms / 1000 + 10,
            socket_keepalive=True,
            health_check_interval=30,
            # from_url() clients do not retry by default, so the first command on a pooled
            # connection the server dropped (restart, idle timeout) would fail. Retries may
            # repeat an XADD whose reply was lost; consumers are idempotent on event_id.
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
        )
        self._groups: dict[str, _StreamGroup] = {}
        self._watchers: list[Watcher] = []
        self._tail_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._started = False
        self._closed = False

    def subscribe(
        self, *, group: str, handler: Handler, names: Collection[str] | None = None
    ) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        if group in self._groups:
            raise ValueError(f"group {group!r} is already subscribed")
        grp = self._groups[group] = _StreamGroup(
            name=group, handler=handler, names=None if names is None else frozenset(names)
        )
        if self._started:  # a feature's role subscribing once the hub runs: its loop
            # creates the group (retrying while Redis is away).
            grp.ready = False
            grp.task = asyncio.create_task(self._run(grp), name=f"bus:{grp.name}")
            self._tasks.append(grp.task)

    async def unsubscribe(self, group: str) -> None:
        grp = self._groups.pop(group, None)
        if grp is not None and grp.task is not None:
            grp.task.cancel()
            await asyncio.gather(grp.task, return_exceptions=True)
            self._tasks.remove(grp.task)

    def watch(self, listener: Watcher) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        self._watchers.append(listener)
        if self._started:
            self._start_tail()

    def _start_tail(self) -> None:
        if self._tail_task is None and self._watchers:
            self._tail_task = asyncio.create_task(self._tail(), name="bus:tail")
            self._tasks.append(self._tail_task)

    async def _tail(self) -> None:
        """The watchers' plain XREAD (no group, nothing acknowledged) from where the stream
        was when the tap started. After a Redis outage it goes on from the last entry it
        handed out, so the watchers miss nothing the stream still holds."""
        last = "$"
        while not self._stopping.is_set():
            try:
                if last == "$":
                    # Pin the starting point now: "$" again after an error would skip what
                    # was published while Redis was away.
                    last = await self._last_id()
                reply = await self._client.xread(
                    {self.stream: last}, count=500, block=self._block_ms
                )
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                logger.warning("bus: live tap cannot read %s: %s", self.stream, exc)
                await self._pause(self._retry_backoff_s)
                continue
            for entry_id, fields in _stream_entries(reply):
                last = entry_id
                try:
                    event = Event.from_json(fields["event"])
                except (KeyError, ValueError) as exc:
                    logger.warning("bus: live tap skips malformed entry %s: %s", entry_id, exc)
                    continue
                for listener in self._watchers:
                    try:
                        listener(entry_id, event)
                    except Exception:  # a broken screen feed never stops the tap
                        logger.exception("bus: watcher failed on %s", event.name)

    async def _last_id(self) -> str:
        try:
            info = await self._client.xinfo_stream(self.stream)
        except ResponseError:
            return "0-0"  # no stream yet: everything that comes is new
        return str(info["last-generated-id"])

    async def start(self) -> None:
        if self._started:
            return
        if self._closed:
            raise RuntimeError("bus is closed")
        self._started = True
        self._start_tail()
        for grp in self._groups.values():
            # Creating the group here fails fast on a bad URL at boot; if Redis is merely
            # down, the loop keeps trying instead of taking the process down with it.
            try:
                await self._ensure_group(grp)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                logger.warning("bus: cannot create group %s yet: %s", grp.name, exc)
            grp.task = asyncio.create_task(self._run(grp), name=f"bus:{grp.name}")
            self._tasks.append(grp.task)

    async def publish(self, events: Sequence[Event]) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        if not events:
            return
        # One round trip, applied in order and all or nothing: the relay either marks the
        # whole batch sent or retries it (duplicates are absorbed by idempotent consumers).
        async with self._client.pipeline(transaction=True) as pipe:
            for event in events:
                pipe.xadd(
                    self.stream,
                    {"event": event.to_json(), "name": event.name},
                    maxlen=self._maxlen,
                    approximate=True,
                )
            await pipe.execute()

    async def close(self, *, grace_s: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._tasks:
            # Loops notice the flag after the current message or blocking read.
            _, late = await asyncio.wait(self._tasks, timeout=grace_s + self._block_ms / 1000)
            for task in late:
                logger.warning("bus: %s did not stop in time; cancelling", task.get_name())
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    async def health(self) -> Mapping[str, Any]:
        try:
            async with asyncio.timeout(_HEALTH_TIMEOUT_S):
                await self._client.ping()
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.xlen(self.stream)
                    pipe.xlen(self.dead_stream)
                    length, dead = await pipe.execute()
                try:
                    infos = await self._client.xinfo_groups(self.stream)
                except ResponseError:
                    infos = []  # no stream yet: nothing published, no group created
            groups: dict[str, dict[str, Any]] = {
                str(info["name"]): {"pending": int(info["pending"]), "lag": info.get("lag")}
                for info in infos
            }
            return {
                "status": "ok",
                "kind": "redis-streams",
                "stream": self.stream,
                "length": int(length),
                "dead_letters": int(dead),
                "groups": groups,
            }
        except Exception as exc:  # health reports trouble, it never raises it
            return {
                "status": "down",
                "kind": "redis-streams",
                "stream": self.stream,
                "error": error_text(exc),
            }

    # -- consumer loop -------------------------------------------------------------------

    async def _ensure_group(self, grp: _StreamGroup) -> None:
        try:
            # From "0": a group created after events were published still sees them.
            await self._client.xgroup_create(self.stream, grp.name, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        grp.ready = True

    async def _run(self, grp: _StreamGroup) -> None:
        backoff = _RECONNECT_MIN_S
        while not self._stopping.is_set():
            try:
                if not grp.ready:
                    await self._ensure_group(grp)
                await self._step(grp)
                backoff = _RECONNECT_MIN_S
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                logger.warning(
                    "bus: group %s lost Redis (%s); retrying in %.1fs", grp.name, exc, backoff
                )
                # Acks may have been lost with the connection: replay our pending entries.
                grp.history_from = "0"
                await self._pause(backoff)
                backoff = min(backoff * 2, _RECONNECT_MAX_S)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # The stream or group was deleted under us; recreate and start over.
                    logger.warning("bus: group %s vanished; recreating it", grp.name)
                    grp.ready = False
                    grp.history_from = "0"
                else:
                    logger.exception("bus: group %s got a Redis error", grp.name)
                await self._pause(backoff)
                backoff = min(backoff * 2, _RECONNECT_MAX_S)
            except Exception:
                # A bug must not silently stop consumption for the life of the process.
                logger.exception("bus: group %s loop failed; retrying in %.1fs", grp.name, backoff)
                grp.history_from = "0"
                await self._pause(backoff)
                backoff = min(backoff * 2, _RECONNECT_MAX_S)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _step(self, grp: _StreamGroup) -> None:
        now = time.monotonic()
        if now >= grp.next_claim:
            more = await self._claim(grp)
            # A full page means more idle entries may wait; fetch them on the next step.
            grp.next_claim = now if more else now + self._claim_every_s
            if now >= grp.next_sweep:
                grp.next_sweep = now + _CONSUMER_SWEEP_S
                await self._sweep_consumers(grp)
            return
        if grp.history_from is None and grp.retry_at is not None and now >= grp.retry_at:
            grp.history_from = "0"
            grp.retry_at = None
        if grp.history_from is not None:
            response = await self._client.xreadgroup(
                grp.name, self.consumer_name, {self.stream: grp.history_from}, count=self._batch
            )
            entries = _stream_entries(response)
            if not entries:
                grp.history_from = None
                return
            grp.history_from = entries[-1][0]
            await self._process(grp, entries, await self._delivery_counts(grp, entries))
            return
        wake = min(grp.next_claim, grp.retry_at if grp.retry_at is not None else math.inf)
        block = max(1, min(self._block_ms, int((wake - now) * 1000)))
        response = await self._client.xreadgroup(
            grp.name, self.consumer_name, {self.stream: ">"}, count=self._batch, block=block
        )
        await self._process(grp, _stream_entries(response), None)

    async def _claim(self, grp: _StreamGroup) -> bool:
        """Take over entries idle longer than claim_idle_ms (their consumer is presumably
        dead) and handle them. Returns True when there may be more to claim."""
        reply = await self._client.xautoclaim(
            self.stream,
            grp.name,
            self.consumer_name,
            min_idle_time=self._claim_idle_ms,
            start_id=grp.claim_cursor,
            count=self._batch,
        )
        cursor = str(reply[0])
        entries = [(str(i), dict(f or {})) for i, f in reply[1] if i is not None]
        # Entries deleted from the stream (trimming) are dropped from the PEL by Redis.
        grp.claim_cursor = cursor
        if entries:
            logger.info(
                "bus: group %s claimed %d idle entr%s",
                grp.name,
                len(entries),
                "y" if len(entries) == 1 else "ies",
            )
            await self._process(grp, entries, await self._delivery_counts(grp, entries))
        return cursor != "0-0"

    async def _sweep_consumers(self, grp: _StreamGroup) -> None:
        consumers = await self._client.xinfo_consumers(self.stream, grp.name)
        for info in consumers:
            name = str(info["name"])
            if (
                name != self.consumer_name
                and int(info["pending"]) == 0
                and int(info["idle"]) > _DEAD_CONSUMER_IDLE_MS
            ):
                await self._client.xgroup_delconsumer(self.stream, grp.name, name)
                logger.info("bus: group %s removed idle consumer %s", grp.name, name)

    async def _delivery_counts(self, grp: _StreamGroup, entries: list[_Entry]) -> dict[str, int]:
        """times_delivered per entry id (this delivery included). An id missing from the
        result is no longer pending: another consumer acknowledged it meanwhile."""
        async with self._client.pipeline(transaction=False) as pipe:
            for entry_id, _ in entries:
                pipe.xpending_range(self.stream, grp.name, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        counts: dict[str, int] = {}
        for reply in replies:
            for row in reply:
                counts[str(row["message_id"])] = int(row["times_delivered"])
        return counts

    async def _process(
        self, grp: _StreamGroup, entries: list[_Entry], deliveries: dict[str, int] | None
    ) -> None:
        """Handle entries in order. `deliveries` is None for entries read as new (first
        delivery); otherwise it holds the XPENDING counts."""
        skipped: list[str] = []
        try:
            for entry_id, fields in entries:
                if self._stopping.is_set():
                    break  # the rest stays pending and is claimed by a live consumer
                count = 1 if deliveries is None else deliveries.get(entry_id, 0)
                if count == 0:
                    continue
                if not fields:
                    skipped.append(entry_id)  # trimmed from the stream while pending
                    continue
                name = fields.get("name")
                if name is not None and grp.names is not None and name not in grp.names:
                    skipped.append(entry_id)
                    continue
                raw = fields.get("event", "")
                if count > self._max_deliveries:
                    # Delivered that often without an ack or a recorded failure: the
                    # handler probably kills its process. Stop feeding it the entry.
                    reason = grp.last_errors.get(entry_id) or "never acknowledged"
                    await self._dead_letter(grp, entry_id, raw, count, reason)
                    continue
                try:
                    event = Event.from_json(raw)
                except (ValueError, KeyError, TypeError) as exc:
                    # Retrying cannot fix a malformed entry.
                    await self._dead_letter(grp, entry_id, raw, count, error_text(exc))
                    continue
                if grp.names is not None and event.name not in grp.names:
                    skipped.append(entry_id)
                    continue
                try:
                    await grp.handler(event)
                except Exception as exc:
                    await self._failed(grp, entry_id, raw, event, count, exc)
                    continue
                await self._client.xack(self.stream, grp.name, entry_id)
                grp.last_errors.pop(entry_id, None)
        finally:
            if skipped:
                # Not for this group: acknowledge in one call; if that is lost, the entries
                # come back and are skipped again.
                await self._client.xack(self.stream, grp.name, *skipped)

    async def _failed(
        self,
        grp: _StreamGroup,
        entry_id: str,
        raw: str,
        event: Event,
        count: int,
        exc: Exception,
    ) -> None:
        error = error_text(exc)
        if count >= self._max_deliveries:
            await self._dead_letter(grp, entry_id, raw, count, error, exc)
            return
        # Left pending: the entry comes back when this consumer replays its own pending
        # entries after the back-off (or via XAUTOCLAIM if this process dies meanwhile).
        if len(grp.last_errors) > 10_000:
            grp.last_errors.clear()  # entries acknowledged by other consumers linger here
        grp.last_errors[entry_id] = error
        delay = retry_delay(self._retry_backoff_s, count)
        due = time.monotonic() + delay
        grp.retry_at = due if grp.retry_at is None else min(grp.retry_at, due)
        logger.warning(
            "bus: group %s failed %s %s (delivery %d/%d), retrying in %.2fs: %s",
            grp.name,
            event.name,
            event.event_id,
            count,
            self._max_deliveries,
            delay,
            error,
        )

    async def _dead_letter(
        self,
        grp: _StreamGroup,
        entry_id: str,
        raw: str,
        count: int,
        error: str,
        exc: BaseException | None = None,
    ) -> None:
        # Both or neither: an entry acked without its dead letter would be lost.
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.dead_stream,
                {
                    "event": raw,
                    "group": grp.name,
                    "error": error,
                    "deliveries": str(count),
                    "entry_id": entry_id,
                },
                maxlen=self._maxlen,
                approximate=True,
            )
            pipe.xack(self.stream, grp.name, entry_id)
            await pipe.execute()
        grp.last_errors.pop(entry_id, None)
        logger.error(
            "bus: group %s dead-lettered entry %s after %d deliveries: %s",
            grp.name,
            entry_id,
            count,
            error,
            exc_info=exc,
        )
