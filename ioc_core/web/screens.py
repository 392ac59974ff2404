"""The staff screens (front door, sign-in, console, board, ...): built from
`ioc_core/web/front/` by `ioc setup front` and served as static files (ADR 0027).

The build (npm ci + esbuild) goes into IOC_CACHE_DIR keyed by the front-end's sources, like
the other heavy artefacts: the repository never holds `node_modules` or a bundle, and a hub
started on changed sources says that the screens need building instead of serving stale ones.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from ioc_core.api.openapi import operation, response
from ioc_core.artifacts import ArtifactCache, Inputs
from ioc_core.config import Settings
from ioc_core.http import json_response
from ioc_core.web.keys import CORE

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).resolve().parent / "front"
_SKIP = frozenset({"node_modules", "dist"})
DIST: web.AppKey[Path | None] = web.AppKey("screens_dist", Path | None)  # type: ignore[arg-type]

# Pages a browser may open; each is one screen of the build (`src/<screen>/main.jsx`).
PAGES = {"/": "home", "/login": "login", "/console/": "console", "/board/": "board"}

# The staff screens are never framed (click-jacking); they talk only to this hub, except map
# tiles from the configured tile server. Leaflet positions tiles with inline styles.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:{tiles}; media-src 'self' blob: mediastream:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class FrontEndUnavailable(RuntimeError):
    pass


def inputs() -> Inputs:
    """Every source file of the front end (sources, lock file, locales, build script)."""
    found: dict[str, str | bytes | Path] = {}
    for path in sorted(SOURCE.rglob("*")):
        rel = path.relative_to(SOURCE)
        if path.is_file() and not (_SKIP & set(rel.parts)):
            found[str(rel)] = path
    return found


def dist_of(settings: Settings) -> Path | None:
    """The built screens for these sources, or None when they were not built."""
    cache = ArtifactCache(settings.cache_dir)
    folder = cache.path("front", inputs())
    return folder / "dist" if cache.is_fresh("front", inputs()) else None


def build(settings: Settings) -> Path:
    """`npm ci` (no install scripts: esbuild's binary comes as an optional dependency) and the
    esbuild bundle, into the cache; returns the `dist` folder."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        raise FrontEndUnavailable("Node.js and npm build the screens (Debian: nodejs, npm)")

    def make(tmp: Path) -> None:
        work = tmp / "src-tree"
        shutil.copytree(SOURCE, work, ignore=shutil.ignore_patterns(*_SKIP))
        for argv in (
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            [node, "build.mjs"],
        ):
            done = subprocess.run(  # noqa: S603 (fixed argument lists, never a shell)
                argv, cwd=work, check=False, capture_output=True, text=True
            )
            if done.returncode:
                raise FrontEndUnavailable(
                    f"{' '.join(argv[1:])} failed:\n{(done.stdout + done.stderr)[-4000:]}"
                )
        shutil.move(work / "dist", tmp / "dist")
        shutil.rmtree(work)  # node_modules stays in npm's own cache, not here

    # Old builds stay (a megabyte each): a hub already running, or another checkout sharing
    # the cache, still serves its own.
    folder = ArtifactCache(settings.cache_dir).ensure("front", inputs(), make, keep_stale=True)
    return folder / "dist"


def setup_front(settings: Settings) -> dict[str, Any]:
    """`ioc setup front`."""
    try:
        dist = build(settings)
    except FrontEndUnavailable as exc:
        print(f"ioc setup front: {exc}", file=sys.stderr)
        return {"status": "unavailable", "reason": str(exc)}
    return {"status": "ready", "dist": str(dist)}


def _headers(settings: Settings) -> dict[str, str]:
    tiles = settings.map_tiles
    origin = " " + "/".join(tiles.split("/", 3)[:3]) if tiles else ""
    return {
        "Content-Security-Policy": _CSP.format(tiles=origin),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
    }


def _not_built() -> web.Response:
    page = (
        "<!doctype html><meta charset=utf-8><title>IOC Hub</title>"
        "<p>Màn hình chưa được dựng cho phiên bản này: chạy <code>ioc setup front</code>.</p>"
        "<p>The screens are not built for this version: run <code>ioc setup front</code>.</p>"
        '<p><a href="/chat">Trò chuyện / Chat</a> · '
        '<a href="/api/v1/openapi.json">API</a> · <a href="/health">/health</a></p>'
    )
    return web.Response(text=page, status=503, content_type="text/html", charset="utf-8")


def _page(screen: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        dist = request.app[DIST]
        if dist is None or not (dist / screen / "index.html").is_file():
            return _not_built()
        resp = web.FileResponse(dist / screen / "index.html")
        resp.headers.update(_headers(request.app[CORE].settings))
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    return handler


async def static(request: web.Request) -> web.StreamResponse:
    dist = request.app[DIST]
    if dist is None:
        raise web.HTTPNotFound()
    assets = (dist / "assets").resolve()
    path = (assets / request.match_info["name"]).resolve()
    if not path.is_relative_to(assets) or not path.is_file():
        raise web.HTTPNotFound()
    resp = web.FileResponse(path)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Cache-Control"] = "no-cache"  # file names are stable; revalidate (ETag)
    return resp


async def config(request: web.Request) -> web.Response:
    """What every screen needs to know before it draws (nothing secret)."""
    s = request.app[CORE].settings
    return json_response(
        {
            "map": {"tiles": s.map_tiles, "center": list(s.map_center), "zoom": 12},
            # The core's duplicate rule (RP-8), so a console shows the same candidates before a
            # report is submitted as the core would merge after.
            "duplicates": {"radius_m": s.duplicate_radius_m, "window_min": s.duplicate_window_min},
        }
    )


def attach(app: web.Application) -> None:
    dist = dist_of(app[CORE].settings)
    if dist is None:
        logger.warning("staff screens not built for these sources: run `ioc setup front`")
    app[DIST] = dist
    for path, screen in PAGES.items():
        app.router.add_get(path, _page(screen))
    app.router.add_get("/console", _redirect("/console/"))
    app.router.add_get("/board", _redirect("/board/"))
    app.router.add_get("/static/{name:[A-Za-z0-9._/-]+}", static)
    app.router.add_get("/api/v1/screens/config", config)


def _redirect(to: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(to)

    return handler


def openapi_paths() -> dict[str, Any]:
    """The screens in the hub's OpenAPI document (ioc_core.web.openapi): pages and assets are
    public (what they show needs a sign-in: each page asks /auth/session first)."""
    page = {"200": response("HTML page", {"type": "string"}, media="text/html")}
    page["503"] = response(
        "The screens are not built: run `ioc setup front`", {"type": "string"}, media="text/html"
    )
    public = ("public",)
    paths: dict[str, Any] = {
        path: {"get": operation(f"The {screen} screen", roles=public, ok=page, tags=("screens",))}
        for path, screen in PAGES.items()
    }
    for short in ("/console", "/board"):
        paths[short] = {
            "get": operation(
                f"Redirect to {short}/",
                roles=public,
                ok={"301": response("Moved permanently", media="")},
                tags=("screens",),
            )
        }
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "an asset of the built screens",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._/-]+$"},
    }
    paths["/static/{name}"] = {
        "get": operation(
            "A script, stylesheet or image of the screens",
            roles=public,
            parameters=[name],
            ok={"200": response("The file", {"type": "string"}, media="*/*")},
            tags=("screens",),
        )
    }
    config_body = {"type": "object", "required": ["map"], "properties": {"map": {"type": "object"}}}
    paths["/api/v1/screens/config"] = {
        "get": operation(
            "What the screens need before they draw (map tiles and centre, duplicate radius)",
            roles=public,
            ok={"200": response("Settings for the screens", config_body)},
            tags=("screens",),
        )
    }
    return paths
