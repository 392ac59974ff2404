"""Overload is refused fast (503 + Retry-After) instead of slowing every request."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ioc_core.http import concurrency_limit, error_middleware, json_response


async def test_requests_beyond_the_limit_wait_then_get_503() -> None:
    release = asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        await release.wait()
        return json_response({"ok": True})

    async def health(_request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    limit = concurrency_limit(limit=2, max_wait_ms=100, exempt=frozenset({"/health"}))
    app = web.Application(middlewares=[error_middleware, limit])
    app.router.add_get("/slow", slow)
    app.router.add_get("/health", health)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        busy = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        await asyncio.sleep(0.05)  # let both take a slot
        refused = await client.get("/slow")
        assert refused.status == 503 and refused.headers["Retry-After"] == "1"
        assert (await refused.json())["error_id"] == "server-busy"
        assert (await client.get("/health")).status == 200  # never queued behind work
        release.set()
        assert [r.status for r in await asyncio.gather(*busy)] == [200, 200]
        assert (await client.get("/slow")).status == 200  # slots are given back
