"""The bots' own tables (ADR 0011: own metadata, own Alembic branch `bots`; the core never
reads them, and they point at incidents by tracking code only).

- `bot_chats`: one per chat on a channel: who, which language, when they last wrote (Zalo's
  customer-service window counts from it), and their conversation (flow, step, data) with
  the time it expires.
- `bot_seen`: message ids already handled: clouds deliver again when unsure.
- `bot_reports`: which chat reported which incident, so its news reach them there.
- `bot_subscriptions`: areas a chat wants warnings for.
- `bot_outbox`: every message to a citizen, delivered by the sender with rate limits and
  retries; `dead` after the last attempt, with the reason kept.
- `chat_handoffs`: a citizen who asked for a person: a work item for the console, with the
  conversation so far and what was said since.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Float, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ioc_core.db import NAMING, BigId, JSONType, UTCDateTime, utcnow

VERSIONS = Path(__file__).resolve().parent / "migrations"


class BotsBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


metadata = BotsBase.metadata


class Chat(BotsBase):
    __tablename__ = "bot_chats"
    __table_args__ = (UniqueConstraint("channel", "chat_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))  # telegram | zalo | web
    chat_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64), default="")
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(2), default="vi")
    last_inbound_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    flow: Mapped[str | None] = mapped_column(String(32), nullable=True)
    step: Mapped[str | None] = mapped_column(String(32), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Seen(BotsBase):
    __tablename__ = "bot_seen"
    __table_args__ = (Index("ix_bot_seen_at", "at"),)

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatReport(BotsBase):
    __tablename__ = "bot_reports"
    __table_args__ = (Index("ix_bot_reports_incident", "incident_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(36))
    code: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscription(BotsBase):
    __tablename__ = "bot_subscriptions"
    __table_args__ = (Index("ix_bot_subscriptions_chat", "channel", "chat_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    # An area of the catalogue, or a point with a radius (a shared location).
    area_code: Mapped[str] = mapped_column(String(32), index=True, default="")
    area_name: Mapped[str] = mapped_column(String(200), default="")
    lat: Mapped[float | None] = mapped_column(Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(Float, nullable=True)
    radius_km: Mapped[float] = mapped_column(Float, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Outgoing(BotsBase):
    __tablename__ = "bot_outbox"
    __table_args__ = (Index("ix_bot_outbox_due", "status", "next_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    # The reply as the engine made it (text, buttons, ...); the adapter renders it.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    kind: Mapped[str] = mapped_column(String(16), default="reply")  # reply | notice
    status: Mapped[str] = mapped_column(String(8), default="pending")  # pending|sent|dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Handoff(BotsBase):
    __tablename__ = "chat_handoffs"
    __table_args__ = (Index("ix_chat_handoffs_status", "status", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    chat_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(2), default="vi")
    status: Mapped[str] = mapped_column(String(8), default="waiting")  # waiting|active|closed
    agent: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # [{"from": "citizen"|"bot"|"agent", "text": ..., "at": iso}], oldest first.
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
