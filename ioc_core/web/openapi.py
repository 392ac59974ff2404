"""OpenAPI 3.1 document of the hub, built from the same pydantic models that validate input.

The core describes its own routes (REST under /api/v1, Open311, health); each feature package
contributes its own through `ioc_core.api.openapi.contribute` (ADR 0022), and the document is
composed per application, so it lists exactly the routes that application serves.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ioc_core.access.roles import (
    ATTACH_ROLES,
    CREATE_ROLES,
    ESCALATE_ROLES,
    MERGE_ROLES,
    NOTE_ROLES,
    RATE_ROLES,
    REPLY_ROLES,
    UPDATE_ROLES,
    Role,
)
from ioc_core.api.openapi import (
    ERROR,
    OPENAPI,
    PUBLIC,
    STAFF,
    errors,
    items,
    json_body,
    operation,
    path_param,
    query,
    ref,
    response,
    schemas_of,
)
from ioc_core.http import json_response
from ioc_core.incidents.keys import FIELD as IDEMPOTENCY_KEY
from ioc_core.incidents.keys import KEY_PATTERN, MAX_KEY
from ioc_core.incidents.schemas import (
    EntryIn,
    EscalateIn,
    MergeIn,
    RatingIn,
    ReportIn,
    TransitionIn,
    UnmergeIn,
    UpdateIn,
)
from ioc_core.web.live import openapi_paths as live_paths
from ioc_core.web.open311 import BASE as OPEN311
from ioc_core.web.rest import API, AreaQuery, ListQuery
from ioc_core.web.screens import openapi_paths as screen_paths

routes = web.RouteTableDef()

INCIDENT = {
    "type": "object",
    "description": "Incident as the caller's role may see it "
    "(reporters, notes and contacts depend on the role)",
    "required": ["id", "code", "state", "phase"],
    "properties": {
        "id": {"type": "string"},
        "code": {"type": "string"},
        "state": {"type": "string"},
        "phase": {"type": "string"},
    },
}
OPEN311_ERROR = {
    "type": "array",
    "description": "Open311's own error format",
    "items": {
        "type": "object",
        "required": ["code", "description"],
        "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
    },
}
REF_PARAM = path_param("ref", "id or tracking code of the incident")
CODE_PARAM = path_param("code")
FMT_PARAM = {
    "name": "fmt",
    "in": "path",
    "required": True,
    "description": "json or xml",
    "schema": {"type": "string", "enum": ["json", "xml"]},
}
READERS = PUBLIC  # reading is open; what each role sees is decided by serialisation


def _roles(roles: frozenset[Role]) -> tuple[str, ...]:
    return tuple(r.value for r in Role if r in roles)


# A client that may send the same report twice names it (incidents/keys.py).
IDEMPOTENCY_KEY_PARAM: dict[str, Any] = {
    "name": IDEMPOTENCY_KEY,
    "in": "header",
    "required": False,
    "description": "The client's name for this report (e.g. its channel and inbound message "
    "id). A repeat with the same key files nothing and answers with the incident the first "
    "one made (the Idempotent-Replayed header says so); the same key with a different report "
    "is refused (422 idempotency-key-reused). Keys are per client: another token's key never "
    "names your report.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY, "pattern": KEY_PATTERN},
}
IDEMPOTENT_REPLAYED: dict[str, Any] = {
    "description": "true when this answer repeats an earlier report with the same key",
    "schema": {"type": "string", "enum": ["true"]},
}


# Operations on one incident, keyed by operationId: the links of a created incident point at
# them with its id, so the stateful phase of a fuzzer reaches real incidents.
def _ref_links(*operation_ids: str, at: str = "$response.body#/id") -> dict[str, Any]:
    return {op: {"operationId": op, "parameters": {"ref": at}} for op in operation_ids}


ONE_INCIDENT = ("get_incident", "update_incident", "transition", "add_reply", "add_note", "rate",
                "add_attachments", "get_timeline", "merge", "unmerge", "escalate")  # fmt: skip


def _action(
    op_id: str, summary: str, model: type[Any], roles: tuple[str, ...], status: str = "200"
) -> dict[str, Any]:
    return {
        "post": operation(
            summary,
            roles=roles,
            parameters=[REF_PARAM],
            body=json_body(model),
            ok={status: response("The incident after the change", INCIDENT)},
        )
        | {"operationId": op_id}
    }


def _photos(required: bool) -> dict[str, Any]:
    photo = {"type": "array", "items": {"type": "string", "format": "binary"}}
    return {
        "type": "object",
        "required": ["photo"] if required else [],
        "properties": {"photo": photo},
    }


def _open311() -> dict[str, Any]:
    errs = errors(OPEN311_ERROR)
    xml = {"text/xml": {"schema": {"type": "string"}}}

    def ok(desc: str, status: str = "200") -> dict[str, Any]:
        return {
            status: {
                "description": desc + " (JSON or Open311 XML by the path's format)",
                "content": {"application/json": {"schema": {"type": "array"}}, **xml},
            }
        }

    def get(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return operation(
            summary,
            roles=READERS,
            parameters=params,
            ok=ok(summary),
            error_responses=errs,
            tags=("open311",),
        )

    jurisdiction: dict[str, Any] = {
        "name": "jurisdiction_id",
        "in": "query",
        "schema": {"type": "string"},
    }
    api_key: dict[str, Any] = {"name": "api_key", "in": "query", "schema": {"type": "string"}}
    text = {"type": "string", "maxLength": 5000}
    form_fields = {
        name: ({"type": "number"} if name in ("lat", "long") else text)
        for name in (
            "api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string",
            "address_id", "email", "device_id", "account_id", "first_name", "last_name", "phone",
            "description", "media_url",
        )
    }  # fmt: skip
    form = {"type": "object", "required": ["api_key", "service_code"], "properties": form_fields}
    list_params: list[dict[str, Any]] = [
        jurisdiction,
        api_key,
        *(
            {"name": n, "in": "query", "schema": {"type": "string"}}
            for n in ("service_request_id", "service_code", "start_date", "end_date", "status")
        ),
    ]
    return {
        f"{OPEN311}/services.{{fmt}}": {
            "get": get("Open311 services (the requestable categories)", [FMT_PARAM, jurisdiction])
        },
        f"{OPEN311}/services/{{code}}.{{fmt}}": {
            "get": get("Open311 service definition", [CODE_PARAM, FMT_PARAM, jurisdiction])
        },
        f"{OPEN311}/requests.{{fmt}}": {
            "get": get(
                "Open311 service requests (last 90 days by default)", [FMT_PARAM, *list_params]
            ),
            "post": operation(
                "Open311 create a service request (form-encoded, with an api_key)",
                roles=_roles(CREATE_ROLES),
                parameters=[FMT_PARAM],
                body={
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {"schema": form},
                        "multipart/form-data": {"schema": form},
                    },
                },
                ok=ok("Created", "201"),
                error_responses=errs,
                tags=("open311",),
            ),
        },
        f"{OPEN311}/requests/{{code}}.{{fmt}}": {
            "get": get(
                "Open311 one service request", [CODE_PARAM, FMT_PARAM, jurisdiction, api_key]
            )
        },
    }


def core_paths() -> dict[str, Any]:
    inc = f"{API}/incidents"
    staff = STAFF
    return {
        "/health": {
            "get": operation(
                "Component statuses (database, bus, features)",
                roles=READERS,
                ok={
                    "200": response("Up or degraded"),
                    "503": response("Down"),
                },
                error_responses={},
            )
        },
        f"{API}/openapi.json": {
            "get": operation(
                "This document", roles=READERS, ok={"200": response("OpenAPI 3.1 document")}
            )
        },
        f"{API}/categories": {
            "get": operation(
                "Category tree (flat, with parents)",
                roles=READERS,
                ok={"200": response("Categories", items())},
            )
        },
        f"{API}/categories/{{code}}": {
            "get": operation(
                "One category",
                roles=READERS,
                parameters=[CODE_PARAM],
                ok={"200": response("Category")},
            )
        },
        f"{API}/areas": {
            "get": operation(
                "Administrative areas",
                roles=READERS,
                parameters=query(AreaQuery),
                ok={"200": response("Areas", items())},
            )
        },
        f"{API}/areas/{{code}}": {
            "get": operation(
                "One area", roles=READERS, parameters=[CODE_PARAM], ok={"200": response("Area")}
            )
        },
        f"{API}/agencies": {
            "get": operation("Agencies", roles=READERS, ok={"200": response("Agencies", items())})
        },
        inc: {
            "post": operation(
                "Report an incident (JSON, or multipart with a 'report' JSON part and 'photo' "
                "files)",
                roles=_roles(CREATE_ROLES),
                body={
                    "required": True,
                    "content": {
                        "application/json": {"schema": ref(ReportIn)},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["report"],
                                "properties": {
                                    "report": {"type": "string", "description": "ReportIn as JSON"},
                                    **_photos(False)["properties"],
                                },
                            },
                            "encoding": {"report": {"contentType": "application/json"}},
                        },
                    },
                },
                parameters=[IDEMPOTENCY_KEY_PARAM],
                ok={
                    "201": response("Created", INCIDENT, links=_ref_links(*ONE_INCIDENT))
                    | {"headers": {"Idempotent-Replayed": IDEMPOTENT_REPLAYED}}
                },
            )
            | {"operationId": "report_incident"},
            "get": operation(
                "List incidents (keyset pagination with next_cursor)",
                description="Each role sees its scope: public and citizens what is verified, "
                "agencies what is assigned to them, staff everything.",
                roles=READERS,
                parameters=query(ListQuery, explode=frozenset({"state", "phase"})),
                ok={
                    "200": response(
                        "Incidents",
                        items(INCIDENT),
                        links=_ref_links(*ONE_INCIDENT, at="$response.body#/items/0/id"),
                    )
                },
            ),
        },
        f"{inc}/{{ref}}": {
            "get": operation(
                "One incident",
                roles=READERS,
                parameters=[REF_PARAM],
                ok={"200": response("Incident", INCIDENT)},
            )
            | {"operationId": "get_incident"},
            "patch": operation(
                "Correct fields",
                roles=_roles(UPDATE_ROLES),
                parameters=[REF_PARAM],
                body=json_body(UpdateIn),
                ok={"200": response("Incident", INCIDENT)},
            )
            | {"operationId": "update_incident"},
        },
        f"{inc}/{{ref}}/transitions": _action(
            "transition",
            "Lifecycle action (verify, assign, start, resolve, close, reject, reopen, ...); "
            "which role may take which action is the lifecycle table's",
            TransitionIn,
            (*staff, "agency", "service"),
        ),
        f"{inc}/{{ref}}/replies": {
            "post": operation(
                "Public reply",
                roles=_roles(REPLY_ROLES),
                parameters=[REF_PARAM],
                body=json_body(EntryIn),
                ok={"201": response("Reply")},
            )
            | {"operationId": "add_reply"}
        },
        f"{inc}/{{ref}}/notes": {
            "post": operation(
                "Internal note",
                roles=_roles(NOTE_ROLES),
                parameters=[REF_PARAM],
                body=json_body(EntryIn),
                ok={"201": response("Note")},
            )
            | {"operationId": "add_note"}
        },
        f"{inc}/{{ref}}/rating": {
            "post": operation(
                "Rate the handling 1-5 (the reporter, once resolved)",
                roles=_roles(RATE_ROLES),
                parameters=[REF_PARAM],
                body=json_body(RatingIn),
                ok={"201": response("Rating")},
            )
            | {"operationId": "rate"}
        },
        f"{inc}/{{ref}}/attachments": {
            "post": operation(
                "Add photos (multipart 'photo' files: JPEG, PNG, WebP)",
                roles=_roles(ATTACH_ROLES),
                parameters=[REF_PARAM],
                body={
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _photos(True)}},
                },
                ok={"201": response("Incident", INCIDENT)},
            )
            | {"operationId": "add_attachments"}
        },
        f"{inc}/{{ref}}/attachments/{{attachment_id}}": {
            "get": operation(
                "Download a photo",
                roles=READERS,
                parameters=[REF_PARAM, path_param("attachment_id")],
                ok={
                    "200": {
                        "description": "The image",
                        "content": {
                            m: {"schema": {"type": "string", "format": "binary"}}
                            for m in ("image/jpeg", "image/png", "image/webp")
                        },
                    }
                },
            )
        },
        f"{inc}/{{ref}}/merge": _action(
            "merge", "Merge into a primary incident", MergeIn, _roles(MERGE_ROLES)
        ),
        f"{inc}/{{ref}}/unmerge": _action(
            "unmerge", "Undo a merge", UnmergeIn, _roles(MERGE_ROLES)
        ),
        f"{inc}/{{ref}}/escalation": _action(
            "escalate",
            "Flag or unflag a hot incident (immediate track)",
            EscalateIn,
            _roles(ESCALATE_ROLES),
        ),
        f"{inc}/{{ref}}/timeline": {
            "get": operation(
                "Timeline (audit trail)",
                roles=READERS,
                parameters=[REF_PARAM],
                ok={"200": response("Timeline rows", items())},
            )
            | {"operationId": "get_timeline"}
        },
        **live_paths(),
        **screen_paths(),
        **_open311(),
    }


def document(app: web.Application | None = None) -> dict[str, Any]:
    """The core's paths, plus those the application's features contributed."""
    schemas: dict[str, Any] = {"Error": ERROR, "Incident": INCIDENT}
    schemas |= schemas_of(
        ReportIn, UpdateIn, TransitionIn, EntryIn, MergeIn, UnmergeIn, EscalateIn, RatingIn
    )
    schemas |= schemas_of(ListQuery, AreaQuery)  # what the query parameters refer to
    paths = core_paths()
    security: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for fragment in app.get(OPENAPI, []) if app is not None else []:
        schemas |= fragment.schemas
        paths |= fragment.paths
        security |= fragment.security_schemes
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "IOC Hub API",
            "version": "1",
            "description": "Incident store, switchboard and chat hand-offs of the Intelligent "
            "Operations Centre. Authenticate with 'Authorization: Bearer <token>'; without "
            "one you are the public role. Each operation lists the roles it serves (x-roles).",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": security,
        },
        "paths": dict(sorted(paths.items())),
    }


@routes.get(f"{API}/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return json_response(document(request.app))
