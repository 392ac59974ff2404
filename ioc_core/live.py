"""The live feed's hub (ADR 0029): what the bus's broadcast tap hands over, kept in a ring
for resuming, and offered to every connected screen through its own bounded queue.

Nothing here awaits: `publish` runs inside the bus's tap and must never wait for a browser.
A client that falls behind (its queue is full) loses its queue and is told to resync — it
reloads its state over REST — so a stalled browser costs the others nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ioc_core.access.roles import Principal, Role
from ioc_core.bus import Event

# What each role's screens follow, by event-name prefix. Events carry no reporter identity or
# content (ioc_core.events), so a prefix is the whole rule for staff; an agency sees only
# incidents that name it.
FEEDS: Mapping[Role, tuple[str, ...]] = {
    Role.CALLTAKER: ("call.", "callback.", "agent.", "chat.handoff_", "incident."),
    Role.SUPERVISOR: ("call.", "callback.", "agent.", "chat.handoff_", "incident."),
    Role.LEADER: ("call.", "callback.", "agent.", "chat.handoff_", "incident."),
    Role.ADMIN: ("call.", "callback.", "agent.", "chat.handoff_", "incident."),
    Role.AGENCY: ("incident.",),
}


def may_watch(principal: Principal) -> bool:
    return principal.role in FEEDS


def visible(name: str, payload: Mapping[str, Any], principal: Principal) -> bool:
    """May `principal` see this event on the live feed?"""
    prefixes = FEEDS.get(principal.role, ())
    if not name.startswith(prefixes):
        return False
    if principal.role is Role.AGENCY:
        agencies = payload.get("agencies") or []
        return bool(principal.agency_code) and (
            payload.get("agency_code") == principal.agency_code or principal.agency_code in agencies
        )
    return True


def hello(cursor: str | None) -> str:
    return json.dumps({"type": "hello", "cursor": cursor})


def resync(cursor: str | None) -> str:
    return json.dumps({"type": "resync", "cursor": cursor})


@dataclass(frozen=True)
class _Item:
    cursor: str
    name: str
    payload: Mapping[str, Any]
    message: str  # serialised once, sent to every client as is


@dataclass(eq=False)
class Client:
    """One screen's socket: what is waiting to be sent to it, bounded."""

    principal: Principal
    limit: int
    pending: deque[str] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    resyncs: int = 0
    last_cursor: str | None = None

    def offer(self, item: _Item) -> None:
        if not visible(item.name, item.payload, self.principal):
            return
        self.last_cursor = item.cursor
        if len(self.pending) >= self.limit:
            # Too slow: drop what it has not read and have it reload instead.
            self.pending.clear()
            self.pending.append(resync(item.cursor))
            self.resyncs += 1
        else:
            self.pending.append(item.message)
        self.ready.set()

    def take(self) -> list[str]:
        out = list(self.pending)
        self.pending.clear()
        self.ready.clear()
        return out


class LiveHub:
    def __init__(self, *, buffer: int = 5000, queue: int = 256) -> None:
        self._ring: deque[_Item] = deque(maxlen=buffer)
        self._queue = queue
        self.clients: set[Client] = set()

    @property
    def cursor(self) -> str | None:
        return self._ring[-1].cursor if self._ring else None

    def publish(self, cursor: str, event: Event) -> None:
        """The bus's watcher: called in publish order, never awaits."""
        message = json.dumps(
            {"type": "event", "cursor": cursor, "event": event.to_dict()},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        item = _Item(cursor=cursor, name=event.name, payload=event.payload, message=message)
        self._ring.append(item)
        for client in self.clients:
            client.offer(item)

    def attach(self, principal: Principal, *, after: str | None) -> Client:
        """A new client, with `hello` and then either what it missed since `after` (still in
        the ring) or one `resync` (an unknown or too old cursor). Atomic with `publish`: no
        event can fall between the replay and the live stream."""
        client = Client(principal=principal, limit=self._queue)
        client.pending.append(hello(self.cursor))
        if after:
            index = next((i for i, x in enumerate(self._ring) if x.cursor == after), None)
            missed = [] if index is None else list(self._ring)[index + 1 :]
            mine = [x for x in missed if visible(x.name, x.payload, principal)]
            if index is None or len(mine) > self._queue:
                client.pending.append(resync(self.cursor))
            else:
                client.pending.extend(x.message for x in mine)
        client.ready.set()
        self.clients.add(client)
        return client

    def detach(self, client: Client) -> None:
        self.clients.discard(client)
