"""Incident tables (EIDO-shaped): incident, reporters, replies/notes, attachments, timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Mapper, mapped_column

from ioc_core.db import Base, BigId, JSONType, UTCDateTime, new_id, utcnow
from ioc_core.incidents.audit import ACCESS_LOG, GENESIS, access_hash

# Incidents a new report may duplicate. Literal SQL shared by the partial index and the query:
# PostgreSQL only uses a partial index when the query's own text implies its predicate, which
# bound parameters (prepared statements) never do.
DUPLICATE_CANDIDATE_SQL = "phase IN ('open', 'active') AND state <> 'draft'"


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    category_code: Mapped[str] = mapped_column(ForeignKey("categories.code"))
    category_group: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16), default="unknown")
    channel: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8), default="vi")
    state: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str] = mapped_column(String(16))
    track: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str] = mapped_column(String(500), default="")
    area_code: Mapped[str | None] = mapped_column(ForeignKey("areas.code"))
    agency_code: Mapped[str | None] = mapped_column(ForeignKey("agencies.code"))
    primary_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"))
    merged_from_state: Mapped[str | None] = mapped_column(String(16))
    reporter_count: Mapped[int] = mapped_column(Integer, default=1)
    external_ref: Mapped[str | None] = mapped_column(String(100))  # e.g. a call id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # Head of this incident's timeline hash chain: appending needs no extra query, and
    # `ioc audit verify` detects rows cut off the end.
    chain_seq: Mapped[int] = mapped_column(Integer, default=0)
    chain_head: Mapped[str] = mapped_column(String(64), default="0" * 64)

    __table_args__ = (
        Index("ix_incidents_phase_created", "phase", "created_at"),
        Index("ix_incidents_created", "created_at", "id"),  # the default listing order
        # Duplicate look-up: same group, still open, recent, inside a lat/lon box.
        Index(
            "ix_incidents_dup",
            "category_group",
            "lat",
            "lon",
            "created_at",
            postgresql_where=text(DUPLICATE_CANDIDATE_SQL),
            sqlite_where=text(DUPLICATE_CANDIDATE_SQL),
        ),
        Index("ix_incidents_state", "state"),
        Index("ix_incidents_agency", "agency_code", "phase"),
        Index("ix_incidents_area", "area_code"),
        Index("ix_incidents_primary", "primary_id"),
        Index("ix_incidents_due", "due_at"),
    )


class Rating(Base):
    """A reporter's satisfaction with the handling (CH-4), 1-5; rating again replaces it."""

    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("incident_id", "reporter_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    reporter_id: Mapped[str] = mapped_column(ForeignKey("reporters.id"))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reporter(Base):
    """Who reported: one row per report. Confidentiality is per report (RP-3)."""

    __tablename__ = "reporters"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # Indexed: every incoming call looks up the caller's earlier reports by number.
    phone: Mapped[str] = mapped_column(String(32), default="", index=True)
    email: Mapped[str] = mapped_column(String(254), default="")  # RFC 5321 path limit
    channel: Mapped[str] = mapped_column(String(16))
    channel_user_id: Mapped[str] = mapped_column(String(200), default="")
    confidential: Mapped[bool] = mapped_column(Boolean, default=False)
    # The citizen account (token subject) that filed it, for "my reports" (RP-4).
    subject: Mapped[str] = mapped_column(String(200), default="", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Entry(Base):
    """A public reply (visible to the reporter and the public) or an internal note."""

    __tablename__ = "incident_entries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # reply | note
    body: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200))
    author_role: Mapped[str] = mapped_column(String(16))
    agency_code: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(500))  # relative to IOC_DATA_DIR/attachments
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    uploaded_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TimelineEntry(Base):
    """Append-only, hash-chained per incident (see incidents/audit.py)."""

    __tablename__ = "timeline"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    actor_role: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # Digests of the incident's and its reporters' values once this row's change was made
    # (chained with the row): `ioc audit verify` compares them with the stored rows, so a
    # change made in the database directly is found. NULL on rows written before they existed.
    incident_sha256: Mapped[str | None] = mapped_column(String(64))
    reporters_sha256: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("incident_id", "seq", name="uq_timeline_incident_seq"),)


class TrackingCounter(Base):
    __tablename__ = "tracking_counters"

    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigId, default=0)


class AccessLog(Base):
    """Every time staff see a confidential reporter's identity (RP-3)."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    principal: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    incident_id: Mapped[str] = mapped_column(String(36), index=True)
    what: Mapped[str] = mapped_column(String(64))
    # One hash chain over the whole log (audit.chain_access_row, on every ORM insert): its
    # head is in audit_heads. Rows are few next to reports, so one chain does not contend.
    seq: Mapped[int | None] = mapped_column(BigId, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))


class AuditHead(Base):
    """The last link of a global hash chain (the access log's), so rows cut off the end of
    the chain are found."""

    __tablename__ = "audit_heads"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigId, default=0)
    head: Mapped[str] = mapped_column(String(64))


@event.listens_for(AccessLog, "before_insert")
def _chain_access_row(_mapper: Mapper[AccessLog], connection: Connection, row: AccessLog) -> None:
    """Link every access-log row into the log's chain as it is inserted, whichever code
    writes it: the head row is locked (PostgreSQL; SQLite writers are serialised) until the
    writer's transaction ends."""
    heads = cast(Table, AuditHead.__table__)
    found = connection.execute(
        select(heads.c.seq, heads.c.head).where(heads.c.name == ACCESS_LOG).with_for_update()
    ).first()
    if found is None:
        connection.execute(insert(heads).values(name=ACCESS_LOG, seq=0, head=GENESIS))
        seq, prev = 0, GENESIS
    else:
        seq, prev = int(found.seq), str(found.head)
    # The defaults the INSERT would apply, so the hash covers the values stored.
    for col in AccessLog.__table__.c:
        if getattr(row, col.key) is None and col.default is not None and not col.primary_key:
            default: Any = col.default
            setattr(row, col.key, default.arg(None) if default.is_callable else default.arg)
    row.seq, row.prev_hash = seq + 1, prev
    row.hash = access_hash(prev, {c.key: getattr(row, c.key) for c in AccessLog.__table__.c})
    connection.execute(
        update(heads).where(heads.c.name == ACCESS_LOG).values(seq=row.seq, head=row.hash)
    )


class ReportKey(Base):
    """A client's idempotency key for one report: a command repeated with the same key (a
    chat update redelivered after the hub died between filing and marking it seen) returns
    the incident the first one made. Written in the same statement as the incident."""

    __tablename__ = "report_keys"

    # Whose key: a digest of the principal (role, name, subject), so one client's keys can
    # never name another client's report.
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    # A digest of the report's fields: the same key with a different report is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
