"""Incident commands on stored incidents. Each is one transaction that writes the change, its
timeline rows and its outbox events together; nothing else in the core writes incidents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select

from ioc_core import events as ev
from ioc_core.access.roles import (
    ATTACH_ROLES,
    ESCALATE_ROLES,
    MERGE_ROLES,
    NOTE_ROLES,
    RATE_ROLES,
    REPLY_ROLES,
    UPDATE_ROLES,
    Principal,
    Role,
)
from ioc_core.db import new_id, transaction
from ioc_core.errors import Conflict, Forbidden, ValidationFailed
from ioc_core.incidents import lifecycle, sla, views
from ioc_core.incidents.access_log import access_row
from ioc_core.incidents.attachments import Upload, check_photos, remove_files
from ioc_core.incidents.audit import sha256_text
from ioc_core.incidents.common import (
    OPEN_PHASES,
    append,
    check_location,
    check_scope,
    deadline_for,
    incident_event,
    load_incident,
    owns,
    require,
    set_state,
    store_photos,
)
from ioc_core.incidents.duplicate_search import merge_rows
from ioc_core.incidents.lifecycle import PHASE, Phase, State
from ioc_core.incidents.models import Attachment, Entry, Incident, Rating, Reporter
from ioc_core.incidents.schemas import (
    EntryIn,
    EscalateIn,
    MergeIn,
    RatingIn,
    TransitionIn,
    UnmergeIn,
    UpdateIn,
)
from ioc_core.outbox import add_events

if TYPE_CHECKING:
    from ioc_core.runtime import Core


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
        inc = await load_incident(s, ref, lock=True)
        check_scope(inc, principal)
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
        set_state(inc, t.target, now)
        append(
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
                incident_event(
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
    require(principal, UPDATE_ROLES, "edit incidents")
    changes = cmd.model_dump(exclude_unset=True)
    if not changes:
        raise ValidationFailed("nothing to update", error_id="empty-update")
    cat = await core.catalogue.category(cmd.category) if cmd.category else None
    await check_location(core, cmd.location)
    async with transaction(core.sessions) as s:
        inc = await load_incident(s, ref, lock=True)
        if inc.phase not in OPEN_PHASES:
            raise Conflict(
                f"a {inc.state} incident cannot be edited", error_id="incident-not-editable"
            )
        now = core.clock()
        if cat is not None:
            inc.category_code, inc.category_group, inc.track = cat.code, cat.group_code, cat.track
            inc.due_at = deadline_for(core, cat.track, cat.deadline_days, inc.created_at)
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
        append(
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
            append(
                s,
                inc,
                at=now,
                actor=principal,
                channel=channel,
                kind=views.REPORTER_CHANGED,
                data=reporter_change,
            )
            s.add(access_row(principal, inc.id, what="reporter-changed", at=now))
        add_events(s, [incident_event(ev.INCIDENT_UPDATED, inc, fields=fields)])
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
    require(principal, REPLY_ROLES if kind == "reply" else NOTE_ROLES, f"add a {kind}")
    async with transaction(core.sessions) as s:
        inc = await load_incident(s, ref, lock=True)
        check_scope(inc, principal)
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
        append(
            s,
            inc,
            at=now,
            actor=principal,
            channel=channel,
            kind=kind,
            data={"entry_id": entry.id, "sha256": sha256_text(cmd.body)},
        )
        name = ev.INCIDENT_REPLY_ADDED if kind == "reply" else ev.INCIDENT_NOTE_ADDED
        add_events(s, [incident_event(name, inc, entry_id=entry.id)])
    core.relay.notify()
    return entry


async def rate(core: Core, ref: str, cmd: RatingIn, *, principal: Principal) -> Rating:
    """CH-4: the reporter's satisfaction, once the agency reported a result. A citizen rates
    their own report; a channel adapter rates for the reporter it knows by channel user id."""
    require(principal, RATE_ROLES, "rate the handling")
    async with transaction(core.sessions) as s:
        inc = await load_incident(s, ref, lock=True)
        check_scope(inc, principal)
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
        append(
            s,
            inc,
            at=now,
            actor=principal,
            channel=cmd.channel,
            kind="rated",
            data={"score": cmd.score, "sha256": sha256_text(cmd.comment)},
        )
        add_events(
            s, [incident_event(ev.INCIDENT_RATED, inc, score=cmd.score, channel=cmd.channel)]
        )
    core.relay.notify()
    return rating


async def attach(
    core: Core, ref: str, uploads: Sequence[Upload], *, principal: Principal, channel: str = "web"
) -> list[Attachment]:
    require(principal, ATTACH_ROLES, "attach photos")
    if not uploads:
        raise ValidationFailed(
            "no photo in the request", details={"field": "photo"}, error_id="attachment-missing"
        )
    photos = await check_photos(uploads, max_bytes=core.settings.max_attachment_bytes)
    root = core.settings.attachments_dir
    written: list[str] = []
    try:
        async with transaction(core.sessions) as s:
            inc = await load_incident(s, ref, lock=True)
            check_scope(inc, principal)
            if principal.role is Role.CITIZEN and not await owns(s, inc, principal):
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
            rows = store_photos(core, inc.id, photos, principal, now, written)
            s.add_all(rows)
            for a in rows:
                append(
                    s,
                    inc,
                    at=now,
                    actor=principal,
                    channel=channel,
                    kind="attachment",
                    data={"attachment_id": a.id, "sha256": a.sha256},
                )
            add_events(
                s,
                [
                    incident_event(ev.INCIDENT_ATTACHMENT_ADDED, inc, attachment_id=a.id)
                    for a in rows
                ],
            )
    except BaseException:
        remove_files(root, written)
        raise
    core.relay.notify()
    return rows


async def merge(
    core: Core, ref: str, cmd: MergeIn, *, principal: Principal, channel: str = "web"
) -> Incident:
    require(principal, MERGE_ROLES, "merge incidents")
    async with transaction(core.sessions) as s:
        inc = await load_incident(s, ref, lock=True)
        primary = await load_incident(s, cmd.primary, lock=True)
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
        out = merge_rows(
            s, inc, primary, at=core.clock(), actor=principal, channel=channel, note=cmd.note
        )
        add_events(s, out)
    core.relay.notify()
    return inc


async def unmerge(
    core: Core, ref: str, cmd: UnmergeIn, *, principal: Principal, channel: str = "web"
) -> Incident:
    """Staff undo a merge (RP-8): the incident gets back the state it had."""
    require(principal, MERGE_ROLES, "unmerge incidents")
    async with transaction(core.sessions) as s:
        inc = await load_incident(s, ref, lock=True)
        if inc.state != State.MERGED.value or inc.primary_id is None:
            raise Conflict(f"{inc.code} is not merged", error_id="not-merged")
        primary = await load_incident(s, inc.primary_id, lock=True)
        now = core.clock()
        restored = State(inc.merged_from_state or State.NEW.value)
        set_state(inc, restored, now)
        inc.primary_id = None
        inc.merged_from_state = None
        primary.reporter_count = max(1, primary.reporter_count - inc.reporter_count)
        append(
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
        append(
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
                incident_event(
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
    require(principal, ESCALATE_ROLES, "escalate incidents")
    async with transaction(core.sessions) as s:
        inc = await load_incident(s, ref, lock=True)
        if inc.track != sla.Track.IMMEDIATE.value:
            raise Conflict(
                "only immediate-track incidents escalate; timed ones have deadlines",
                error_id="not-immediate",
            )
        inc.escalated = cmd.escalated
        append(
            s,
            inc,
            at=core.clock(),
            actor=principal,
            channel=channel,
            kind="escalation",
            note=cmd.note,
            data={"escalated": cmd.escalated},
        )
        add_events(s, [incident_event(ev.INCIDENT_ESCALATED, inc, escalated=cmd.escalated)])
    core.relay.notify()
    return inc
