"""Pieces of the hub's OpenAPI document that every package contributes (ADR 0022).

The core serves one document at /api/v1/openapi.json; each feature package (telephony, bots)
describes its own routes with these helpers and hands the result to `contribute` from its
`ioc.web` entry point, so the document covers every route without the core importing a
feature. Schemas come from the same pydantic models that validate the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from ioc_core.access.roles import STAFF as STAFF_ROLES
from ioc_core.access.roles import Role

REF = "#/components/schemas/{model}"

ERROR: dict[str, Any] = {
    "type": "object",
    "description": "Every error of the API: a stable kebab-case error_id, a message saying "
    "what is wrong, and details (for bad input, the fields and their problems)",
    "required": ["error_id", "message", "details"],
    "properties": {"error_id": {"type": "string"}, "message": {"type": "string"}, "details": {}},
}

# Who may call an operation. `public` is no token at all; the others are token roles
# (ioc_core.access.roles.Role). The document lists them in `x-roles` and in the summary.
PUBLIC: tuple[str, ...] = tuple(r.value for r in Role)
STAFF: tuple[str, ...] = tuple(r.value for r in Role if r in STAFF_ROLES)


@dataclass(frozen=True, kw_only=True)
class Fragment:
    """Paths and component schemas of one package's routes."""

    paths: dict[str, Any]
    schemas: dict[str, Any] = field(default_factory=dict)
    security_schemes: dict[str, Any] = field(default_factory=dict)


OPENAPI: web.AppKey[list[Fragment]] = web.AppKey("openapi_fragments", list)


def contribute(app: web.Application, fragment: Fragment) -> None:
    """Add a package's fragment to the document the app serves."""
    app.setdefault(OPENAPI, []).append(fragment)


def schemas_of(*models: type[BaseModel]) -> dict[str, Any]:
    """Component schemas of `models` and of every model or enum they refer to."""
    out: dict[str, Any] = {}
    for m in models:
        s = m.model_json_schema(ref_template=REF)
        out.update(s.pop("$defs", {}))
        out[m.__name__] = s
    return out


def ref(model: type[BaseModel] | str) -> dict[str, str]:
    name = model if isinstance(model, str) else model.__name__
    return {"$ref": REF.format(model=name)}


def json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": ref(model)}}}


def query(model: type[BaseModel], *, explode: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Query parameters from `model`'s fields; references point at the components (add the
    model's schemas with `schemas_of`). List fields repeat (`?state=new&state=verified`)."""
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if name in explode:
            param |= {"style": "form", "explode": True}
        params.append(param)
    return params


def path_param(name: str, description: str = "", pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern:
        schema["pattern"] = pattern
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description or name,
        "schema": schema,
    }


def errors(schema: dict[str, Any] | None = None, media: str = "application/json") -> dict[str, Any]:
    """The error responses every route may give: 4xx for bad input, no or wrong token, not
    allowed, not found, conflict, too large, wrong media type; 503 when the hub is busy (the
    request limit) or a part it needs is down. All in the same shape."""
    content = {media: {"schema": schema or ref("Error")}}
    return {
        "4XX": {
            "description": "Bad input, not signed in, not allowed or not found",
            "content": content,
        },
        "503": {"description": "Busy or a needed part is down; retry", "content": content},
    }


def operation(
    summary: str,
    *,
    roles: tuple[str, ...],
    ok: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    description: str = "",
    error_responses: dict[str, Any] | None = None,
    tags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One operation. `ok`: its success responses (status -> response object). Roles that
    need no token make the security optional; the others need the bearer token."""
    op: dict[str, Any] = {
        "summary": summary,
        "description": (description + "\n\n" if description else "") + "Roles: " + ", ".join(roles),
        "x-roles": list(roles),
        "security": [{}, {"bearer": []}] if "public" in roles else [{"bearer": []}],
        "responses": {**ok, **(errors() if error_responses is None else error_responses)},
    }
    if tags:
        op["tags"] = list(tags)
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    return op


def response(
    description: str,
    schema: dict[str, Any] | None = None,
    *,
    media: str = "application/json",
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if media:
        out["content"] = {media: {"schema": schema if schema is not None else {"type": "object"}}}
    if links:
        out["links"] = links
    return out


def items(item: dict[str, Any] | None = None) -> dict[str, Any]:
    """A list answer: `{"items": [...]}`."""
    return {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": item or {"type": "object"}}},
    }


__all__ = [
    "ERROR",
    "OPENAPI",
    "PUBLIC",
    "STAFF",
    "Fragment",
    "contribute",
    "errors",
    "items",
    "json_body",
    "operation",
    "path_param",
    "query",
    "ref",
    "response",
    "schemas_of",
]
