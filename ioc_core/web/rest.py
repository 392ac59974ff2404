"""REST API under /api/v1: incidents, categories, areas, agencies."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from ioc_core.access.roles import Principal
from ioc_core.catalogue import service as catalogue
from ioc_core.catalogue.service import category_json
from ioc_core.errors import NotFound, ValidationFailed
from ioc_core.http import json_response, loads_json, parse_model, parse_query, read_model
from ioc_core.incidents import commands, common, queries, reporting, views
from ioc_core.incidents.keys import FIELD as IDEMPOTENCY_KEY
from ioc_core.incidents.lifecycle import State
from ioc_core.incidents.schemas import (
    PHONE_PATTERN,
    Channel,
    EntryIn,
    EscalateIn,
    MergeIn,
    Priority,
    RatingIn,
    ReportIn,
    Strict,
    TransitionIn,
    UnmergeIn,
    UpdateIn,
)
from ioc_core.runtime import Core
from ioc_core.web.auth import principal_of
from ioc_core.web.forms import read_multipart
from ioc_core.web.keys import CORE

routes = web.RouteTableDef()
API = "/api/v1"


class ListQuery(Strict):
    state: list[State] = Field(default_factory=list)
    phase: list[Literal["open", "active", "resolved", "closed"]] = Field(default_factory=list)
    category: str | None = Field(default=None, max_length=64)
    group: str | None = Field(default=None, max_length=64)
    channel: Channel | None = None
    area: str | None = Field(default=None, max_length=32)
    agency: str | None = Field(default=None, max_length=32)
    priority: Priority | None = None
    track: Literal["timed", "immediate"] | None = None
    overdue: bool | None = None
    escalated: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = Field(default=None, max_length=200)
    mine: bool = False
    code: str | None = Field(default=None, max_length=32)
    reporter_phone: str | None = Field(default=None, max_length=16, pattern=PHONE_PATTERN)
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=200)
    order: Literal["asc", "desc"] = "desc"
    total: bool = False


class AreaQuery(Strict):
    parent: str | None = Field(default=None, max_length=32)
    q: str | None = Field(default=None, max_length=100)
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


@routes.get(f"{API}/categories")
async def list_categories(request: web.Request) -> web.Response:
    cats = await request.app[CORE].catalogue.categories()
    return json_response({"items": [category_json(c) for c in cats]})


@routes.get(f"{API}/categories/{{code}}")
async def get_category(request: web.Request) -> web.Response:
    try:
        cat = await request.app[CORE].catalogue.category(request.match_info["code"])
    except ValidationFailed:
        raise NotFound(
            f"no category {request.match_info['code']!r}", error_id="category-not-found"
        ) from None
    return json_response(category_json(cat))


@routes.get(f"{API}/areas")
async def list_areas(request: web.Request) -> web.Response:
    q: AreaQuery = parse_query(request, AreaQuery)
    async with request.app[CORE].sessions() as s:
        rows, total = await catalogue.list_areas(
            s, parent=q.parent, q=q.q, limit=q.limit, offset=q.offset
        )
    return json_response(
        {
            "total": total,
            "items": [
                {
                    "code": a.code,
                    "parent": a.parent_code,
                    "level": a.level,
                    "kind": a.kind,
                    "name": a.name,
                }
                for a in rows
            ],
        }
    )


@routes.get(f"{API}/areas/{{code}}")
async def get_area(request: web.Request) -> web.Response:
    async with request.app[CORE].sessions() as s:
        a = await catalogue.get_area(s, request.match_info["code"])
    return json_response(
        {"code": a.code, "parent": a.parent_code, "level": a.level, "kind": a.kind, "name": a.name}
    )


@routes.get(f"{API}/agencies")
async def list_agencies(request: web.Request) -> web.Response:
    async with request.app[CORE].sessions() as s:
        rows = await catalogue.list_agencies(s)
    return json_response(
        {
            "items": [
                {
                    "code": a.code,
                    "name": {"vi": a.name_vi, "en": a.name_en},
                    "kind": a.kind,
                    "area_code": a.area_code,
                }
                for a in rows
                if a.active
            ]
        }
    )


# ------------------------------------------------------------------ incidents


def _multipart_limits(core: Core) -> dict[str, int]:
    s = core.settings
    return {
        "max_file": s.max_attachment_bytes,
        "max_files": s.max_attachments,
        "max_body": s.max_body_bytes,
    }


async def _allowed(request: web.Request, command: str) -> Principal:
    """The caller, refused before its body is read when its role may never run `command`."""
    principal = await principal_of(request)
    common.check_may(principal, command)
    return principal


async def _detail_response(request: web.Request, ref: str, status: int = 200) -> web.Response:
    core = request.app[CORE]
    principal = await principal_of(request)
    d = await queries.get_detail(core, ref, principal=principal)
    return json_response(await queries.render(core, d, principal=principal), status=status)


@routes.post(f"{API}/incidents")
async def create_incident(request: web.Request) -> web.Response:
    core = request.app[CORE]
    principal = await principal_of(request)
    # Refused before the body is read: a multipart report may carry 25 MB of photos.
    common.check_may(principal, "report")
    if request.content_type == "multipart/form-data":
        fields, uploads = await read_multipart(request, **_multipart_limits(core))
        if "report" not in fields:
            raise ValidationFailed(
                "multipart body needs a 'report' part with the JSON report",
                details={"field": "report"},
            )
        raw = loads_json(fields["report"], what="report")
        unknown = sorted(set(fields) - {"report"})
        if unknown:
            raise ValidationFailed(
                f"unknown form fields: {', '.join(unknown)}",
                details={"errors": [{"field": f, "problem": "unknown field"} for f in unknown]},
            )
        data = parse_model(ReportIn, raw)
    else:
        data, uploads = await read_model(request, ReportIn), []
    # The client's key for this report (keys.py): a repeat returns the first one's incident.
    key = request.headers.get(IDEMPOTENCY_KEY)
    d = await reporting.report_incident(
        core, data, principal=principal, uploads=uploads, idempotency_key=key
    )
    response = json_response(await queries.render(core, d, principal=principal), status=201)
    if d.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@routes.get(f"{API}/incidents")
async def list_incidents(request: web.Request) -> web.Response:
    core = request.app[CORE]
    principal = await principal_of(request)
    q: ListQuery = parse_query(request, ListQuery, multi=frozenset({"state", "phase"}))
    f = queries.ListFilter(**q.model_dump(exclude={"total"}))
    rows, cursor, total = await queries.list_incidents(
        core, f, principal=principal, with_total=q.total
    )
    now = core.clock()
    body: dict[str, Any] = {
        "items": [views.render_summary(i, principal, now) for i in rows],
        "next_cursor": cursor,
    }
    if total is not None:
        body["total"] = total
    return json_response(body)


@routes.get(f"{API}/incidents/{{ref}}")
async def get_incident(request: web.Request) -> web.Response:
    return await _detail_response(request, request.match_info["ref"])


@routes.patch(f"{API}/incidents/{{ref}}")
async def update_incident(request: web.Request) -> web.Response:
    principal = await _allowed(request, "update")
    cmd = await read_model(request, UpdateIn)
    inc = await commands.update_incident(
        request.app[CORE], request.match_info["ref"], cmd, principal=principal
    )
    return await _detail_response(request, inc.id)


@routes.post(f"{API}/incidents/{{ref}}/transitions")
async def transition(request: web.Request) -> web.Response:
    core = request.app[CORE]
    principal = await principal_of(request)
    await common.check_may_transition(core, request.match_info["ref"], principal=principal)
    cmd = await read_model(request, TransitionIn)
    inc = await commands.transition(core, request.match_info["ref"], cmd, principal=principal)
    try:
        return await _detail_response(request, inc.id)
    except NotFound:
        # The change took the incident out of the caller's scope (an agency declining it):
        # answer with what they may still see — the outcome, no reporters or entries.
        return json_response(views.render_summary(inc, principal, core.clock()))


async def _entry(request: web.Request, kind: str) -> web.Response:
    principal = await _allowed(request, kind)
    cmd = await read_model(request, EntryIn)
    entry = await commands.add_entry(
        request.app[CORE], request.match_info["ref"], cmd, kind=kind, principal=principal
    )
    return json_response(
        {
            "id": entry.id,
            "kind": entry.kind,
            "body": entry.body,
            "created_at": entry.created_at.isoformat(),
        },
        status=201,
    )


@routes.post(f"{API}/incidents/{{ref}}/replies")
async def add_reply(request: web.Request) -> web.Response:
    return await _entry(request, "reply")


@routes.post(f"{API}/incidents/{{ref}}/notes")
async def add_note(request: web.Request) -> web.Response:
    return await _entry(request, "note")


@routes.post(f"{API}/incidents/{{ref}}/rating")
async def rate(request: web.Request) -> web.Response:
    """CH-4: the reporter rates the handling (1-5) once there is a result."""
    principal = await _allowed(request, "rate")
    cmd = await read_model(request, RatingIn)
    r = await commands.rate(request.app[CORE], request.match_info["ref"], cmd, principal=principal)
    return json_response(views.render_rating(r), status=201)


@routes.post(f"{API}/incidents/{{ref}}/attachments")
async def add_attachments(request: web.Request) -> web.Response:
    core = request.app[CORE]
    principal = await principal_of(request)
    # Role, scope and ownership before the body: up to 25 MB a caller may not send at all.
    await common.check_may_attach(core, request.match_info["ref"], principal=principal)
    fields, uploads = await read_multipart(request, **_multipart_limits(core))
    if fields:
        raise ValidationFailed(
            f"unknown form fields: {', '.join(sorted(fields))}",
            details={"errors": [{"field": f, "problem": "unknown field"} for f in sorted(fields)]},
        )
    await commands.attach(core, request.match_info["ref"], uploads, principal=principal)
    return await _detail_response(request, request.match_info["ref"], status=201)


@routes.get(f"{API}/incidents/{{ref}}/attachments/{{attachment_id}}")
async def get_attachment(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    att = await queries.get_attachment(
        core,
        request.match_info["ref"],
        request.match_info["attachment_id"],
        principal=await principal_of(request),
    )
    return web.FileResponse(
        core.settings.attachments_dir / att.path,
        headers={"Content-Type": att.content_type, "X-Content-Type-Options": "nosniff"},
    )


@routes.post(f"{API}/incidents/{{ref}}/merge")
async def merge(request: web.Request) -> web.Response:
    principal = await _allowed(request, "merge")
    cmd = await read_model(request, MergeIn)
    inc = await commands.merge(
        request.app[CORE], request.match_info["ref"], cmd, principal=principal
    )
    return await _detail_response(request, inc.id)


@routes.post(f"{API}/incidents/{{ref}}/unmerge")
async def unmerge(request: web.Request) -> web.Response:
    principal = await _allowed(request, "merge")
    cmd = await read_model(request, UnmergeIn)
    inc = await commands.unmerge(
        request.app[CORE], request.match_info["ref"], cmd, principal=principal
    )
    return await _detail_response(request, inc.id)


@routes.post(f"{API}/incidents/{{ref}}/escalation")
async def escalation(request: web.Request) -> web.Response:
    principal = await _allowed(request, "escalate")
    cmd = await read_model(request, EscalateIn)
    inc = await commands.escalate(
        request.app[CORE], request.match_info["ref"], cmd, principal=principal
    )
    return await _detail_response(request, inc.id)


@routes.get(f"{API}/incidents/{{ref}}/timeline")
async def timeline(request: web.Request) -> web.Response:
    items = await queries.render_timeline(
        request.app[CORE], request.match_info["ref"], principal=await principal_of(request)
    )
    return json_response({"items": items})
