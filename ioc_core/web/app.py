"""The core role's aiohttp application."""

from __future__ import annotations

from aiohttp import web

from ioc_core.http import ERROR_RENDERERS, Renderer, error_middleware, json_response
from ioc_core.runtime import Core
from ioc_core.web import open311, openapi, rest
from ioc_core.web.keys import CORE


async def health(request: web.Request) -> web.Response:
    report = await request.app[CORE].health()
    return json_response(report, status=200 if report["status"] != "down" else 503)


def make_app(core: Core) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware], client_max_size=core.settings.max_body_bytes
    )
    app[CORE] = core
    renderers: dict[str, Renderer] = {open311.BASE + "/": open311.render_open311_error}
    app[ERROR_RENDERERS] = renderers
    app.router.add_get("/health", health)
    app.add_routes(rest.routes)
    app.add_routes(openapi.routes)
    app.add_routes(open311.routes)
    return app
