"""Incident queries: one incident with what belongs to it, several by reference, a page of a
listing (keyset pagination), the timeline, and the rendering that logs confidential views."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ioc_core.access.roles import VISIBILITY, Principal, Role, Scope
from ioc_core.errors import Forbidden, NotFound, ValidationFailed
from ioc_core.incidents import views
from ioc_core.incidents.access_log import log_confidential_access, log_contact_search
from ioc_core.incidents.common import OPEN_PHASES, Detail, check_scope, load_incident
from ioc_core.incidents.lifecycle import State
from ioc_core.incidents.models import Attachment, Entry, Incident, Rating, Reporter, TimelineEntry

if TYPE_CHECKING:
    from ioc_core.runtime import Core


async def _owned(s: AsyncSession, model: type[_Owned], incident_id: str) -> list[_Owned]:
    """An incident's reporters, entries or photos, oldest first."""
    stmt = select(model).where(model.incident_id == incident_id).order_by(model.created_at)
    return list((await s.scalars(stmt)).all())


_Owned = TypeVar("_Owned", Reporter, Entry, Attachment)


async def get_detail(core: Core, ref: str, *, principal: Principal) -> Detail:
    async with core.sessions() as s:
        inc = await load_incident(s, ref)
        check_scope(inc, principal)
        reporters = await _owned(s, Reporter, inc.id)
        entries = await _owned(s, Entry, inc.id)
        attachments = await _owned(s, Attachment, inc.id)
        dups = list(
            (
                await s.scalars(
                    select(Incident)
                    .where(Incident.primary_id == inc.id)
                    .order_by(Incident.created_at)
                )
            ).all()
        )
        primary = await s.get(Incident, inc.primary_id) if inc.primary_id else None
        scores = list(
            (await s.scalars(select(Rating.score).where(Rating.incident_id == inc.id))).all()
        )
        own = (
            any(r.subject and r.subject == principal.subject for r in reporters)
            if principal.role is Role.CITIZEN
            else False
        )
    return Detail(inc, reporters, entries, attachments, dups, primary, own, scores)


async def get_many(core: Core, refs: Sequence[str], *, principal: Principal) -> list[Incident]:
    """Incidents by id or tracking code, in the order asked, leaving out those `principal`
    may not see (as `get_detail` would answer 404): one query however many are asked."""
    if not refs:
        return []
    async with core.sessions() as s:
        rows = (
            await s.scalars(
                select(Incident).where(or_(Incident.code.in_(refs), Incident.id.in_(refs)))
            )
        ).all()
    by_ref: dict[str, Incident] = {}
    for inc in rows:
        try:
            check_scope(inc, principal)
        except NotFound:
            continue
        by_ref[inc.code] = by_ref[inc.id] = inc
    return [by_ref[r] for r in refs if r in by_ref]


@dataclass(frozen=True, kw_only=True)
class PublicExtras:
    """What a public listing (Open311) shows of an incident beyond its own row."""

    last_reply: str | None = None
    first_attachment_id: str | None = None
    primary: Incident | None = None  # the incident a merged duplicate follows


async def public_extras(core: Core, incs: Sequence[Incident]) -> dict[str, PublicExtras]:
    """Replies, photos and primaries of a whole page in three queries, whatever its size
    (one detail per incident cost about seven queries each)."""
    ids = [i.id for i in incs]
    if not ids:
        return {}
    replies: dict[str, str] = {}
    photos: dict[str, str] = {}
    async with core.sessions() as s:
        for incident_id, body in (
            await s.execute(
                select(Entry.incident_id, Entry.body)
                .where(Entry.incident_id.in_(ids), Entry.kind == "reply")
                .order_by(Entry.created_at, Entry.id)
            )
        ).all():
            replies[incident_id] = body  # oldest first: the last one stays
        for incident_id, attachment_id in (
            await s.execute(
                select(Attachment.incident_id, Attachment.id)
                .where(Attachment.incident_id.in_(ids))
                .order_by(Attachment.created_at.desc(), Attachment.id.desc())
            )
        ).all():
            photos[incident_id] = attachment_id  # newest first: the first one stays
        primary_ids = {i.primary_id for i in incs if i.primary_id}
        primaries = (
            {
                p.id: p
                for p in (
                    await s.scalars(select(Incident).where(Incident.id.in_(primary_ids)))
                ).all()
            }
            if primary_ids
            else {}
        )
    return {
        i.id: PublicExtras(
            last_reply=replies.get(i.id),
            first_attachment_id=photos.get(i.id),
            primary=primaries.get(i.primary_id) if i.primary_id else None,
        )
        for i in incs
    }


async def render(core: Core, d: Detail, *, principal: Principal) -> dict[str, Any]:
    """The incident as `principal` may see it; staff seeing a confidential reporter is logged."""
    out = views.render_detail(
        incident=d.incident,
        reporters=d.reporters,
        entries=d.entries,
        attachments=d.attachments,
        duplicates=d.duplicates,
        primary=d.primary,
        own=d.own,
        principal=principal,
        scores=d.scores,
        now=core.clock(),
    )
    await log_confidential_access(core, out.revealed, principal=principal, what="incident")
    body: dict[str, Any] = out.body
    return body


async def reporters_to_notify(core: Core, ref: str) -> list[Reporter]:
    """Reporters of an incident and of every duplicate merged into it (RP-8, RP-9)."""
    async with core.sessions() as s:
        inc = await load_incident(s, ref)
        ids = [
            inc.id,
            *(await s.scalars(select(Incident.id).where(Incident.primary_id == inc.id))).all(),
        ]
        return list(
            (
                await s.scalars(
                    select(Reporter)
                    .where(Reporter.incident_id.in_(ids))
                    .order_by(Reporter.created_at)
                )
            ).all()
        )


async def get_attachment(
    core: Core, ref: str, attachment_id: str, *, principal: Principal
) -> Attachment:
    async with core.sessions() as s:
        inc = await load_incident(s, ref)
        check_scope(inc, principal)
        att = await s.get(Attachment, attachment_id)
        if att is None or att.incident_id != inc.id:
            raise NotFound("no such attachment", error_id="attachment-not-found")
        return att


async def render_timeline(core: Core, ref: str, *, principal: Principal) -> list[dict[str, Any]]:
    """The timeline as `principal` may see it; values of a confidential reporter's changes
    shown to the viewer are logged like any other view of that reporter (RP-3)."""
    rows = await get_timeline(core, ref, principal=principal)
    out = views.render_timeline_audited(rows, principal)
    await log_confidential_access(core, out.revealed, principal=principal, what="timeline")
    body: list[dict[str, Any]] = out.body
    return body


async def get_timeline(core: Core, ref: str, *, principal: Principal) -> list[TimelineEntry]:
    async with core.sessions() as s:
        inc = await load_incident(s, ref)
        check_scope(inc, principal)
        return list(
            (
                await s.scalars(
                    select(TimelineEntry)
                    .where(TimelineEntry.incident_id == inc.id)
                    .order_by(TimelineEntry.seq)
                )
            ).all()
        )


@dataclass(kw_only=True)
class ListFilter:
    state: list[str] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)
    # Phase of the incident, or of its primary when it is a merged duplicate: what a citizen
    # following the report sees (Open311 status).
    followed_phase: list[str] = field(default_factory=list)
    category: str | None = None
    group: str | None = None
    channel: str | None = None
    area: str | None = None
    agency: str | None = None
    priority: str | None = None
    track: str | None = None
    overdue: bool | None = None
    escalated: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    mine: bool = False
    code: str | None = None
    # Reporter contact filters (the switchboard's caller look-up): a search by them tells
    # whether a person reported, confidential reporters included, so only roles that see
    # confidential reporters may use them, and each search is logged (see CONTACT_FILTERS).
    reporter_phone: str | None = None
    limit: int = 50
    cursor: str | None = None
    order: str = "desc"


# ListFilter fields that search by a reporter's contact data.
CONTACT_FILTERS: tuple[str, ...] = ("reporter_phone",)


def encode_cursor(inc: Incident) -> str:
    raw = f"{inc.created_at.isoformat()}|{inc.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, ident = raw.split("|", 1)
        return datetime.fromisoformat(at), ident
    except Exception:
        raise ValidationFailed(
            "cursor is not one this server issued",
            details={"field": "cursor"},
            error_id="bad-cursor",
        ) from None


def _filtered(
    f: ListFilter, principal: Principal, area_codes: Sequence[str] | None, now: datetime
) -> Select[Incident]:
    stmt = select(Incident)
    vis = VISIBILITY[principal.role]
    if vis.scope is Scope.AGENCY:
        stmt = stmt.where(Incident.agency_code == principal.agency_code)
    if vis.scope is not Scope.ALL:
        stmt = stmt.where(Incident.state.notin_([State.DRAFT.value, State.CANCELLED.value]))
    if f.mine:
        stmt = stmt.where(
            Incident.id.in_(
                select(Reporter.incident_id).where(Reporter.subject == principal.subject)
            )
        )
    if f.reporter_phone:
        stmt = stmt.where(
            Incident.id.in_(select(Reporter.incident_id).where(Reporter.phone == f.reporter_phone))
        )
    if f.state:
        stmt = stmt.where(Incident.state.in_(f.state))
    if f.phase:
        stmt = stmt.where(Incident.phase.in_(f.phase))
    if f.followed_phase:
        primary = aliased(Incident)
        stmt = stmt.outerjoin(primary, Incident.primary_id == primary.id).where(
            func.coalesce(primary.phase, Incident.phase).in_(f.followed_phase)
        )
    for col, value in (
        (Incident.category_code, f.category),
        (Incident.category_group, f.group),
        (Incident.channel, f.channel),
        (Incident.agency_code, f.agency),
        (Incident.priority, f.priority),
        (Incident.track, f.track),
        (Incident.code, f.code),
    ):
        if value:
            stmt = stmt.where(col == value)
    if area_codes is not None:
        stmt = stmt.where(Incident.area_code.in_(area_codes))
    if f.escalated is not None:
        stmt = stmt.where(Incident.escalated.is_(f.escalated))
    if f.overdue is not None:
        overdue = and_(
            Incident.due_at.is_not(None), Incident.due_at < now, Incident.phase.in_(OPEN_PHASES)
        )
        stmt = stmt.where(overdue if f.overdue else ~overdue)
    if f.since:
        stmt = stmt.where(Incident.created_at >= f.since)
    if f.until:
        stmt = stmt.where(Incident.created_at < f.until)
    if f.q:
        like = f"%{f.q}%"
        stmt = stmt.where(
            or_(
                Incident.title.ilike(like),
                Incident.description.ilike(like),
                Incident.address.ilike(like),
                Incident.code.ilike(like),
            )
        )
    return stmt


async def list_incidents(
    core: Core, f: ListFilter, *, principal: Principal, with_total: bool = False
) -> tuple[list[Incident], str | None, int | None]:
    """Keyset pagination on (created_at, id): stable under concurrent inserts."""
    if f.mine and not principal.subject:
        raise ValidationFailed("mine=true needs a citizen token", error_id="mine-needs-citizen")
    contact = [name for name in CONTACT_FILTERS if getattr(f, name)]
    if contact and not VISIBILITY[principal.role].confidential:
        # Agencies see non-confidential contacts, but a search (and its total) would still
        # tell them whether a confidential reporter's number reported anything.
        raise Forbidden(
            f"searching by a reporter's contact ({', '.join(contact)}) needs a role that may "
            "see confidential reporters",
            details={
                "field": contact[0],
                "roles": sorted(r.value for r, v in VISIBILITY.items() if v.confidential),
            },
            error_id="reporter-search-not-allowed",
        )
    area_codes = await core.catalogue.area_subtree(f.area) if f.area else None
    stmt = _filtered(f, principal, area_codes, core.clock())
    if contact:
        await log_contact_search(core, stmt, contact, principal)
    async with core.sessions() as s:
        total = None
        if with_total:
            total = int(await s.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
        desc = f.order != "asc"
        if f.cursor:
            at, ident = _decode_cursor(f.cursor)
            key = (Incident.created_at, Incident.id)
            stmt = stmt.where(
                or_(key[0] < at, and_(key[0] == at, key[1] < ident))
                if desc
                else or_(key[0] > at, and_(key[0] == at, key[1] > ident))
            )
        order = (
            (Incident.created_at.desc(), Incident.id.desc())
            if desc
            else (Incident.created_at.asc(), Incident.id.asc())
        )
        rows = list((await s.scalars(stmt.order_by(*order).limit(f.limit + 1))).all())
    more = len(rows) > f.limit
    rows = rows[: f.limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None), total
