"""Open311 GeoReport v2 (https://wiki.open311.org/GeoReport_v2) under /open311/v2/.

Service codes are category codes; service_request_id is the tracking code. Errors use the
spec's own format: a list of {code, description}. JSON and XML are both served.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ioc_core.catalogue.service import CategoryInfo
from ioc_core.errors import IocError, NotFound, UnsupportedMedia, ValidationFailed
from ioc_core.http import json_response, parse_model, refuse_forbidden_fields
from ioc_core.i18n import pick_language, t
from ioc_core.incidents import common, queries, reporting
from ioc_core.incidents.models import Incident
from ioc_core.incidents.schemas import ReportIn
from ioc_core.runtime import Core
from ioc_core.web.auth import principal_of
from ioc_core.web.forms import read_form
from ioc_core.web.keys import CORE

routes = web.RouteTableDef()
BASE = "/open311/v2"
POST_FIELDS = frozenset(
    {
        "api_key",
        "jurisdiction_id",
        "service_code",
        "lat",
        "long",
        "address_string",
        "address_id",
        "email",
        "device_id",
        "account_id",
        "first_name",
        "last_name",
        "phone",
        "description",
        "media_url",
    }
)
LIST_FIELDS = frozenset(
    {
        "jurisdiction_id",
        "service_request_id",
        "service_code",
        "start_date",
        "end_date",
        "status",
        "api_key",
    }
)
MAX_RESULTS = 1000
# Every field of a service request together is a few kilobytes (descriptions are capped).
FORM_MAX_BYTES = 128 * 1024


class _Fmt:
    """Renders a list of records as JSON or as the spec's XML (root/item element names)."""

    def __init__(self, request: web.Request) -> None:
        fmt = request.match_info.get("fmt", "json")
        if fmt not in ("json", "xml"):
            raise NotFound(f"format {fmt!r} is not served; use .json or .xml")
        self.xml = fmt == "xml"

    def render(self, items: Any, root: str, item: str, status: int = 200) -> web.Response:
        if not self.xml:
            return json_response(items, status=status)
        top = ET.Element(root)
        for record in items if isinstance(items, list) else [items]:
            el = ET.SubElement(top, item) if item else top
            _xml_fill(el, record)
        body = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(top, encoding="utf-8")
        return web.Response(body=body, status=status, content_type="text/xml", charset="utf-8")


def _xml_fill(el: ET.Element, record: dict[str, Any]) -> None:
    for key, value in record.items():
        if isinstance(value, list):
            holder = ET.SubElement(el, key)
            for v in value:
                _xml_fill(ET.SubElement(holder, key.rstrip("s") or key), v)
        elif isinstance(value, dict):
            _xml_fill(ET.SubElement(el, key), value)
        else:
            ET.SubElement(el, key).text = (
                ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )


def render_open311_error(request: web.Request, err: IocError) -> web.Response:
    items = [{"code": err.status, "description": err.message}]
    try:
        return _Fmt(request).render(items, "errors", "error", status=err.status)
    except IocError:
        return json_response(items, status=err.status)


def _check_jurisdiction(request: web.Request, params: Mapping[str, Any]) -> None:
    wanted = params.get("jurisdiction_id")
    ours = request.app[CORE].settings.open311_jurisdiction
    if wanted and wanted != ours:
        raise NotFound(f"jurisdiction_id {wanted!r} is not served here (this is {ours!r})")


def _service(c: CategoryInfo, lang: str) -> dict[str, Any]:
    return {
        "service_code": c.code,
        "service_name": c.name_vi if lang == "vi" else c.name_en,
        "description": (c.description_vi if lang == "vi" else c.description_en)
        or (c.name_vi if lang == "vi" else c.name_en),
        "metadata": False,
        "type": "realtime",
        "keywords": c.keywords,
        "group": c.group_code,
    }


@routes.get(BASE + "/services.{fmt}")
async def services(request: web.Request) -> web.Response:
    fmt = _Fmt(request)
    _check_jurisdiction(request, request.query)
    lang = pick_language(request.headers.get("Accept-Language"))
    cats = await request.app[CORE].catalogue.categories()
    # Only leaves are requestable; a group like "giao_thong" is a heading in Open311 terms.
    parents = {c.parent_code for c in cats if c.parent_code}
    items = [_service(c, lang) for c in cats if c.code not in parents]
    return fmt.render(items, "services", "service")


@routes.get(BASE + "/services/{code}.{fmt}")
async def service_definition(request: web.Request) -> web.Response:
    fmt = _Fmt(request)
    _check_jurisdiction(request, request.query)
    try:
        cat = await request.app[CORE].catalogue.category(request.match_info["code"])
    except ValidationFailed:
        raise NotFound(f"service_code {request.match_info['code']!r} not found") from None
    return fmt.render({"service_code": cat.code, "attributes": []}, "service_definition", "")


def _status(inc: Incident) -> str:
    return "open" if inc.phase in ("open", "active") else "closed"


def _request_record(
    core: Core,
    inc: Incident,
    extras: queries.PublicExtras,
    categories: Mapping[str, CategoryInfo],
    agencies: Mapping[str, str],
    lang: str,
) -> dict[str, Any]:
    media = (
        f"{core.settings.base_url()}/api/v1/incidents/{inc.id}/attachments/"
        f"{extras.first_attachment_id}"
        if extras.first_attachment_id
        else None
    )
    cat = categories.get(inc.category_code)
    # A merged duplicate follows its primary: that is where the work happens.
    followed = extras.primary or inc
    notes = extras.last_reply if extras.last_reply is not None else t(f"state.{inc.state}", lang)
    if extras.primary is not None:
        notes = f"{notes}: {extras.primary.code}"
    return {
        "service_request_id": inc.code,
        "status": _status(followed),
        "status_notes": notes,
        "service_name": (cat.name_vi if lang == "vi" else cat.name_en)
        if cat
        else inc.category_code,
        "service_code": inc.category_code,
        "description": inc.description or inc.title,
        "agency_responsible": agencies.get(inc.agency_code) if inc.agency_code else None,
        "service_notice": None,
        "requested_datetime": inc.created_at.isoformat(),
        "updated_datetime": inc.updated_at.isoformat(),
        "expected_datetime": inc.due_at.isoformat() if inc.due_at else None,
        "address": inc.address or None,
        "address_id": inc.area_code,
        "zipcode": None,
        "lat": inc.lat,
        "long": inc.lon,
        "media_url": media,
    }


async def _records(core: Core, rows: Sequence[Incident], lang: str) -> list[dict[str, Any]]:
    """A page of requests with a constant number of queries: extras batched, names from the
    catalogue's cache."""
    extras = await queries.public_extras(core, rows)
    # Every category an incident has, inactive ones too: a retired category still names it.
    categories: dict[str, CategoryInfo] = {}
    for code in {i.category_code for i in rows}:
        with contextlib.suppress(ValidationFailed):
            categories[code] = await core.catalogue.category(code)
    agencies = {
        code: await core.catalogue.agency_name(code, lang)
        for code in {i.agency_code for i in rows if i.agency_code}
    }
    return [_request_record(core, i, extras[i.id], categories, agencies, lang) for i in rows]


def _parse_dt(name: str, raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{name} must be a W3C date-time, got {raw!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@routes.get(BASE + "/requests.{fmt}")
async def list_requests(request: web.Request) -> web.Response:
    fmt = _Fmt(request)
    q = request.query
    _check_jurisdiction(request, q)
    unknown = sorted(set(q) - LIST_FIELDS)
    if unknown:
        raise ValidationFailed(f"unknown parameters: {', '.join(unknown)}")
    core = request.app[CORE]
    principal = (
        await principal_of(request, token=q["api_key"])
        if q.get("api_key")
        else await principal_of(request)
    )
    lang = pick_language(request.headers.get("Accept-Language"))
    ids = [x for x in q.get("service_request_id", "").split(",") if x]
    rows: Sequence[Incident]
    if ids:
        rows = await queries.get_many(core, ids[:MAX_RESULTS], principal=principal)
    else:
        status = q.get("status", "")
        bad = set(status.split(",")) - {"open", "closed", ""}
        if bad:
            raise ValidationFailed(f"status must be open or closed, got {', '.join(bad)}")
        phases = [
            p
            for s in status.split(",")
            if s
            for p in (("open", "active") if s == "open" else ("resolved", "closed"))
        ]
        end = _parse_dt("end_date", q.get("end_date")) or core.clock()
        start = _parse_dt("start_date", q.get("start_date")) or end - timedelta(days=90)
        if q.get("service_code"):
            await core.catalogue.category(q["service_code"])
        f = queries.ListFilter(
            followed_phase=phases,
            category=q.get("service_code"),
            since=start,
            until=end,
            limit=MAX_RESULTS,
        )
        rows, _cursor, _total = await queries.list_incidents(core, f, principal=principal)
    return fmt.render(await _records(core, rows, lang), "service_requests", "request")


@routes.get(BASE + "/requests/{code}.{fmt}")
async def get_request(request: web.Request) -> web.Response:
    fmt = _Fmt(request)
    _check_jurisdiction(request, request.query)
    principal = (
        await principal_of(request, token=request.query["api_key"])
        if request.query.get("api_key")
        else await principal_of(request)
    )
    lang = pick_language(request.headers.get("Accept-Language"))
    try:
        d = await queries.get_detail(
            request.app[CORE], request.match_info["code"], principal=principal
        )
    except NotFound:
        raise NotFound(f"service_request_id {request.match_info['code']!r} not found") from None
    records = await _records(request.app[CORE], [d.incident], lang)
    return fmt.render(records, "service_requests", "request")


@routes.post(BASE + "/requests.{fmt}")
async def create_request(request: web.Request) -> web.Response:
    fmt = _Fmt(request)
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise UnsupportedMedia(
            "Open311 requests are form-encoded (application/x-www-form-urlencoded)"
        )
    core = request.app[CORE]
    # A key in the header or the query is checked before the body is read. The spec puts
    # api_key in the form itself, so the form is capped at a few kilobytes (it takes no
    # files: photos go by media_url) and only then checked.
    early = request.headers.get("Authorization") or request.query.get("api_key")
    if early:
        principal = (
            await principal_of(request, token=request.query["api_key"])
            if request.query.get("api_key")
            else await principal_of(request)
        )
        common.check_may(principal, "report")
    form = await read_form(request, max_body=min(FORM_MAX_BYTES, core.settings.max_body_bytes))
    params = dict(form)
    refuse_forbidden_fields(params.items())
    unknown = sorted(k for k in form if k not in POST_FIELDS and not k.startswith("attribute["))
    if unknown:
        raise ValidationFailed(f"unknown parameters: {', '.join(unknown)}")
    _check_jurisdiction(request, form)
    if not early:
        if not params.get("api_key"):
            raise IocError(
                "api_key is required to create a service request", error_id="api-key-required"
            ).with_status(403)
        principal = await principal_of(request, token=params["api_key"])
        common.check_may(principal, "report")
    if not params.get("service_code"):
        raise ValidationFailed("service_code is required")
    try:
        await core.catalogue.category(params["service_code"])
    except ValidationFailed:
        raise NotFound(f"service_code {params['service_code']!r} not found") from None
    location: dict[str, Any] = {"address": params.get("address_string", "")}
    if params.get("lat") or params.get("long"):
        try:
            location |= {"lat": float(params.get("lat", "")), "lon": float(params.get("long", ""))}
        except ValueError:
            raise ValidationFailed("lat and long must both be decimal degrees") from None
    if params.get("address_id"):
        location["area_code"] = params["address_id"]
    if "lat" not in location and "area_code" not in location:
        raise ValidationFailed(
            "a location is required: lat and long, or address_id "
            "(an area code from /api/v1/areas); an address_string alone "
            "cannot be placed on the map"
        )
    description = params.get("description", "")
    if params.get("media_url"):
        description = f"{description}\n\nmedia_url: {params['media_url']}".strip()
    name = " ".join(x for x in (params.get("first_name", ""), params.get("last_name", "")) if x)
    data = parse_model(
        ReportIn,
        {
            "category": params["service_code"],
            "description": description,
            "channel": "web",
            "location": location,
            "reporter": {
                "name": name,
                "email": params.get("email", ""),
                "phone": params.get("phone", ""),
                "channel_user_id": params.get("account_id") or params.get("device_id", ""),
            },
        },
    )
    created = await reporting.report_incident(core, data, principal=principal)
    inc = created.incident
    lang = pick_language(request.headers.get("Accept-Language"))
    if created.primary is not None:
        notice = t("open311.notice_merged", lang, code=inc.code, primary=created.primary.code)
    else:
        notice = t("open311.notice", lang, code=inc.code)
    return fmt.render(
        [
            {
                "service_request_id": inc.code,
                "service_notice": notice,
                "account_id": params.get("account_id"),
            }
        ],
        "service_requests",
        "request",
        status=201,
    )
