"""The one serialisation layer: what each role sees of an incident (RP-3, RP-4, PL-2).

Every endpoint (REST, Open311, the in-process API) renders incidents through here. The rules
come from `ioc_core.access.roles.VISIBILITY`; nothing else decides on reporter identity,
contact or internal notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ioc_core.access.roles import VISIBILITY, Principal, Visibility
from ioc_core.i18n import both
from ioc_core.incidents import lifecycle
from ioc_core.incidents.lifecycle import State
from ioc_core.incidents.models import (
    Attachment,
    Entry,
    Incident,
    Rating,
    Reporter,
    TimelineEntry,
)
from ioc_core.incidents.sla import is_overdue

# The timeline kind of a change to a reporter's details; its data holds the old and new value
# of each changed field, rendered by `reporter_change_visible`.
REPORTER_CHANGED = "reporter_changed"
REPORTER_IDENTITY = frozenset({"name", "channel_user_id"})
REPORTER_CONTACT = frozenset({"phone", "email"})


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


@dataclass
class Rendered:
    """A serialised value plus the incidents whose confidential reporter it revealed."""

    body: Any
    revealed: list[str] = field(default_factory=list)


def render_reporter(r: Reporter, principal: Principal, *, own: bool) -> dict[str, Any] | None:
    """None when the viewer may not see this reporter at all."""
    vis = VISIBILITY[principal.role]
    if own:  # a citizen always sees what they themselves gave
        identity = contact = True
    elif r.confidential:
        identity = contact = vis.confidential
    else:
        identity, contact = vis.reporter_identity, vis.reporter_contact
    if not identity and not contact:
        return None
    out: dict[str, Any] = {
        "id": r.id,
        "channel": r.channel,
        "confidential": r.confidential,
        "created_at": _iso(r.created_at),
    }
    if identity:
        out |= {"name": r.name, "channel_user_id": r.channel_user_id}
    if contact:
        out |= {"phone": r.phone, "email": r.email}
    return out


def render_summary(inc: Incident, principal: Principal, now: datetime) -> dict[str, Any]:
    """List view: no reporters, no entries (safe for every role in scope)."""
    state = State(inc.state)
    finished = lifecycle.PHASE[state] in (lifecycle.Phase.RESOLVED, lifecycle.Phase.CLOSED)
    out: dict[str, Any] = {
        "id": inc.id,
        "code": inc.code,
        "title": inc.title,
        "category": inc.category_code,
        "category_group": inc.category_group,
        "state": inc.state,
        "state_label": both(f"state.{inc.state}"),
        "phase": inc.phase,
        "track": inc.track,
        "priority": inc.priority,
        "severity": inc.severity,
        "channel": inc.channel,
        "language": inc.language,
        "location": {
            "lat": inc.lat,
            "lon": inc.lon,
            "address": inc.address,
            "area_code": inc.area_code,
        },
        "agency": inc.agency_code,
        "reporter_count": inc.reporter_count,
        "due_at": _iso(inc.due_at),
        "overdue": is_overdue(inc.due_at, now, finished=finished),
        "escalated": inc.escalated,
        "created_at": _iso(inc.created_at),
        "updated_at": _iso(inc.updated_at),
        "resolved_at": _iso(inc.resolved_at),
        "closed_at": _iso(inc.closed_at),
        "primary_id": inc.primary_id,
    }
    if principal.is_staff:
        out["external_ref"] = inc.external_ref
    return out


def render_detail(
    *,
    incident: Incident,
    reporters: Sequence[Reporter],
    entries: Sequence[Entry],
    attachments: Sequence[Attachment],
    duplicates: Sequence[Incident],
    primary: Incident | None,
    own: bool,
    principal: Principal,
    now: datetime,
    base_url: str = "",
    scores: Sequence[int] = (),
) -> Rendered:
    vis = VISIBILITY[principal.role]
    body = render_summary(incident, principal, now)
    body["description"] = incident.description
    revealed: list[str] = []
    shown = []
    for r in reporters:
        item = render_reporter(r, principal, own=own)
        if item is not None:
            shown.append(item)
            if r.confidential and not own and "name" in item:
                revealed.append(incident.id)
    body["reporters"] = shown
    body["replies"] = [_entry(e) for e in entries if e.kind == "reply"]
    if vis.internal_notes:
        body["notes"] = [_entry(e) for e in entries if e.kind == "note"]
    body["attachments"] = [render_attachment(a, incident, base_url) for a in attachments]
    if primary is not None:
        body["primary"] = {
            "id": primary.id,
            "code": primary.code,
            "state": primary.state,
            "state_label": both(f"state.{primary.state}"),
        }
    body["duplicates"] = [
        {"id": d.id, "code": d.code, "created_at": _iso(d.created_at)} for d in duplicates
    ]
    if scores:
        body["satisfaction"] = {
            "count": len(scores),
            "average": round(sum(scores) / len(scores), 2),
        }
    body["actions"] = lifecycle.available_actions(State(incident.state), principal.role.value)
    return Rendered(body, sorted(set(revealed)))


def _entry(e: Entry) -> dict[str, Any]:
    return {
        "id": e.id,
        "body": e.body,
        "author_role": e.author_role,
        "agency": e.agency_code,
        "created_at": _iso(e.created_at),
    }


def render_attachment(a: Attachment, inc: Incident, base_url: str = "") -> dict[str, Any]:
    return {
        "id": a.id,
        "filename": a.filename,
        "content_type": a.content_type,
        "size": a.size,
        "width": a.width,
        "height": a.height,
        "sha256": a.sha256,
        "created_at": _iso(a.created_at),
        "url": f"{base_url}/api/v1/incidents/{inc.id}/attachments/{a.id}",
    }


def render_rating(r: Rating) -> dict[str, Any]:
    return {"score": r.score, "comment": r.comment, "created_at": _iso(r.created_at)}


# Timeline kinds the public may follow (state changes, replies), without actors or notes.
PUBLIC_TIMELINE = frozenset(
    {
        "created",
        "transition",
        "reply",
        "merged",
        "unmerged",
        "duplicate_added",
        "attachment",
        "rated",
        # That the reporter's details changed is public; the values are not (see below).
        REPORTER_CHANGED,
    }
)


def reporter_change_visible(vis: Visibility, field: str, confidential: Sequence[bool]) -> bool:
    """Whether a viewer may read the old and new value of one reporter field in the timeline.

    `confidential` is the reporter's flag before and after the change: a value is shown only
    to a viewer who may see that field under both, so switching confidentiality off never
    reveals the values that were confidential, nor does switching it on reveal the new ones.
    The flag itself is shown to whoever sees the reporter at all under both."""

    def sees(conf: bool) -> bool:
        if conf:
            return vis.confidential
        if field in REPORTER_IDENTITY:
            return vis.reporter_identity
        if field in REPORTER_CONTACT:
            return vis.reporter_contact
        return vis.reporter_identity or vis.reporter_contact

    return all(sees(c) for c in confidential)


def _reporter_change(row: TimelineEntry, vis: Visibility) -> tuple[dict[str, Any], bool]:
    """The visible part of a `reporter_changed` row's data, and whether it shows values of a
    confidential reporter (an access to log)."""
    # Missing flags count as confidential: a row that cannot be judged shows no values.
    flags = [bool(row.data.get(k, True)) for k in ("was_confidential", "is_confidential")]
    changes = {
        name: change
        for name, change in row.data.get("changes", {}).items()
        if reporter_change_visible(vis, name, flags)
    }
    return changes, bool(changes) and any(flags)


def render_timeline(rows: Sequence[TimelineEntry], principal: Principal) -> list[dict[str, Any]]:
    body: list[dict[str, Any]] = render_timeline_audited(rows, principal).body
    return body


def render_timeline_audited(rows: Sequence[TimelineEntry], principal: Principal) -> Rendered:
    """The timeline as `principal` may see it; `revealed` names the incident when it showed
    values of a confidential reporter (old or new) to the viewer."""
    vis = VISIBILITY[principal.role]
    out = []
    revealed: list[str] = []
    for row in rows:
        if not vis.full_timeline and row.kind not in PUBLIC_TIMELINE:
            continue
        item: dict[str, Any] = {
            "seq": row.seq,
            "at": _iso(row.at),
            "kind": row.kind,
            "from_state": row.from_state,
            "to_state": row.to_state,
            "actor_role": row.actor_role,
            "channel": row.channel,
        }
        if vis.full_timeline:
            item |= {
                "actor": row.actor,
                "note": row.note,
                "data": row.data,
                "hash": row.hash,
                "prev_hash": row.prev_hash,
            }
        elif row.kind == "transition" and row.data.get("action") in ("resolve", "reject"):
            # The reason for a result or a refusal is the public answer to the reporter.
            item["note"] = row.note
        if row.kind == REPORTER_CHANGED:
            changes, confidential = _reporter_change(row, vis)
            if vis.full_timeline:
                item["data"] = {"reporter_id": row.data.get("reporter_id"), "changes": changes}
            if changes:
                item["changes"] = changes
            if confidential:
                revealed.append(row.incident_id)
        out.append(item)
    return Rendered(out, sorted(set(revealed)))
