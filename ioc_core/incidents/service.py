"""Incident commands and queries. Each command is one transaction that writes the change, its
timeline rows and its outbox events together; nothing else in the core writes incidents."""

from __future__ import annotations

import base64
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, bindparam, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

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
from ioc_core.db import (
    UTCDateTime,
    compile_raw,
    dialect_name,
    driver_connection,
    new_id,
    transaction,
)
from ioc_core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from ioc_core.incidents import duplicates, keys, lifecycle, sla, views
from ioc_core.incidents.attachments import (
    Photo,
    Upload,
    check_photos,
    remove_files,
    write_photo,
)
from ioc_core.incidents.audit import (
    entry_hash,
    incident_digest,
    reporters_digest,
    sha256_text,
)
from ioc_core.incidents.lifecycle import PHASE, Phase, State
from ioc_core.incidents.models import (
    DUPLICATE_CANDIDATE_SQL,
    AccessLog,
    Attachment,
    Entry,
    Incident,
    Rating,
    Reporter,
    ReportKey,
    TimelineEntry,
)
from ioc_core.incidents.schemas import (
    EntryIn,
    EscalateIn,
    LocationIn,
    MergeIn,
    RatingIn,
    ReportIn,
    TransitionIn,
    UnmergeIn,
    UpdateIn,
)
from ioc_core.incidents.writes import insert_new
from ioc_core.outbox import add_events, outbox_rows

if TYPE_CHECKING:
    from ioc_core.runtime import Core

logger = logging.getLogger(__name__)

OPEN_PHASES = (Phase.OPEN.value, Phase.ACTIVE.value)


# ---------------------------------------------------------------- helpers


def _event(name: str, inc: Incident, **payload: Any) -> Event:
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
        raise RuntimeError(f"incident {inc.id} was not loaded for a change (_load(lock=True))")
    if isinstance(sink, AsyncSession):
        for obj in sink.new:  # a reporter added in this transaction
            if (
                isinstance(obj, Reporter)
                and obj.incident_id == inc.id
                and all(obj is not r for r in audited.reporters)
            ):
                audited.reporters.append(obj)
    return audited


def _append(
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
        _append(
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


def _set_state(inc: Incident, state: State, at: datetime) -> None:
    inc.state = state.value
    inc.phase = PHASE[state].value
    if state is State.RESOLVED:
        inc.resolved_at = at
    if PHASE[state] is Phase.CLOSED:
        inc.closed_at = at
    elif PHASE[state] is not Phase.RESOLVED:
        inc.resolved_at = None
        inc.closed_at = None


def _local_year(core: Core, at: datetime) -> int:
    return at.astimezone(ZoneInfo(core.settings.timezone)).year


def _due(core: Core, track: str, days: int | None, at: datetime) -> datetime | None:
    if track != sla.Track.TIMED.value or days is None:
        return None
    s = core.settings
    return sla.deadline(
        at, days, tz=s.timezone, workday_end=time(s.workday_end_hour, s.workday_end_minute)
    ).astimezone(UTC)


def _check_scope(inc: Incident, principal: Principal) -> None:
    """Agencies see only their own assignments; drafts are staff-only (PL-2)."""
    scope = VISIBILITY[principal.role].scope
    if scope is Scope.AGENCY and inc.agency_code != principal.agency_code:
        raise NotFound("no such incident", error_id="incident-not-found")
    if scope is not Scope.ALL and State(inc.state) not in lifecycle.PUBLIC_STATES:
        raise NotFound("no such incident", error_id="incident-not-found")


def _require(principal: Principal, roles: frozenset[Role], what: str) -> None:
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
    _require(principal, COMMAND_ROLES[command], command.replace("_", " "))


async def check_may_transition(core: Core, ref: str, *, principal: Principal) -> None:
    """What `transition` checks before it knows the action, in its order: an incident the
    caller may not see is 404 (a draft's existence is not revealed), then the role (403)."""
    async with core.sessions() as s:
        _check_scope(await _load(s, ref), principal)
    check_may(principal, "transition")


async def check_may_attach(core: Core, ref: str, *, principal: Principal) -> None:
    """Everything `attach` checks before it reads photos: role, scope, a citizen's own report.
    Web routes call it before reading a multipart body of up to 25 MB."""
    check_may(principal, "attach")
    async with core.sessions() as s:
        inc = await _load(s, ref)
        _check_scope(inc, principal)
        if principal.role is Role.CITIZEN and not await _owns(s, inc, principal):
            raise Forbidden("citizens add photos to their own reports only")


async def _load(session: AsyncSession, ref: str, *, lock: bool = False) -> Incident:
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


def _store_photos(
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


async def _check_location(core: Core, loc: LocationIn | None) -> None:
    if loc is not None and loc.area_code:
        await core.catalogue.check_area(loc.area_code)


# ---------------------------------------------------------------- commands


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


async def report_incident(
    core: Core,
    data: ReportIn,
    *,
    principal: Principal,
    uploads: Sequence[Upload] = (),
    idempotency_key: str | None = None,
) -> Detail:
    """A new report from any channel (RP-1, RP-2). Duplicates merge into their primary (RP-8).

    Validation happens before any write; photo files are removed again if the transaction fails,
    so a rejected report leaves no incident, no orphan file and no event.

    `idempotency_key`: the client's name for this report (see keys.py). A repeat with the same
    key returns the incident the first one made (`Detail.replayed`); the key is written in
    the same statement as the incident, so there is never an incident without its key.
    """
    _require(principal, CREATE_ROLES, "report incidents")
    if data.draft and not principal.is_staff:
        # A draft is a call-taker's unfinished form (the switchboard creates it on behalf of
        # the agent who answered); no other role can see drafts, so none may create them.
        raise Forbidden("only staff create drafts", error_id="draft-not-allowed")
    if data.internal_note:
        _require(principal, NOTE_ROLES, "add an internal note")
    scope, fp = "", ""
    if idempotency_key is not None:
        keys.check_key(idempotency_key)
        scope, fp = keys.scope_of(principal), keys.fingerprint(data)
        done = await _repeated(core, scope, idempotency_key, fp, principal)
        if done is not None:
            return done
    cat = await core.catalogue.category(data.category)
    await _check_location(core, data.location)
    if len(uploads) > core.settings.max_attachments:
        raise ValidationFailed(
            f"at most {core.settings.max_attachments} photos per incident",
            error_id="too-many-attachments",
        )
    photos = await check_photos(uploads, max_bytes=core.settings.max_attachment_bytes)

    now = core.clock()
    code = await core.tracking.next_code(_local_year(core, now))
    loc = data.location or LocationIn.model_construct(
        lat=None, lon=None, address="", area_code=None
    )
    state = State.DRAFT if data.draft else State.NEW
    inc = Incident(
        id=new_id(),
        code=code,
        category_code=cat.code,
        category_group=cat.group_code,
        title=data.title or cat.name_vi,
        description=data.description,
        priority=data.priority or cat.priority,
        severity=data.severity,
        channel=data.channel,
        language=data.language,
        state=state.value,
        phase=PHASE[state].value,
        track=cat.track,
        due_at=_due(core, cat.track, cat.deadline_days, now),
        escalated=cat.track == sla.Track.IMMEDIATE.value
        and (data.priority or cat.priority) == "urgent",
        lat=loc.lat,
        lon=loc.lon,
        address=loc.address,
        area_code=loc.area_code,
        reporter_count=1,
        external_ref=data.external_ref,
        created_at=now,
        updated_at=now,
        version=0,
        chain_seq=0,
        chain_head="0" * 64,
    )
    rep = data.reporter
    reporter = Reporter(
        id=new_id(),
        incident_id=inc.id,
        name=rep.name,
        phone=rep.phone,
        email=rep.email,
        channel=data.channel,
        channel_user_id=rep.channel_user_id,
        confidential=rep.confidential,
        subject=principal.subject if principal.role is Role.CITIZEN else "",
        created_at=now,
    )
    _AUDITED[inc] = _Audited(reporters=[reporter])
    keyed = (
        [
            ReportKey(
                scope=scope, key=idempotency_key, fingerprint=fp, incident_id=inc.id, created_at=now
            )
        ]
        if idempotency_key is not None
        else []
    )
    root = core.settings.attachments_dir
    written: list[str] = []
    primary: Incident | None = None
    try:
        rows = _store_photos(core, inc.id, photos, principal, now, written)
        timeline: list[TimelineEntry] = []
        _append(
            timeline,
            inc,
            at=now,
            actor=principal,
            channel=data.channel,
            kind="created",
            to_state=state.value,
            data={"category": cat.code, "attachments": len(rows)},
        )
        notes: list[Entry] = []
        if data.internal_note:
            # Written with the incident (one statement), so caller details never wait in a
            # public field for a second command that might not come.
            notes.append(
                Entry(
                    id=new_id(),
                    incident_id=inc.id,
                    kind="note",
                    body=data.internal_note,
                    author=principal.name,
                    author_role=principal.role.value,
                    agency_code=principal.agency_code,
                    created_at=now,
                )
            )
            _append(
                timeline,
                inc,
                at=now,
                actor=principal,
                channel=data.channel,
                kind="note",
                data={"entry_id": notes[0].id, "sha256": sha256_text(data.internal_note)},
            )
        out = [
            _event(
                ev.INCIDENT_CREATED,
                inc,
                category=cat.code,
                channel=inc.channel,
                state=inc.state,
                priority=inc.priority,
                track=inc.track,
                area_code=inc.area_code,
                lat=inc.lat,
                lon=inc.lon,
            )
        ]
        lookup = state is State.NEW and loc.has_point
        if not await _insert_unless_duplicate(
            core,
            inc,
            lookup=lookup,
            groups=[[inc], [reporter], rows, notes, timeline, outbox_rows(out), keyed],
        ):
            async with transaction(core.sessions) as s:
                primary = await _find_primary(core, s, inc) if lookup else None
                if primary is not None:
                    out += _merge(
                        s,
                        inc,
                        primary,
                        at=now,
                        actor=SYSTEM,
                        channel=data.channel,
                        note="",
                        inc_sink=timeline,
                    )
                await insert_new(
                    s, [[inc], [reporter], rows, notes, timeline, outbox_rows(out), keyed]
                )
    except Exception:
        remove_files(root, written)
        if idempotency_key is None:
            raise
        # The same key sent twice at once: the other command's incident took the key (a
        # unique violation here), and is the answer to this one too.
        done = await _repeated(core, scope, idempotency_key, fp, principal)
        if done is None:
            raise
        return done
    except BaseException:
        remove_files(root, written)
        raise
    core.relay.notify()
    # Everything the caller may render is in hand: no second round of queries.
    own = principal.role is Role.CITIZEN and bool(principal.subject)
    return Detail(inc, [reporter], notes, rows, [], primary, own)


async def _repeated(
    core: Core, scope: str, key: str, fp: str, principal: Principal
) -> Detail | None:
    """The incident an earlier report with this key made, or None."""
    async with core.sessions() as s:
        found = await keys.find(s, scope, key)
    if found is None:
        return None
    keys.check_same(found, fp)
    d = await get_detail(core, found.incident_id, principal=principal)
    d.replayed = True
    return d


# Built once: this runs for every report, and building the statement cost more than running it.
_DUPLICATE_CANDIDATES = (
    select(
        Incident.id,
        Incident.category_group,
        Incident.lat,
        Incident.lon,
        Incident.created_at,
        Incident.phase,
    )
    .where(
        Incident.category_group == bindparam("group"),
        text(DUPLICATE_CANDIDATE_SQL),
        Incident.created_at >= bindparam("since", type_=UTCDateTime()),
        Incident.id != bindparam("self"),
        Incident.lat.between(bindparam("min_lat"), bindparam("max_lat")),
        Incident.lon.between(bindparam("min_lon"), bindparam("max_lon")),
    )
    .limit(200)
)


_DUPLICATE_CANDIDATES_PG = compile_raw(_DUPLICATE_CANDIDATES)


async def _insert_unless_duplicate(
    core: Core, inc: Incident, *, lookup: bool, groups: list[list[Any]]
) -> bool:
    """The common case in two statements and no transaction: on PostgreSQL the duplicate
    look-up, then all new rows in one atomic statement. False when the slow path must run:
    a possible duplicate (its primary must be locked and updated) or SQLite (whose writes take
    the write lock up front, see db.py)."""
    if core.engine.dialect.name != "postgresql":
        return False
    # No transaction is begun on this connection: each statement commits on its own.
    async with core.engine.connect() as conn:
        if lookup and await _best_candidate(core, conn, inc) is not None:
            return False
        await insert_new(conn, groups)
    return True


async def _best_candidate(
    core: Core, conn: AsyncSession | AsyncConnection, inc: Incident
) -> duplicates.Candidate | None:
    assert inc.lat is not None and inc.lon is not None
    radius = core.settings.duplicate_radius_m
    window = timedelta(minutes=core.settings.duplicate_window_min)
    min_lat, max_lat, min_lon, max_lon = duplicates.bounding_box(inc.lat, inc.lon, radius)
    params = {
        "group": inc.category_group,
        "since": inc.created_at - window,
        "self": inc.id,
        "min_lat": min_lat,
        "max_lat": max_lat,
        "min_lon": min_lon,
        "max_lon": max_lon,
    }
    rows: Sequence[Any]
    if dialect_name(conn) == "postgresql":
        raw = await driver_connection(conn)
        rows = await raw.fetch(_DUPLICATE_CANDIDATES_PG.sql, *_DUPLICATE_CANDIDATES_PG.args(params))
    else:
        rows = [r._mapping for r in await conn.execute(_DUPLICATE_CANDIDATES, params)]
    return duplicates.pick_primary(
        duplicates.NewReport(group=inc.category_group, lat=inc.lat, lon=inc.lon, at=inc.created_at),
        [
            duplicates.Candidate(
                incident_id=r["id"],
                group=r["category_group"],
                lat=r["lat"],
                lon=r["lon"],
                created_at=r["created_at"],
                is_open=r["phase"] in OPEN_PHASES,
            )
            for r in rows
        ],
        radius_m=radius,
        window=window,
    )


async def _find_primary(core: Core, s: AsyncSession, inc: Incident) -> Incident | None:
    best = await _best_candidate(core, s, inc)
    if best is None:
        return None
    primary = await _load(s, best.incident_id, lock=True)
    # Re-check under the lock: it may have closed or been merged meanwhile.
    return primary if primary.phase in OPEN_PHASES and primary.primary_id is None else None


def _merge(
    s: AsyncSession,
    inc: Incident,
    primary: Incident,
    *,
    at: datetime,
    actor: Principal,
    channel: str,
    note: str,
    inc_sink: Sink | None = None,
) -> list[Event]:
    previous = inc.state
    inc.merged_from_state = previous
    inc.primary_id = primary.id
    _set_state(inc, State.MERGED, at)
    primary.reporter_count += inc.reporter_count
    _append(
        s if inc_sink is None else inc_sink,
        inc,
        at=at,
        actor=actor,
        channel=channel,
        kind="merged",
        from_state=previous,
        to_state=State.MERGED.value,
        note=note,
        data={"primary": primary.code},
    )
    _append(
        s,
        primary,
        at=at,
        actor=actor,
        channel=channel,
        kind="duplicate_added",
        note=note,
        data={"duplicate": inc.code, "reporter_count": primary.reporter_count},
    )
    return [
        _event(
            ev.INCIDENT_MERGED,
            inc,
            primary_id=primary.id,
            primary_code=primary.code,
            reporter_count=primary.reporter_count,
        )
    ]


async def transition(
    core: Core, ref: str, cmd: TransitionIn, *, principal: Principal, channel: str = "web"
) -> Incident:
    if cmd.action == "merge":
        raise ValidationFailed(
            "use the merge endpoint to merge incidents",
            details={"field": "action"},
            error_id="use-merge",
        )
    if cmd.agency:
        await core.catalogue.check_agency(cmd.agency)
    async with transaction(core.sessions) as s:
        inc = await _load(s, ref, lock=True)
        _check_scope(inc, principal)
        t = lifecycle.plan(
            State(inc.state),
            cmd.action,
            role=principal.role.value,
            note=cmd.note,
            agency=cmd.agency,
        )
        if t.action == "submit" and inc.lat is None and inc.area_code is None:
            raise ValidationFailed(
                "the draft needs a location before it is submitted",
                details={"field": "location"},
                error_id="location-required",
            )
        now = core.clock()
        previous = inc.state
        if t.requires_agency:
            inc.agency_code = cmd.agency
        if t.action == "decline":
            inc.agency_code = None
        _set_state(inc, t.target, now)
        _append(
            s,
            inc,
            at=now,
            actor=principal,
            channel=channel,
            kind="transition",
            from_state=previous,
            to_state=t.target.value,
            note=cmd.note,
            data={"action": t.action, **({"agency": cmd.agency} if cmd.agency else {})},
        )
        add_events(
            s,
            [
                _event(
                    ev.INCIDENT_STATE_CHANGED,
                    inc,
                    from_state=previous,
                    to_state=inc.state,
                    action=t.action,
                    phase=inc.phase,
                    actor=principal.role.value,
                    **({"agency": inc.agency_code} if inc.agency_code else {}),
                )
            ],
        )
    core.relay.notify()
    return inc


async def update_incident(
    core: Core, ref: str, cmd: UpdateIn, *, principal: Principal, channel: str = "web"
) -> Incident:
    _require(principal, UPDATE_ROLES, "edit incidents")
    changes = cmd.model_dump(exclude_unset=True)
    if not changes:
        raise ValidationFailed("nothing to update", error_id="empty-update")
    cat = await core.catalogue.category(cmd.category) if cmd.category else None
    await _check_location(core, cmd.location)
    async with transaction(core.sessions) as s:
        inc = await _load(s, ref, lock=True)
        if inc.phase not in OPEN_PHASES:
            raise Conflict(
                f"a {inc.state} incident cannot be edited", error_id="incident-not-editable"
            )
        now = core.clock()
        if cat is not None:
            inc.category_code, inc.category_group, inc.track = cat.code, cat.group_code, cat.track
            inc.due_at = _due(core, cat.track, cat.deadline_days, inc.created_at)
        for name in ("title", "description", "priority", "severity"):
            if name in changes:
                setattr(inc, name, changes[name])
        if cmd.location is not None:
            loc = cmd.location
            inc.lat, inc.lon, inc.address, inc.area_code = (
                loc.lat,
                loc.lon,
                loc.address,
                loc.area_code,
            )
        reporter_change: dict[str, Any] | None = None
        if cmd.reporter is not None:
            rep = (
                await s.scalars(
                    select(Reporter)
                    .where(Reporter.incident_id == inc.id)
                    .order_by(Reporter.created_at)
                )
            ).first()
            if rep is not None:
                before = {k: getattr(rep, k) for k in REPORTER_FIELDS}
                for k, v in cmd.reporter.model_dump(exclude_unset=True).items():
                    setattr(rep, k, v)
                reporter_change = _reporter_change(rep, before)
        fields = sorted(changes)
        # This row records which fields changed; the reporter's values go in their own row.
        _append(
            s,
            inc,
            at=now,
            actor=principal,
            channel=channel,
            kind="updated",
            data={"fields": fields},
        )
        if reporter_change is not None:
            # RP-3: the old and new values are kept (the serialisation layer shows them only
            # to roles that may see the reporter as it was and as it is), and the change is an
            # access to the reporter's details.
            _append(
                s,
                inc,
                at=now,
                actor=principal,
                channel=channel,
                kind=views.REPORTER_CHANGED,
                data=reporter_change,
            )
            s.add(access_row(principal, inc.id, what="reporter-changed", at=now))
        add_events(s, [_event(ev.INCIDENT_UPDATED, inc, fields=fields)])
    core.relay.notify()
    return inc


# Reporter fields staff may correct (schemas.ReporterIn); each change is kept in the timeline.
REPORTER_FIELDS = ("name", "phone", "email", "channel_user_id", "confidential")


def _reporter_change(rep: Reporter, before: dict[str, Any]) -> dict[str, Any] | None:
    """The timeline data of a change to a reporter: each changed field's old and new value,
    and the confidentiality before and after (which decides who may read the values)."""
    changed = {
        k: {"from": before[k], "to": getattr(rep, k)}
        for k in REPORTER_FIELDS
        if before[k] != getattr(rep, k)
    }
    if not changed:
        return None
    return {
        "reporter_id": rep.id,
        "changes": changed,
        "was_confidential": bool(before["confidential"]),
        "is_confidential": bool(rep.confidential),
    }


async def add_entry(
    core: Core, ref: str, cmd: EntryIn, *, kind: str, principal: Principal, channel: str = "web"
) -> Entry:
    """A public reply (RP-4: shown to reporter and public) or an internal note."""
    _require(principal, REPLY_ROLES if kind == "reply" else NOTE_ROLES, f"add a {kind}")
    async with transaction(core.sessions) as s:
        inc = await _load(s, ref, lock=True)
        _check_scope(inc, principal)
        now = core.clock()
        entry = Entry(
            id=new_id(),
            incident_id=inc.id,
            kind=kind,
            body=cmd.body,
            author=principal.name,
            author_role=principal.role.value,
            agency_code=principal.agency_code,
            created_at=now,
        )
        s.add(entry)
        # The chain covers the text through its digest, so an edited reply or note is
        # detected by `ioc audit verify` without copying notes into the timeline.
        _append(
            s,
            inc,
            at=now,
            actor=principal,
            channel=channel,
            kind=kind,
            data={"entry_id": entry.id, "sha256": sha256_text(cmd.body)},
        )
        name = ev.INCIDENT_REPLY_ADDED if kind == "reply" else ev.INCIDENT_NOTE_ADDED
        add_events(s, [_event(name, inc, entry_id=entry.id)])
    core.relay.notify()
    return entry


async def rate(core: Core, ref: str, cmd: RatingIn, *, principal: Principal) -> Rating:
    """CH-4: the reporter's satisfaction, once the agency reported a result. A citizen rates
    their own report; a channel adapter rates for the reporter it knows by channel user id."""
    _require(principal, RATE_ROLES, "rate the handling")
    async with transaction(core.sessions) as s:
        inc = await _load(s, ref, lock=True)
        _check_scope(inc, principal)
        if principal.role is Role.CITIZEN:
            who = Reporter.subject == principal.subject if principal.subject else None
        elif cmd.channel_user_id:
            who = and_(
                Reporter.channel == cmd.channel, Reporter.channel_user_id == cmd.channel_user_id
            )
        else:
            raise ValidationFailed(
                "name the reporter (channel_user_id) the rating comes from",
                details={"field": "channel_user_id"},
                error_id="rater-missing",
            )
        reporter = (
            (await s.scalars(select(Reporter).where(Reporter.incident_id == inc.id, who))).first()
            if who is not None
            else None
        )
        if reporter is None:
            raise Forbidden("only a reporter of this incident may rate it", error_id="not-reporter")
        if PHASE[State(inc.state)] not in (Phase.RESOLVED, Phase.CLOSED) or inc.state in (
            State.REJECTED,
            State.CANCELLED,
            State.MERGED,
        ):
            raise Conflict(
                f"{inc.code} has no result to rate yet (state {inc.state})",
                details={"state": inc.state},
                error_id="not-resolved",
            )
        now = core.clock()
        rating = (
            await s.scalars(
                select(Rating).where(
                    Rating.incident_id == inc.id, Rating.reporter_id == reporter.id
                )
            )
        ).first()
        if rating is None:
            rating = Rating(id=new_id(), incident_id=inc.id, reporter_id=reporter.id)
            s.add(rating)
        rating.score, rating.comment, rating.channel, rating.created_at = (
            cmd.score,
            cmd.comment,
            cmd.channel,
            now,
        )
        _append(
            s,
            inc,
            at=now,
            actor=principal,
            channel=cmd.channel,
            kind="rated",
            data={"score": cmd.score, "sha256": sha256_text(cmd.comment)},
        )
        add_events(s, [_event(ev.INCIDENT_RATED, inc, score=cmd.score, channel=cmd.channel)])
    core.relay.notify()
    return rating


async def attach(
    core: Core, ref: str, uploads: Sequence[Upload], *, principal: Principal, channel: str = "web"
) -> list[Attachment]:
    _require(principal, ATTACH_ROLES, "attach photos")
    if not uploads:
        raise ValidationFailed(
            "no photo in the request", details={"field": "photo"}, error_id="attachment-missing"
        )
    photos = await check_photos(uploads, max_bytes=core.settings.max_attachment_bytes)
    root = core.settings.attachments_dir
    written: list[str] = []
    try:
        async with transaction(core.sessions) as s:
            inc = await _load(s, ref, lock=True)
            _check_scope(inc, principal)
            if principal.role is Role.CITIZEN and not await _owns(s, inc, principal):
                raise Forbidden("citizens add photos to their own reports only")
            count = (
                await s.scalar(
                    select(func.count())
                    .select_from(Attachment)
                    .where(Attachment.incident_id == inc.id)
                )
                or 0
            )
            if count + len(photos) > core.settings.max_attachments:
                raise ValidationFailed(
                    f"at most {core.settings.max_attachments} photos per incident",
                    details={"existing": count},
                    error_id="too-many-attachments",
                )
            now = core.clock()
            rows = _store_photos(core, inc.id, photos, principal, now, written)
            s.add_all(rows)
            for a in rows:
                _append(
                    s,
                    inc,
                    at=now,
                    actor=principal,
                    channel=channel,
                    kind="attachment",
                    data={"attachment_id": a.id, "sha256": a.sha256},
                )
            add_events(
                s, [_event(ev.INCIDENT_ATTACHMENT_ADDED, inc, attachment_id=a.id) for a in rows]
            )
    except BaseException:
        remove_files(root, written)
        raise
    core.relay.notify()
    return rows


async def merge(
    core: Core, ref: str, cmd: MergeIn, *, principal: Principal, channel: str = "web"
) -> Incident:
    _require(principal, MERGE_ROLES, "merge incidents")
    async with transaction(core.sessions) as s:
        inc = await _load(s, ref, lock=True)
        primary = await _load(s, cmd.primary, lock=True)
        if primary.id == inc.id:
            raise ValidationFailed(
                "an incident cannot be merged into itself", error_id="merge-into-self"
            )
        if (
            primary.primary_id is not None
            or primary.phase not in OPEN_PHASES
            or primary.state == State.DRAFT.value  # drafts are invisible outside the IOC
        ):
            raise Conflict(
                f"{primary.code} is {primary.state}; merge into an open primary",
                error_id="primary-not-open",
            )
        lifecycle.plan(State(inc.state), "merge", role=principal.role.value)
        has_children = await s.scalar(
            select(func.count()).select_from(Incident).where(Incident.primary_id == inc.id)
        )
        if has_children:
            raise Conflict(
                f"{inc.code} has duplicates merged into it; merge the other way "
                "round or unmerge them first",
                error_id="incident-is-primary",
            )
        out = _merge(
            s, inc, primary, at=core.clock(), actor=principal, channel=channel, note=cmd.note
        )
        add_events(s, out)
    core.relay.notify()
    return inc


async def unmerge(
    core: Core, ref: str, cmd: UnmergeIn, *, principal: Principal, channel: str = "web"
) -> Incident:
    """Staff undo a merge (RP-8): the incident gets back the state it had."""
    _require(principal, MERGE_ROLES, "unmerge incidents")
    async with transaction(core.sessions) as s:
        inc = await _load(s, ref, lock=True)
        if inc.state != State.MERGED.value or inc.primary_id is None:
            raise Conflict(f"{inc.code} is not merged", error_id="not-merged")
        primary = await _load(s, inc.primary_id, lock=True)
        now = core.clock()
        restored = State(inc.merged_from_state or State.NEW.value)
        _set_state(inc, restored, now)
        inc.primary_id = None
        inc.merged_from_state = None
        primary.reporter_count = max(1, primary.reporter_count - inc.reporter_count)
        _append(
            s,
            inc,
            at=now,
            actor=principal,
            channel=channel,
            kind="unmerged",
            from_state=State.MERGED.value,
            to_state=restored.value,
            note=cmd.note,
            data={"primary": primary.code},
        )
        _append(
            s,
            primary,
            at=now,
            actor=principal,
            channel=channel,
            kind="duplicate_removed",
            note=cmd.note,
            data={"duplicate": inc.code, "reporter_count": primary.reporter_count},
        )
        add_events(
            s,
            [
                _event(
                    ev.INCIDENT_UNMERGED,
                    inc,
                    primary_id=primary.id,
                    primary_code=primary.code,
                    reporter_count=primary.reporter_count,
                )
            ],
        )
    core.relay.notify()
    return inc


async def escalate(
    core: Core, ref: str, cmd: EscalateIn, *, principal: Principal, channel: str = "web"
) -> Incident:
    """Immediate track: flag a hot incident for leaders (RP-5)."""
    _require(principal, ESCALATE_ROLES, "escalate incidents")
    async with transaction(core.sessions) as s:
        inc = await _load(s, ref, lock=True)
        if inc.track != sla.Track.IMMEDIATE.value:
            raise Conflict(
                "only immediate-track incidents escalate; timed ones have deadlines",
                error_id="not-immediate",
            )
        inc.escalated = cmd.escalated
        _append(
            s,
            inc,
            at=core.clock(),
            actor=principal,
            channel=channel,
            kind="escalation",
            note=cmd.note,
            data={"escalated": cmd.escalated},
        )
        add_events(s, [_event(ev.INCIDENT_ESCALATED, inc, escalated=cmd.escalated)])
    core.relay.notify()
    return inc


# ---------------------------------------------------------------- queries


async def _owns(s: AsyncSession, inc: Incident, principal: Principal) -> bool:
    if principal.role is not Role.CITIZEN or not principal.subject:
        return False
    n = await s.scalar(
        select(func.count())
        .select_from(Reporter)
        .where(Reporter.incident_id == inc.id, Reporter.subject == principal.subject)
    )
    return bool(n)


_Owned = TypeVar("_Owned", Reporter, Entry, Attachment)


async def _owned(s: AsyncSession, model: type[_Owned], incident_id: str) -> list[_Owned]:
    """An incident's reporters, entries or photos, oldest first."""
    stmt = select(model).where(model.incident_id == incident_id).order_by(model.created_at)
    return list((await s.scalars(stmt)).all())


async def get_detail(core: Core, ref: str, *, principal: Principal) -> Detail:
    async with core.sessions() as s:
        inc = await _load(s, ref)
        _check_scope(inc, principal)
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
            _check_scope(inc, principal)
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


async def log_confidential_access(
    core: Core, incident_ids: Sequence[str], *, principal: Principal, what: str
) -> None:
    """RP-3: every time staff are shown a confidential reporter, it is recorded."""
    if not incident_ids:
        return
    now = core.clock()
    async with transaction(core.sessions) as s:
        s.add_all(access_row(principal, i, what=what, at=now) for i in incident_ids)


def access_row(principal: Principal, incident_id: str, *, what: str, at: datetime) -> AccessLog:
    """One access_log row: `principal` saw or changed a reporter's details of the incident."""
    return AccessLog(
        principal=principal.actor,
        role=principal.role.value,
        incident_id=incident_id,
        what=what,
        at=at,
    )


async def reporters_to_notify(core: Core, ref: str) -> list[Reporter]:
    """Reporters of an incident and of every duplicate merged into it (RP-8, RP-9)."""
    async with core.sessions() as s:
        inc = await _load(s, ref)
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
        inc = await _load(s, ref)
        _check_scope(inc, principal)
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
        inc = await _load(s, ref)
        _check_scope(inc, principal)
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
        await _log_contact_search(core, stmt, contact, principal)
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


async def _log_contact_search(
    core: Core, stmt: Select[Incident], contact: Sequence[str], principal: Principal
) -> None:
    """RP-3: a search by a reporter's contact is an access to every incident it matches (all
    of them, not just one page: `total` reveals them too); a search that matches nothing is
    logged with an empty incident id. The searched value itself is not copied into the log."""
    async with core.sessions() as s:
        ids = list((await s.scalars(stmt.with_only_columns(Incident.id))).all())
    await log_confidential_access(
        core,
        ids or [""],
        principal=principal,
        what="reporter-search:" + ",".join(contact),
    )
