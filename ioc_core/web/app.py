"""The core role's aiohttp application."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from aiohttp import web

from ioc_core.api.web import HEALTH_CHECKS, PRIMARY
from ioc_core.http import (
    ERROR_RENDERERS,
    Renderer,
    concurrency_limit,
    error_middleware,
    json_response,
    text_guard,
)
from ioc_core.runtime import Core
from ioc_core.sockets import SOCKETS, SocketGate, SocketLimits
from ioc_core.web import open311, openapi, rest, screens, signin
from ioc_core.web.keys import CORE

logger = logging.getLogger(__name__)


async def health(request: web.Request) -> web.Response:
    report = await request.app[CORE].health()
    for name, check in request.app[HEALTH_CHECKS].items():
        try:
            component = await check()
        except Exception as exc:  # a broken check says so; it never hides the others
            logger.exception("health check %s failed", name)
            component = {"status": "down", "error": str(exc)}
        report["components"][name] = component
        if component.get("status") != "ok" and report["status"] == "ok":
            report["status"] = "degraded"  # a feature's trouble: the core still serves
    return json_response(report, status=200 if report["status"] != "down" else 503)


def make_app(core: Core, *, primary: bool = True, features: bool = True) -> web.Application:
    """`primary`: this worker also runs the feature roles that must exist once (the
    switchboard's ARI app); `features`: extend the app through `ioc.web` entry points."""
    s = core.settings
    limit = concurrency_limit(
        limit=s.http_max_inflight, max_wait_ms=s.http_queue_ms, exempt=frozenset({"/health"})
    )
    app = web.Application(
        middlewares=[error_middleware, limit, text_guard], client_max_size=s.max_body_bytes
    )
    app[CORE] = core
    # Long-lived connections of every feature share one set of limits per worker.
    app[SOCKETS] = SocketGate(
        limits=SocketLimits(
            total=s.sockets_max,
            per_client=s.sockets_per_client,
            messages_per_s=s.socket_messages_per_s,
            burst=s.socket_burst,
            origins=frozenset(s.socket_origins),
        ),
        public_url=s.public_url,
    )
    renderers: dict[str, Renderer] = {open311.BASE + "/": open311.render_open311_error}
    app[ERROR_RENDERERS] = renderers
    app.router.add_get("/health", health)
    app.add_routes(rest.routes)
    app.add_routes(openapi.routes)
    app.add_routes(open311.routes)
    screens.attach(app)
    signin.attach(app)
    app[PRIMARY] = primary
    app[HEALTH_CHECKS] = {}
    if features:
        for ep in sorted(entry_points(group="ioc.web"), key=lambda e: e.name):
            ep.load()(app)  # a feature adds its routes and its startup/cleanup hooks
    return app
