"""The report command: a new incident from any channel, written in as few statements as the
database allows (writes.py), merged into its primary when it duplicates one, and filed once per
idempotency key (keys.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ioc_core import events as ev
from ioc_core.access.roles import CREATE_ROLES, NOTE_ROLES, SYSTEM, Principal, Role
from ioc_core.db import new_id, transaction
from ioc_core.errors import Forbidden, ValidationFailed
from ioc_core.incidents import keys, sla
from ioc_core.incidents.attachments import Upload, check_photos, remove_files
from ioc_core.incidents.audit import sha256_text
from ioc_core.incidents.common import (
    Detail,
    append,
    check_location,
    deadline_for,
    hold_reporters,
    incident_event,
    local_year,
    require,
    store_photos,
)
from ioc_core.incidents.duplicate_search import best_candidate, find_primary, merge_rows
from ioc_core.incidents.lifecycle import PHASE, State
from ioc_core.incidents.models import Entry, Incident, Reporter, ReportKey, TimelineEntry
from ioc_core.incidents.queries import get_detail
from ioc_core.incidents.schemas import LocationIn, ReportIn
from ioc_core.incidents.writes import insert_new
from ioc_core.outbox import outbox_rows

if TYPE_CHECKING:
    from ioc_core.runtime import Core


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
    require(principal, CREATE_ROLES, "report incidents")
    if data.draft and not principal.is_staff:
        # A draft is a call-taker's unfinished form (the switchboard creates it on behalf of
        # the agent who answered); no other role can see drafts, so none may create them.
        raise Forbidden("only staff create drafts", error_id="draft-not-allowed")
    if data.internal_note:
        require(principal, NOTE_ROLES, "add an internal note")
    scope, fp = "", ""
    if idempotency_key is not None:
        keys.check_key(idempotency_key)
        scope, fp = keys.scope_of(principal), keys.fingerprint(data)
        done = await _repeated(core, scope, idempotency_key, fp, principal)
        if done is not None:
            return done
    cat = await core.catalogue.category(data.category)
    await check_location(core, data.location)
    if len(uploads) > core.settings.max_attachments:
        raise ValidationFailed(
            f"at most {core.settings.max_attachments} photos per incident",
            error_id="too-many-attachments",
        )
    photos = await check_photos(uploads, max_bytes=core.settings.max_attachment_bytes)

    now = core.clock()
    code = await core.tracking.next_code(local_year(core, now))
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
        due_at=deadline_for(core, cat.track, cat.deadline_days, now),
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
    hold_reporters(inc, [reporter])
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
        rows = store_photos(core, inc.id, photos, principal, now, written)
        timeline: list[TimelineEntry] = []
        append(
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
            append(
                timeline,
                inc,
                at=now,
                actor=principal,
                channel=data.channel,
                kind="note",
                data={"entry_id": notes[0].id, "sha256": sha256_text(data.internal_note)},
            )
        out = [
            incident_event(
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
        if not await insert_unless_duplicate(
            core,
            inc,
            lookup=lookup,
            groups=[[inc], [reporter], rows, notes, timeline, outbox_rows(out), keyed],
        ):
            async with transaction(core.sessions) as s:
                primary = await find_primary(core, s, inc) if lookup else None
                if primary is not None:
                    out += merge_rows(
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


async def insert_unless_duplicate(
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
        if lookup and await best_candidate(core, conn, inc) is not None:
            return False
        await insert_new(conn, groups)
    return True
