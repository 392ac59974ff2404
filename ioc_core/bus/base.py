"""What every bus shares: the event envelope, the handler type, the `Bus` interface, and the
retry back-off both implementations use."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


@dataclass(frozen=True, kw_only=True)
class Event:
    name: str
    payload: Mapping[str, Any]
    correlation_id: str
    version: int = 1
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "name": self.name,
            "occurred_at": self.occurred_at.isoformat(),
            "version": self.version,
            "correlation_id": self.correlation_id,
            "payload": dict(self.payload),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        occurred = datetime.fromisoformat(data["occurred_at"])
        if occurred.tzinfo is None:
            occurred = occurred.replace(tzinfo=UTC)
        return cls(
            name=data["name"],
            payload=data.get("payload") or {},
            correlation_id=data.get("correlation_id", ""),
            version=int(data.get("version", 1)),
            event_id=data["event_id"],
            occurred_at=occurred,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        return cls.from_dict(json.loads(raw))


Handler = Callable[[Event], Awaitable[None]]
# A broadcast tap's listener: (cursor, event), called in publish order; must not block.
Watcher = Callable[[str, Event], None]


class Bus(Protocol):
    """What producers (the outbox relay) and consumers see."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, events: Sequence[Event]) -> None:
        """Publish in order; returns once the bus has them (Redis: XADD acknowledged)."""

    def subscribe(
        self, *, group: str, handler: Handler, names: Collection[str] | None = None
    ) -> None:
        """Every group receives every event (filtered by `names`, None = all) once;
        several processes in the same group share the work. A group subscribed after
        `start()` begins consuming at once (a new Redis group reads the stream from its
        start: consumers must tolerate old events)."""

    async def unsubscribe(self, group: str) -> None:
        """Stop delivering to `group` in this process (a role whose lifetime ends before the
        bus's); a Redis group keeps its place in the stream for the next subscriber."""

    def watch(self, listener: Watcher) -> None:
        """Hand every event published from now on, in order, to `listener` with its cursor,
        in every process (a broadcast tap for live screens: not a consumer group, nothing is
        acknowledged, nothing retried). Redis: the cursor is the stream entry id, the same in
        every process; in process: `<epoch>-<n>`, unknown after a restart."""

    async def health(self) -> Mapping[str, Any]: ...


# Cap on the wait between two deliveries of a failing event: retries back off
# exponentially, but an event should not sit for minutes because it failed a few times.
MAX_RETRY_DELAY_S = 30.0


def retry_delay(base_s: float, deliveries: int) -> float:
    """Exponential back-off after the `deliveries`-th failed delivery."""
    return float(min(base_s * 2 ** max(deliveries - 1, 0), MAX_RETRY_DELAY_S))


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
