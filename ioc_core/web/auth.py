"""Who is calling: `Authorization: Bearer <token>` (Open311 also takes `api_key`)."""

from __future__ import annotations

from aiohttp import web

from ioc_core.access.roles import ANONYMOUS, Principal
from ioc_core.errors import Unauthorized
from ioc_core.web.keys import CORE


async def principal_of(request: web.Request, *, token: str | None = None) -> Principal:
    if token is None:
        header = request.headers.get("Authorization", "")
        if not header:
            return ANONYMOUS
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized(
                "Authorization must be 'Bearer <token>'", error_id="bad-authorization-header"
            )
        token = value.strip()
    return await request.app[CORE].tokens.principal(token)
