"""What every incident command and query shares: loading an incident (with its reporters,
for the audit chain), the visibility and role checks, the hash-chained timeline row, state and
deadline helpers, and the event every change emits."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ioc_core import events as ev
from ioc_core.access.roles import (
    ATTACH_ROLES,
    CREATE_ROLES,
    ESCALATE_ROLES,
    MERGE_ROLES,
    NOTE_ROLES,
    RATE_ROLES,
    REPLY_ROLES,
    SYSTEM,
    UPDATE_ROLES,
    VISIBILITY,
    Principal,
    Role,
    Scope,
)
from ioc_core.bus import Event
from ioc_core.db import new_id
from ioc_core.errors import Forbidden, NotFound
from ioc_core.incidents import lifecycle, sla
from ioc_core.incidents.attachments import Photo, write_photo
from ioc_core.incidents.audit import entry_hash, incident_digest, reporters_digest
from ioc_core.incidents.lifecycle import PHASE, Phase, State
from ioc_core.incidents.models import Attachment, Entry, Incident, Reporter, TimelineEntry
from ioc_core.incidents.schemas import LocationIn

if TYPE_CHECKING:
    from ioc_core.runtime import Core


logger = logging.getLogger(__name__)

OPEN_PHASES = (Phase.OPEN.value, Phase.ACTIVE.value)


def incident_event(name: str, inc: Incident, **payload: Any) -> Event:
    version, _keys = ev.SCHEMAS[name]
    return Event(
        name=name,
        version=version,
        correlation_id=inc.id,
        payload={"incident_id": inc.id, "code": inc.code, **payload},
    )


# Where a new timeline row goes: the session (incident already stored), or a list of rows
# written together with a new incident (see report_incident).
Sink = AsyncSession | list[Any]


@dataclass(eq=False)
class _Audited:
    """An incident's reporters as this transaction holds them (the same objects a command
    edits), and what the database held when it was loaded, if that differs from what its
    timeline last recorded (a change made outside the service functions)."""

    reporters: list[Reporter]
    unexplained: list[str] = field(default_factory=list)


# Per incident object, for the life of the objects (so of the session that loaded them).
_AUDITED: weakref.WeakKeyDictionary[Incident, _Audited] = weakref.WeakKeyDictionary()


def hold_reporters(inc: Incident, reporters: list[Reporter]) -> None:
    """A new incident's reporters, for the digests of the timeline rows written with it."""
    _AUDITED[inc] = _Audited(reporters=reporters)


async def _audit_load(s: AsyncSession, inc: Incident) -> None:
    """Hold `inc`'s reporters for the digests of the rows this command appends, and compare
    the values as loaded with the digests of the chain's last row."""
    reporters = list(
        (await s.scalars(select(Reporter).where(Reporter.incident_id == inc.id))).all()
    )
    audited = _AUDITED[inc] = _Audited(reporters=reporters)
    if not inc.chain_seq:
        return
    last = (
        await s.execute(
            select(TimelineEntry.incident_sha256, TimelineEntry.reporters_sha256).where(
                TimelineEntry.incident_id == inc.id, TimelineEntry.seq == inc.chain_seq
            )
        )
    ).first()
    if last is None or last.incident_sha256 is None:
        return  # a chain written before digests existed: nothing to compare with
    if last.incident_sha256 != incident_digest(inc):
        audited.unexplained.append("incident")
    if last.reporters_sha256 != reporters_digest(reporters):
        audited.unexplained.append("reporters")


def _reporters_for(sink: Sink, inc: Incident) -> _Audited:
    audited = _AUDITED.get(inc)
    if audited is None:
        # A programming error, loud on purpose: a row without the reporters would make
        # `ioc audit verify` report a change nobody made.
        raise RuntimeError(
            f"incident {inc.id} was not loaded for a change (load_incident(lock=True))"
        )
    if isinstance(sink, AsyncSession):
        for obj in sink.new:  # a reporter added in this transaction
            if (
                isinstance(obj, Reporter)
                and obj.incident_id == inc.id
                and all(obj is not r for r in audited.reporters)
            ):
                audited.reporters.append(obj)
    return audited


def append(
    sink: Sink,
    inc: Incident,
    *,
    at: datetime,
    actor: Principal,
    channel: str,
    kind: str,
    from_state: str | None = None,
    to_state: str | None = None,
    note: str = "",
    data: dict[str, Any] | None = None,
) -> None:
    """Append one hash-chained timeline row (RP-10), with the digests of the incident's and
    its reporters' values as they are now, after the command's change."""
    audited = _reporters_for(sink, inc)
    if audited.unexplained:
        # Found while loading: values changed outside the timeline. Recorded first, so the
        # chain keeps the evidence and the command's own row, whose digests take the values
        # as they now are, does not make the change look legitimate.
        parts, audited.unexplained = audited.unexplained, []
        logger.error("incident %s: %s changed outside the timeline", inc.code, ", ".join(parts))
        append(
            sink,
            inc,
            at=at,
            actor=SYSTEM,
            channel="system",
            kind="unexplained_change",
            data={"parts": parts},
        )
    fields: dict[str, Any] = dict(
        incident_id=inc.id,
        seq=inc.chain_seq + 1,
        at=at,
        actor=actor.actor,
        actor_role=actor.role.value,
        channel=channel,
        kind=kind,
        from_state=from_state,
        to_state=to_state,
        note=note,
        data=data or {},
        incident_sha256=incident_digest(inc),
        reporters_sha256=reporters_digest(audited.reporters),
    )
    digest = entry_hash(inc.chain_head, fields)
    row = TimelineEntry(**fields, prev_hash=inc.chain_head, hash=digest)
    if isinstance(sink, list):
        sink.append(row)
    else:
        sink.add(row)
    inc.chain_seq = fields["seq"]
    inc.chain_head = digest
    inc.updated_at = at
    inc.version += 1


def set_state(inc: Incident, state: State, at: datetime) -> None:
    inc.state = state.value
    inc.phase = PHASE[state].value
    if state is State.RESOLVED:
        inc.resolved_at = at
    if PHASE[state] is Phase.CLOSED:
        inc.closed_at = at
    elif PHASE[state] is not Phase.RESOLVED:
        inc.resolved_at = None
        inc.closed_at = None


def local_year(core: Core, at: datetime) -> int:
    return at.astimezone(ZoneInfo(core.settings.timezone)).year


def deadline_for(core: Core, track: str, days: int | None, at: datetime) -> datetime | None:
    if track != sla.Track.TIMED.value or days is None:
        return None
    s = core.settings
    return sla.deadline(
        at, days, tz=s.timezone, workday_end=time(s.workday_end_hour, s.workday_end_minute)
    ).astimezone(UTC)


def check_scope(inc: Incident, principal: Principal) -> None:
    """Agencies see only their own assignments; drafts are staff-only (PL-2)."""
    scope = VISIBILITY[principal.role].scope
    if scope is Scope.AGENCY and inc.agency_code != principal.agency_code:
        raise NotFound("no such incident", error_id="incident-not-found")
    if scope is not Scope.ALL and State(inc.state) not in lifecycle.PUBLIC_STATES:
        raise NotFound("no such incident", error_id="incident-not-found")


def require(principal: Principal, roles: frozenset[Role], what: str) -> None:
    if principal.role not in roles:
        raise Forbidden(
            f"role {principal.role.value!r} may not {what}",
            details={"roles": sorted(r.value for r in roles)},
        )


# Roles each command needs, for callers that must refuse before reading a request's body.
COMMAND_ROLES: dict[str, frozenset[Role]] = {
    "report": CREATE_ROLES,
    "update": UPDATE_ROLES,
    "reply": REPLY_ROLES,
    "note": NOTE_ROLES,
    "rate": RATE_ROLES,
    "attach": ATTACH_ROLES,
    "merge": MERGE_ROLES,
    "escalate": ESCALATE_ROLES,
    # Which transition is asked for is in the body: any role that may make one.
    "transition": frozenset(
        r for r in Role if any(r.value in t.roles for t in lifecycle.TRANSITIONS)
    ),
}


def check_may(principal: Principal, command: str) -> None:
    """Refuse `principal` (403) when its role may never run `command`; the command checks
    again, with what it then knows (scope, ownership, the transition asked for)."""
    require(principal, COMMAND_ROLES[command], command.replace("_", " "))


async def check_may_transition(core: Core, ref: str, *, principal: Principal) -> None:
    """What `transition` checks before it knows the action, in its order: an incident the
    caller may not see is 404 (a draft's existence is not revealed), then the role (403)."""
    async with core.sessions() as s:
        check_scope(await load_incident(s, ref), principal)
    check_may(principal, "transition")


async def check_may_attach(core: Core, ref: str, *, principal: Principal) -> None:
    """Everything `attach` checks before it reads photos: role, scope, a citizen's own report.
    Web routes call it before reading a multipart body of up to 25 MB."""
    check_may(principal, "attach")
    async with core.sessions() as s:
        inc = await load_incident(s, ref)
        check_scope(inc, principal)
        if principal.role is Role.CITIZEN and not await owns(s, inc, principal):
            raise Forbidden("citizens add photos to their own reports only")


async def load_incident(session: AsyncSession, ref: str, *, lock: bool = False) -> Incident:
    """By id or tracking code; `lock` takes a row lock on PostgreSQL (SQLite serialises)."""
    stmt = select(Incident).where(or_(Incident.id == ref, Incident.code == ref))
    if lock:
        stmt = stmt.with_for_update()
    inc = (await session.scalars(stmt)).first()
    if inc is None:
        raise NotFound(f"no incident {ref!r}", error_id="incident-not-found")
    if lock:  # loaded to be changed: its timeline rows need the reporters
        await _audit_load(session, inc)
    return inc


async def owns(s: AsyncSession, inc: Incident, principal: Principal) -> bool:
    if principal.role is not Role.CITIZEN or not principal.subject:
        return False
    n = await s.scalar(
        select(func.count())
        .select_from(Reporter)
        .where(Reporter.incident_id == inc.id, Reporter.subject == principal.subject)
    )
    return bool(n)


def store_photos(
    core: Core,
    incident_id: str,
    photos: Sequence[Photo],
    principal: Principal,
    at: datetime,
    written: list[str],
) -> list[Attachment]:
    """Write checked photos to disk (paths go to `written`, for removal if the transaction
    fails) and return their rows."""
    rows = []
    for p in photos:
        rel = write_photo(core.settings.attachments_dir, incident_id, p)
        written.append(rel)
        rows.append(
            Attachment(
                id=new_id(),
                incident_id=incident_id,
                filename=p.filename,
                content_type=p.content_type,
                size=p.size,
                sha256=p.sha256,
                path=rel,
                width=p.width,
                height=p.height,
                uploaded_by=principal.actor,
                created_at=at,
            )
        )
    return rows


async def check_location(core: Core, loc: LocationIn | None) -> None:
    if loc is not None and loc.area_code:
        await core.catalogue.check_area(loc.area_code)


@dataclass
class Detail:
    incident: Incident
    reporters: list[Reporter]
    entries: list[Entry]
    attachments: list[Attachment]
    duplicates: list[Incident]
    primary: Incident | None
    own: bool
    scores: list[int] = field(default_factory=list)  # reporters' ratings (CH-4)
    # The report command was a repeat of an earlier one with the same idempotency key.
    replayed: bool = False
