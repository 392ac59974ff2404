"""What a feature package needs to add its own routes to the hub's web application (entry
point group `ioc.web`, ADR 0011): the caller's identity, and the core behind the app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ioc_core.api.client import InProcessCoreApi
from ioc_core.errors import Forbidden, Unauthorized
from ioc_core.runtime import Core
from ioc_core.web.auth import principal_of
from ioc_core.web.keys import CORE

PRIMARY: web.AppKey[bool] = web.AppKey("primary", bool)  # the one worker that runs roles

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
# Components a feature adds to `/health` (name -> check), registered by its `ioc.web` entry
# point: the core reports them without knowing the features. A check's `status` is ok,
# degraded or down; a feature's trouble makes the hub degraded, never down (the core's own
# API still serves).
HEALTH_CHECKS: web.AppKey[dict[str, HealthCheck]] = web.AppKey("health_checks", dict)


@dataclass(frozen=True)
class Caller:
    role: str
    name: str
    is_staff: bool
    extension: str | None = None  # a signed-in staff member's own phone, if they have one
    session: bool = False  # a staff sign-in (browser), not an API token


async def require_staff(request: web.Request) -> Caller:
    """Call-takers, supervisors, leaders and admins, by token or signed in (then a request
    that changes something carries the session's CSRF token: `principal_of` checks it);
    others get 401/403 with the reason."""
    p = await principal_of(request)
    who = Caller(
        role=p.role.value,
        name=p.name,
        is_staff=p.is_staff,
        extension=p.extension,
        session=p.session,
    )
    if who.role == "public":
        raise Unauthorized("this needs a staff sign-in or a staff token", error_id="token-required")
    if not who.is_staff:
        raise Forbidden("only IOC staff may do this", error_id="staff-only")
    return who


def core_of(app: web.Application) -> Core:
    return app[CORE]


def system_api(app: web.Application, *, name: str) -> InProcessCoreApi:
    """The core API in-process, acting as the service principal `name` (a role's own
    identity for commands it issues on nobody's behalf)."""
    from ioc_core.access.roles import Principal, Role

    return InProcessCoreApi(core=app[CORE], principal=Principal(role=Role.SERVICE, name=name))


__all__ = [
    "HEALTH_CHECKS",
    "PRIMARY",
    "Caller",
    "HealthCheck",
    "core_of",
    "require_staff",
    "system_api",
]
