"""Who is calling: `Authorization: Bearer <token>` (Open311 also takes `api_key`), else a
staff sign-in's `ioc_session` cookie (ADR 0028), else nobody (the public role).

This is the one place a signed-in browser is recognised, so every route that asks
`principal_of` serves it exactly as it serves a token of the same role. Requests that change
something on the strength of the cookie must repeat the session's CSRF token in the
`X-CSRF-Token` header: a cookie is sent by the browser whoever's page made the request.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from ioc_core.access.roles import ANONYMOUS, Principal
from ioc_core.access.sessions import COOKIE, CSRF_HEADER, SignedIn
from ioc_core.errors import Forbidden, Unauthorized
from ioc_core.web.keys import CORE

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The request's session, once looked up (a route may ask twice: require_staff, then itself).
_SIGNED_IN: web.RequestKey[SignedIn] = web.RequestKey("ioc_signed_in", SignedIn)


async def principal_of(request: web.Request, *, token: str | None = None) -> Principal:
    if token is None:
        header = request.headers.get("Authorization", "")
        if not header:
            signed = await signed_in_of(request)
            return signed.principal if signed is not None else ANONYMOUS
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized(
                "Authorization must be 'Bearer <token>'", error_id="bad-authorization-header"
            )
        token = value.strip()
    return await request.app[CORE].tokens.principal(token)


async def signed_in_of(request: web.Request, *, csrf: bool = True) -> SignedIn | None:
    """The request's staff session (None without the cookie); 401 for an unknown, ended or
    expired one; 403 `csrf-failed` for an unsafe method without the session's CSRF token
    (`csrf=False` only for the sign-in itself, which has its own defence)."""
    if _SIGNED_IN in request:
        signed = request[_SIGNED_IN]
    else:
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        signed = await request.app[CORE].signins.lookup(cookie)
        request[_SIGNED_IN] = signed
    if csrf and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), signed.csrf.encode()):
            raise Forbidden(
                f"a signed-in browser must send the {CSRF_HEADER} header its session was "
                "given with every request that changes something",
                error_id="csrf-failed",
            )
    return signed
