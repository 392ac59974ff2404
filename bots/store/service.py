"""The bots' records: conversations, seen messages, who reported what, subscriptions, the
outgoing queue and hand-offs. The only place in `bots/` with transactions."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DataError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bots.messages import Conversation, Inbound, Reply
from bots.store.models import Chat, ChatReport, Handoff, Outgoing, Seen, Subscription
from ioc_core import events as ev
from ioc_core.bus import Event
from ioc_core.db import transaction, utcnow
from ioc_core.outbox import add_events

SEEN_KEEP = timedelta(days=2)  # clouds redeliver within hours (Telegram keeps 24 h)
HISTORY = 20  # messages kept in a hand-off item before the agent joins, and after


def refused_by_database(exc: BaseException) -> bool:
    """The database (or its driver) would not take a value: PostgreSQL's data exceptions
    (class 22: NUL or bad UTF-8 in text, a string too long for its column), or a string the
    driver cannot encode. Not a failure of the database itself."""
    if isinstance(exc, DataError):
        return True
    if not isinstance(exc, StatementError):
        return False
    # asyncpg's errors reach SQLAlchemy as a plain DBAPIError carrying the SQLSTATE.
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    return sqlstate.startswith("22") or isinstance(exc.orig, UnicodeError)


def _handoff_event(name: str, item: Handoff) -> Event:
    """A hand-off's facts for the staff screens: never the citizen's name or words."""
    return Event(
        name=name,
        payload={
            "handoff_id": item.id,
            "channel": item.channel,
            "status": item.status,
            "urgent": bool(item.urgent),
            "agent": item.agent or "",
        },
        correlation_id=f"chat:{item.channel}:{item.chat_id}",
    )


@dataclass(frozen=True)
class Turn:
    """A chat as a turn begins: its conversation, and whether this message was handled."""

    chat_id: int
    conversation: Conversation
    duplicate: bool


@dataclass(frozen=True)
class Recipient:
    channel: str
    chat_id: str
    language: str


class BotStore:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        uploads: Path,
        ttl_s: int = 1800,
        on_queued: Any = None,
        on_event: Any = None,
    ) -> None:
        self.sessions = sessions
        self.uploads = uploads
        self.ttl_s = ttl_s
        self._on_queued = on_queued or (lambda: None)
        self._on_event = on_event or (lambda: None)  # wakes the core's outbox relay

    # ------------------------------------------------------------------ turns

    async def begin(self, msg: Inbound) -> Turn:
        """The chat and its conversation, only read: the turn's one write is `finish` (a
        chat seen for the first time is made here). An expired flow is cleared and marked, a
        message already handled is flagged."""
        now = utcnow()
        async with self.sessions() as s:
            seen = await s.get(Seen, (msg.channel, msg.message_id))
            chat = await self._chat(s, msg.channel, msg.chat_id)
        if chat is None:
            chat = await self._new_chat(msg)
        conv = Conversation(
            flow=chat.flow, step=chat.step, data=dict(chat.data or {}), language=chat.language
        )
        if chat.flow and chat.expires_at is not None and chat.expires_at < now:
            conv.end()
            conv.expired = True
        return Turn(chat.id, conv, duplicate=seen is not None)

    async def _new_chat(self, msg: Inbound) -> Chat:
        chat = Chat(
            channel=msg.channel,
            chat_id=msg.chat_id,
            user_id=msg.user_id,
            name=msg.name[:200],
            language=msg.language,
            data={},
        )
        try:
            async with transaction(self.sessions) as s:
                s.add(chat)
            return chat
        except IntegrityError:  # made meanwhile by another worker's turn
            async with self.sessions() as s:
                made = await self._chat(s, msg.channel, msg.chat_id)
            assert made is not None
            return made

    async def finish(
        self, turn: Turn, msg: Inbound, replies: Sequence[Reply], *, timeout_s: int | None
    ) -> None:
        """One transaction: the conversation moved on, the message marked handled, the
        replies queued for the sender."""
        now = utcnow()
        conv = turn.conversation
        async with transaction(self.sessions) as s:
            await s.execute(
                update(Chat)
                .where(Chat.id == turn.chat_id)
                .values(
                    last_inbound_at=now,
                    flow=conv.flow,
                    step=conv.step,
                    data=conv.data if conv.flow else {},
                    language=conv.language,
                    expires_at=now + timedelta(seconds=timeout_s or self.ttl_s)
                    if conv.flow
                    else None,
                )
            )
            s.add(Seen(channel=msg.channel, message_id=msg.message_id, at=now))
            self._queue(s, msg.channel, msg.chat_id, replies, now=now)
            logged = conv.flow == "handoff" and bool(replies)
            if logged:
                bot = [{"from": "bot", "text": r.text} for r in replies]
                logged = await self._log_handoff(s, msg, bot)
        self._on_queued()
        if logged:
            self._on_event()

    def _queue(
        self,
        s: AsyncSession,
        channel: str,
        chat_id: str,
        replies: Sequence[Reply],
        *,
        now: datetime,
        kind: str = "reply",
    ) -> None:
        s.add_all(
            Outgoing(channel=channel, chat_id=chat_id, payload=r.as_json(), kind=kind, next_at=now)
            for r in replies
        )

    async def queue(
        self, channel: str, chat_id: str, replies: Sequence[Reply], *, kind: str
    ) -> None:
        async with transaction(self.sessions) as s:
            self._queue(s, channel, chat_id, replies, now=utcnow(), kind=kind)
        self._on_queued()

    async def queue_notices(
        self, event_id: str, notices: Mapping[Recipient, Sequence[Reply]]
    ) -> bool:
        """Notices for one bus event, queued once: the event id is recorded with them, so a
        redelivered event adds nothing. False when it had been handled already."""
        now = utcnow()
        try:
            async with transaction(self.sessions) as s:
                s.add(Seen(channel="bus", message_id=event_id[:64], at=now))
                await s.flush()
                for r, replies in notices.items():
                    self._queue(s, r.channel, r.chat_id, replies, now=now, kind="notice")
        except IntegrityError:
            return False
        self._on_queued()
        return True

    async def _chat(self, s: AsyncSession, channel: str, chat_id: str) -> Chat | None:
        row: Chat | None = (
            await s.scalars(select(Chat).where(Chat.channel == channel, Chat.chat_id == chat_id))
        ).first()
        return row

    async def last_inbound(self, channel: str, chat_id: str) -> datetime | None:
        async with self.sessions() as s:
            chat = await self._chat(s, channel, chat_id)
            return chat.last_inbound_at if chat else None

    async def forget_seen(self) -> int:
        async with transaction(self.sessions) as s:
            result = await s.execute(delete(Seen).where(Seen.at < utcnow() - SEEN_KEEP))
            return int(getattr(result, "rowcount", 0) or 0)

    # ------------------------------------------------------------------ reports

    async def remember_report(self, incident_id: str, code: str, msg: Inbound) -> None:
        """Once per chat and incident: a message handled again after a crash files the same
        report again (its idempotency key), and must not list it twice."""
        async with transaction(self.sessions) as s:
            known = await s.scalar(
                select(ChatReport.id).where(
                    ChatReport.incident_id == incident_id,
                    ChatReport.channel == msg.channel,
                    ChatReport.chat_id == msg.chat_id,
                )
            )
            if known is not None:
                return
            s.add(
                ChatReport(
                    incident_id=incident_id, code=code, channel=msg.channel, chat_id=msg.chat_id
                )
            )

    async def reports_of(self, channel: str, chat_id: str) -> list[str]:
        """The chat's reports, newest first."""
        async with self.sessions() as s:
            rows = await s.scalars(
                select(ChatReport.code)
                .where(ChatReport.channel == channel, ChatReport.chat_id == chat_id)
                .order_by(ChatReport.id.desc())
            )
            return list(rows.all())

    async def recipients(self, incident_ids: Sequence[str]) -> list[Recipient]:
        """Chats that reported any of these incidents (a primary and its duplicates)."""
        async with self.sessions() as s:
            rows = (
                await s.execute(
                    select(ChatReport.channel, ChatReport.chat_id, Chat.language)
                    .join(
                        Chat,
                        (Chat.channel == ChatReport.channel) & (Chat.chat_id == ChatReport.chat_id),
                    )
                    .where(ChatReport.incident_id.in_(incident_ids))
                    .distinct()
                )
            ).all()
        return [Recipient(c, i, lang) for c, i, lang in rows]

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(
        self,
        msg: Inbound,
        *,
        area_code: str = "",
        area_name: str = "",
        lat: float | None = None,
        lon: float | None = None,
        radius_km: float = 0,
    ) -> None:
        async with transaction(self.sessions) as s:
            same = select(Subscription).where(
                Subscription.channel == msg.channel,
                Subscription.chat_id == msg.chat_id,
                Subscription.area_code == area_code,
            )
            if area_code and (await s.scalars(same)).first():
                return
            s.add(
                Subscription(
                    channel=msg.channel,
                    chat_id=msg.chat_id,
                    area_code=area_code,
                    area_name=area_name,
                    lat=lat,
                    lon=lon,
                    radius_km=radius_km,
                )
            )

    async def subscriptions(self, channel: str, chat_id: str) -> list[Subscription]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(Subscription).where(
                    Subscription.channel == channel, Subscription.chat_id == chat_id
                )
            )
            return list(rows.all())

    # ------------------------------------------------------------------ photos

    def _photo_path(self, msg: Inbound, data: bytes) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", f"{msg.channel}-{msg.chat_id}")[:80]
        digest = hashlib.sha256(data).hexdigest()[:16]
        return self.uploads / safe / f"{digest}.img"

    async def save_photo(self, msg: Inbound, data: bytes) -> str:
        """A photo kept until its report is sent (or dropped): outside the database, as the
        core keeps attachments."""
        path = self._photo_path(msg, data)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        await asyncio.to_thread(write)
        return str(path)

    def _upload(self, path: str) -> Path:
        """Only files under the uploads folder: the path comes back from stored chat data."""
        p = Path(path).resolve()
        if self.uploads.resolve() not in p.parents:
            raise ValueError(f"{path} is not an upload")
        return p

    async def read_photo(self, path: str) -> bytes:
        return await asyncio.to_thread(lambda: self._upload(path).read_bytes())

    async def drop_photos(self, paths: list[str]) -> None:
        def drop() -> None:
            for p in paths:
                self._upload(p).unlink(missing_ok=True)

        await asyncio.to_thread(drop)

    # ------------------------------------------------------------------ hand-offs

    async def open_handoff(self, msg: Inbound, *, urgent: bool, context: list[str]) -> int:
        """A waiting work item for the console (CH-7), unless the chat already has one."""
        now = utcnow().isoformat()
        async with transaction(self.sessions) as s:
            item = await self._open_item(s, msg.channel, msg.chat_id)
            if item is None:
                item = Handoff(
                    channel=msg.channel,
                    chat_id=msg.chat_id,
                    name=msg.name[:200],
                    language=msg.language,
                    urgent=urgent,
                    messages=[{"from": "citizen", "text": t, "at": now} for t in context],
                )
                s.add(item)
                await s.flush()
                add_events(s, [_handoff_event(ev.CHAT_HANDOFF_OPENED, item)])
                opened = True
            else:
                opened = False
            item_id = item.id
        if opened:
            self._on_event()
        return item_id

    async def _open_item(self, s: AsyncSession, channel: str, chat_id: str) -> Handoff | None:
        row: Handoff | None = (
            await s.scalars(
                select(Handoff).where(
                    Handoff.channel == channel,
                    Handoff.chat_id == chat_id,
                    Handoff.status.in_(("waiting", "active")),
                )
            )
        ).first()
        return row

    async def _log_handoff(
        self, s: AsyncSession, msg: Inbound, lines: list[dict[str, Any]]
    ) -> bool:
        """Lines onto the chat's open work item (and a fact for the screens, without them)."""
        item = await self._open_item(s, msg.channel, msg.chat_id)
        if item is None:
            return False
        now = utcnow().isoformat()
        item.messages = [*item.messages, *({**line, "at": now} for line in lines)][-HISTORY * 5 :]
        add_events(s, [_handoff_event(ev.CHAT_HANDOFF_UPDATED, item)])
        return True

    async def relay_to_agent(self, msg: Inbound) -> bool:
        """What the citizen sent goes onto their work item; False when none is open."""
        text = msg.text or {
            "photo": "[ảnh / photo]",
            "location": f"[vị trí / location] {msg.lat}, {msg.lon}",
        }.get(msg.kind, "")
        async with transaction(self.sessions) as s:
            logged = await self._log_handoff(s, msg, [{"from": "citizen", "text": text}])
        if logged:
            self._on_event()
        return logged

    async def handoffs(self, status: Sequence[str] = ("waiting", "active")) -> list[Handoff]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(Handoff)
                .where(Handoff.status.in_(status))
                .order_by(Handoff.urgent.desc(), Handoff.created_at)
            )
            return list(rows.all())

    async def handoff(self, item_id: int) -> Handoff | None:
        async with self.sessions() as s:
            return await s.get(Handoff, item_id)

    async def agent_acts(
        self, item_id: int, agent: str, action: str, text: str, replies: Sequence[Reply]
    ) -> Handoff | None:
        """claim | message | close, by `agent`; `replies` go to the citizen in the same
        transaction. None when there is no such open item."""
        now = utcnow()
        async with transaction(self.sessions) as s:
            item = await s.get(Handoff, item_id, with_for_update=True)
            if item is None or item.status == "closed":
                return None
            if action == "claim":
                item.status, item.agent, item.claimed_at = "active", agent, now
            elif action == "close":
                item.status, item.closed_at = "closed", now
                await s.execute(
                    update(Chat)
                    .where(
                        Chat.channel == item.channel,
                        Chat.chat_id == item.chat_id,
                        Chat.flow == "handoff",
                    )
                    .values(flow=None, step=None, data={}, expires_at=None)
                )
            entry = {"from": "agent", "agent": agent, "text": text, "at": now.isoformat()}
            if text:
                item.messages = [*item.messages, entry]
            self._queue(s, item.channel, item.chat_id, replies, now=now, kind="agent")
            add_events(s, [_handoff_event(ev.CHAT_HANDOFF_UPDATED, item)])
            await s.flush()
            s.expunge(item)
        self._on_queued()
        self._on_event()
        return item

    # ------------------------------------------------------------------ outgoing

    async def due(
        self, channel: str, *, chat_id: str | None = None, limit: int = 100
    ) -> list[Outgoing]:
        stmt = select(Outgoing).where(
            Outgoing.channel == channel,
            Outgoing.status == "pending",
            Outgoing.next_at <= utcnow(),
        )
        if chat_id is not None:
            stmt = stmt.where(Outgoing.chat_id == chat_id)
        async with self.sessions() as s:
            rows = await s.scalars(stmt.order_by(Outgoing.id).limit(limit))
            return list(rows.all())

    async def sent(self, item_id: int) -> None:
        async with transaction(self.sessions) as s:
            await s.execute(
                update(Outgoing)
                .where(Outgoing.id == item_id)
                .values(status="sent", sent_at=utcnow(), attempts=Outgoing.attempts + 1)
            )

    async def failed(self, item_id: int, error: str, *, retry_at: datetime | None) -> None:
        """Try again at `retry_at`, or never (dead letter, with the reason)."""
        async with transaction(self.sessions) as s:
            await s.execute(
                update(Outgoing)
                .where(Outgoing.id == item_id)
                .values(
                    status="pending" if retry_at else "dead",
                    next_at=retry_at or utcnow(),
                    attempts=Outgoing.attempts + 1,
                    error=error[:2000],
                )
            )

    async def outgoing(self, channel: str, chat_id: str) -> list[Outgoing]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(Outgoing)
                .where(Outgoing.channel == channel, Outgoing.chat_id == chat_id)
                .order_by(Outgoing.id)
            )
            return list(rows.all())
