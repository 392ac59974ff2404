"""Telephony's own tables: calls, call-back work items and their attempts, agents.

They live in the same database as the core (ADR 0011) but in their own metadata and their own
Alembic branch (`telephony`); the core never reads them. A call points at its draft incident
by tracking code only — the incident store is reached through `ioc_core.api`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ioc_core.db import NAMING, BigId, JSONType, UTCDateTime, utcnow

VERSIONS = Path(__file__).resolve().parent / "migrations"


class TelephonyBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


metadata = TelephonyBase.metadata


class Call(TelephonyBase):
    """One call: a citizen's inbound call, or a call-back the switchboard placed."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_status_arrived", "status", "arrived_at"),
        Index("ix_calls_ani_arrived", "ani", "arrived_at"),
        # One call, one draft: a redelivered `call.answered` can never link a second one.
        Index("uq_calls_incident_code", "incident_code", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Asterisk's linkedid of the caller's channel: stable across queue/agent legs.
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(128), default="")
    direction: Mapped[str] = mapped_column(String(8), default="in")  # in | callback
    ani: Mapped[str] = mapped_column(String(32), default="")
    service: Mapped[str] = mapped_column(String(8))  # 113 | 114 | 115 | 1022
    status: Mapped[str] = mapped_column(String(16))  # see telephony.calls.lifecycle
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    language: Mapped[str] = mapped_column(String(2), default="vi")
    ivr_choices: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    queue: Mapped[str | None] = mapped_column(String(32), nullable=True)
    position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    agent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    recording_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    incident_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Who is making the draft (telephony.switchboard.draft): set before the core is asked, so
    # a second maker waits its turn and one interrupted by a crash is recognised.
    draft_claim: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The caller's recorded description is on the draft (in it, or as a later note).
    draft_described: Mapped[bool] = mapped_column(Boolean, default=False)
    # The report asked of the core for this call's draft, kept before asking: a maker that dies
    # after the core's commit but before the link resends it with the same key, and the core
    # answers with the draft it made (a rebuilt request would differ: it counts that draft).
    draft_request: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    caller_calls: Mapped[int] = mapped_column(Integer, default=0)  # earlier calls, this ANI
    hangup_cause: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The call-back item this outbound call serves (no FK: callbacks already points here).
    callback_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    arrived_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ivr_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What a live tap is hearing now (the latest partial: text, start_s, end_s, engine), for
    # staff through the calls API; cleared when the utterance's final transcript is kept.
    live: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)


class Callback(TelephonyBase):
    """A call-back work item: the switchboard owes this caller a call."""

    __tablename__ = "callbacks"
    __table_args__ = (Index("ix_callbacks_status_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    ani: Mapped[str] = mapped_column(String(32))
    service: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(16))  # abandoned | voicemail | overflow
    status: Mapped[str] = mapped_column(String(16))  # pending | calling | done | failed | ...
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # emergencies first
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    recording_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    transcript: Mapped[str | None] = mapped_column(Text, nullable=True)  # of the message
    assigned_to: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CallbackAttempt(TelephonyBase):
    __tablename__ = "callback_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("callbacks.id"), index=True)
    channel_uid: Mapped[str] = mapped_column(String(64), default="")
    by: Mapped[str] = mapped_column(String(32), default="auto")  # auto | agent extension
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)


class Transcript(TelephonyBase):
    """Every transcript kept with what made it: engine, model, timings, the audio it came from."""

    __tablename__ = "transcripts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    call_uid: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # message | ivr | live
    audio_path: Mapped[str] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(2))
    engine: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text, default="")
    segments: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)  # why there is no text
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RecordCursor(TelephonyBase):
    """How far the hub has read Asterisk's own call records (ADR 0018): a restart goes on from
    there. `name`: which file (cdr); `file_id`: its device:inode (a rotated file is new)."""

    __tablename__ = "record_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    file_id: Mapped[str] = mapped_column(String(64), default="")
    offset: Mapped[int] = mapped_column(BigId, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Agent(TelephonyBase):
    """A call-taker's position: the API's view of Asterisk's queue membership (ADR 0010)."""

    __tablename__ = "agents"

    extension: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), default="logged_out")
    pause_reason: Mapped[str] = mapped_column(String(64), default="")
    queues: Mapped[list[str]] = mapped_column(JSONType, default=list)
    state_since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
