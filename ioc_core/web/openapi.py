"""OpenAPI 3.1 document of /api/v1, built from the same pydantic models that validate input."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from ioc_core.http import json_response
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
from ioc_core.web.rest import API, AreaQuery, ListQuery

routes = web.RouteTableDef()

ERROR = {
    "type": "object",
    "required": ["error_id", "message", "details"],
    "properties": {"error_id": {"type": "string"}, "message": {"type": "string"}, "details": {}},
}
INCIDENT = {
    "type": "object",
    "description": "Incident as the caller's role may see it "
    "(reporters, notes and contacts depend on the role)",
    "properties": {
        "id": {"type": "string"},
        "code": {"type": "string"},
        "state": {"type": "string"},
        "phase": {"type": "string"},
    },
}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {"name": name, "in": "query", "required": False, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def _ok(desc: str, schema: dict[str, Any] | None = None, status: str = "200") -> dict[str, Any]:
    responses: dict[str, Any] = {
        status: {
            "description": desc,
            "content": {"application/json": {"schema": schema or {"type": "object"}}},
        },
        "4XX": {
            "description": "Bad input or not allowed",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    }
    return responses


REF = {
    "name": "ref",
    "in": "path",
    "required": True,
    "description": "id or tracking code",
    "schema": {"type": "string"},
}


def _action(summary: str, model: type[BaseModel], status: str = "200") -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [REF],
            "requestBody": _body(model),
            "responses": _ok("The incident after the change", INCIDENT, status),
        }
    }


def document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        ReportIn,
        UpdateIn,
        TransitionIn,
        EntryIn,
        MergeIn,
        UnmergeIn,
        EscalateIn,
    ]
    schemas: dict[str, Any] = {"Error": ERROR, "Incident": INCIDENT}
    for m in models:
        s = m.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(s.pop("$defs", {}))
        schemas[m.__name__] = s
    inc = f"{API}/incidents"
    paths: dict[str, Any] = {
        "/health": {"get": {"summary": "Component statuses", "responses": _ok("Health")}},
        f"{API}/categories": {
            "get": {"summary": "Category tree (flat, with parents)", "responses": _ok("Categories")}
        },
        f"{API}/categories/{{code}}": {
            "get": {
                "summary": "One category",
                "parameters": [
                    {"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": _ok("Category"),
            }
        },
        f"{API}/areas": {
            "get": {
                "summary": "Administrative areas",
                "parameters": _query(AreaQuery),
                "responses": _ok("Areas"),
            }
        },
        f"{API}/areas/{{code}}": {
            "get": {
                "summary": "One area",
                "parameters": [
                    {"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": _ok("Area"),
            }
        },
        f"{API}/agencies": {"get": {"summary": "Agencies", "responses": _ok("Agencies")}},
        inc: {
            "post": {
                "summary": "Report an incident (JSON, or multipart with a 'report' JSON "
                "part and 'photo' files)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ReportIn"}},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "report": {"type": "string", "description": "ReportIn as JSON"},
                                    "photo": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                    },
                                },
                            }
                        },
                    },
                },
                "responses": _ok("Created", INCIDENT, "201"),
            },
            "get": {
                "summary": "List incidents (keyset pagination with next_cursor)",
                "parameters": _query(ListQuery),
                "responses": _ok("Incidents"),
            },
        },
        f"{inc}/{{ref}}": {
            "get": {
                "summary": "One incident",
                "parameters": [REF],
                "responses": _ok("Incident", INCIDENT),
            },
            "patch": {
                "summary": "Correct fields (staff)",
                "parameters": [REF],
                "requestBody": _body(UpdateIn),
                "responses": _ok("Incident", INCIDENT),
            },
        },
        f"{inc}/{{ref}}/transitions": _action(
            "Lifecycle action (verify, assign, start, resolve, close, reject, reopen, ...)",
            TransitionIn,
        ),
        f"{inc}/{{ref}}/replies": {
            "post": {
                "summary": "Public reply",
                "parameters": [REF],
                "requestBody": _body(EntryIn),
                "responses": _ok("Reply", status="201"),
            }
        },
        f"{inc}/{{ref}}/notes": {
            "post": {
                "summary": "Internal note (staff)",
                "parameters": [REF],
                "requestBody": _body(EntryIn),
                "responses": _ok("Note", status="201"),
            }
        },
        f"{inc}/{{ref}}/rating": {
            "post": {
                "summary": "Rate the handling 1-5 (the reporter, once resolved)",
                "parameters": [REF],
                "requestBody": _body(RatingIn),
                "responses": _ok("Rating", status="201"),
            }
        },
        f"{inc}/{{ref}}/attachments": {
            "post": {
                "summary": "Add photos (multipart 'photo' files: JPEG, PNG, WebP)",
                "parameters": [REF],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "photo": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": _ok("Incident", INCIDENT, "201"),
            }
        },
        f"{inc}/{{ref}}/attachments/{{attachment_id}}": {
            "get": {
                "summary": "Download a photo",
                "parameters": [
                    REF,
                    {
                        "name": "attachment_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {"200": {"description": "The image"}},
            }
        },
        f"{inc}/{{ref}}/merge": _action("Merge into a primary incident (staff)", MergeIn),
        f"{inc}/{{ref}}/unmerge": _action("Undo a merge (staff)", UnmergeIn),
        f"{inc}/{{ref}}/escalation": _action(
            "Flag or unflag a hot incident (immediate track)", EscalateIn
        ),
        f"{inc}/{{ref}}/timeline": {
            "get": {
                "summary": "Timeline (audit trail)",
                "parameters": [REF],
                "responses": _ok("Timeline rows"),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "IOC Hub core API",
            "version": "1",
            "description": "Incident store of the Intelligent Operations Centre. "
            "Authenticate with 'Authorization: Bearer <token>'; without "
            "one you are the public role.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }


@routes.get(f"{API}/openapi.json")
async def openapi(_request: web.Request) -> web.Response:
    return json_response(document())
