"""Staff sign-in over JSON (ADR 0028): /auth/login, /auth/logout, /auth/session and
/auth/password. The screens are another module's; these routes only speak JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ioc_core.access.sessions import COOKIE, CSRF_HEADER, SignedIn
from ioc_core.access.signin import LoginThrottled, change_password, sign_in, sign_out
from ioc_core.access.staff import MAX_PASSWORD
from ioc_core.api.openapi import Fragment, contribute, json_body, operation, ref, response
from ioc_core.errors import Forbidden, Unauthorized
from ioc_core.http import json_response, read_model, render_error
from ioc_core.sockets import SOCKETS
from ioc_core.web.auth import signed_in_of
from ioc_core.web.keys import CORE

routes = web.RouteTableDef()
ANYONE = ("public",)


class LoginIn(BaseModel):
    # Not stripped: a password's spaces are part of it.
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current: str = Field(min_length=1, max_length=MAX_PASSWORD)
    new: str = Field(min_length=1, max_length=MAX_PASSWORD)


def _secure(request: web.Request) -> bool:
    """Secure cookies when the browser reached us over https: this connection is TLS, or the
    operator declared an https IOC_PUBLIC_URL (a TLS proxy in front). X-Forwarded-Proto is
    not read: any client can send it."""
    return request.secure or request.app[CORE].settings.public_url.startswith("https://")


def _set_cookie(request: web.Request, resp: web.Response, value: str, max_age: int) -> None:
    resp.set_cookie(
        COOKIE,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )


async def _session(request: web.Request) -> SignedIn:
    signed = await signed_in_of(request)
    if signed is None:
        raise Unauthorized("not signed in", error_id="not-signed-in")
    return signed


@routes.post("/auth/login")
async def login(request: web.Request) -> web.Response:
    # Login CSRF: a JSON body cannot be sent cross-site without a CORS preflight (which we
    # never grant), and a browser names the page's origin; with SameSite=Strict that is all.
    if not request.app[SOCKETS].origin_allowed(request):
        raise Forbidden(
            "sign-in is only accepted from the hub's own pages",
            details={"origin": request.headers.get("Origin", "")},
            error_id="origin-not-allowed",
        )
    body = await read_model(request, LoginIn)
    core = request.app[CORE]
    try:
        cookie, signed = await sign_in(
            core,
            username=body.username,
            password=body.password,
            client=request.remote or "-",
            user_agent=request.headers.get("User-Agent", ""),
        )
    except LoginThrottled as exc:
        resp = render_error(request, exc)
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    resp = json_response(signed.body())
    resp.headers["Cache-Control"] = "no-store"
    _set_cookie(request, resp, cookie, max_age=int(core.settings.session_hours * 3600))
    return resp


@routes.post("/auth/logout")
async def logout(request: web.Request) -> web.Response:
    await sign_out(request.app[CORE], await _session(request))
    resp = web.Response(status=204)
    _set_cookie(request, resp, "", max_age=0)
    return resp


@routes.get("/auth/session")
async def current(request: web.Request) -> web.Response:
    resp = json_response((await _session(request)).body())
    resp.headers["Cache-Control"] = "no-store"
    return resp


@routes.post("/auth/password")
async def password(request: web.Request) -> web.Response:
    signed = await _session(request)
    body = await read_model(request, PasswordIn)
    try:
        await change_password(request.app[CORE], signed, current=body.current, new=body.new)
    except LoginThrottled as exc:
        resp = render_error(request, exc)
        resp.headers["Retry-After"] = str(exc.retry_after)
        return resp
    return web.Response(status=204)


# ------------------------------------------------------------------ OpenAPI

USER: dict[str, Any] = {
    "type": "object",
    "required": ["username", "display_name", "role", "agency", "extension"],
    "properties": {
        "username": {"type": "string"},
        "display_name": {"type": "string"},
        "role": {"type": "string"},
        "agency": {"type": ["string", "null"]},
        "extension": {"type": ["string", "null"]},
    },
}
SIGNED_IN: dict[str, Any] = {
    "type": "object",
    "required": ["user", "csrf", "expires_at"],
    "properties": {
        "user": ref("StaffUser"),
        "csrf": {
            "type": "string",
            "description": f"send it as {CSRF_HEADER} with every request that is not GET, "
            "HEAD or OPTIONS",
        },
        "expires_at": {"type": "string", "format": "date-time"},
    },
}
_COOKIE_AUTH = "Signed in: the ioc_session cookie (and X-CSRF-Token on changes)."


def _op(summary: str, ok: dict[str, Any], **kw: Any) -> dict[str, Any]:
    op = operation(summary, roles=ANYONE, ok=ok, tags=("sign-in",), **kw)
    return op | {"security": [{}, {"session": []}]}


FRAGMENT = Fragment(
    paths={
        "/auth/login": {
            "post": _op(
                "Sign in (staff)",
                {"200": response("Signed in; sets the ioc_session cookie", ref("SignedIn"))},
                body=json_body(LoginIn),
                description="Wrong username and wrong password get the same 401 "
                "bad-credentials; too many failures get 429 login-throttled with Retry-After.",
            )
            | {"operationId": "login"}
        },
        "/auth/logout": {
            "post": _op(
                "Sign out", {"204": response("Signed out", media="")}, description=_COOKIE_AUTH
            )
        },
        "/auth/session": {
            "get": _op(
                "The current sign-in",
                {"200": response("Signed in", ref("SignedIn"))},
                description=_COOKIE_AUTH,
            )
        },
        "/auth/password": {
            "post": _op(
                "Change one's own password (ends one's other sign-ins)",
                {"204": response("Changed", media="")},
                body=json_body(PasswordIn),
                description=_COOKIE_AUTH,
            )
        },
    },
    schemas={
        "LoginIn": LoginIn.model_json_schema(),
        "PasswordIn": PasswordIn.model_json_schema(),
        "StaffUser": USER,
        "SignedIn": SIGNED_IN,
    },
    security_schemes={"session": {"type": "apiKey", "in": "cookie", "name": COOKIE}},
)


def attach(app: web.Application) -> None:
    app.add_routes(routes)
    contribute(app, FRAGMENT)
