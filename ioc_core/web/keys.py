"""Typed application keys shared by the web handlers."""

from __future__ import annotations

from aiohttp import web

from ioc_core.runtime import Core

CORE: web.AppKey[Core] = web.AppKey("core", Core)
