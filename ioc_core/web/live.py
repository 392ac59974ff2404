"""`GET /api/v1/live`: the staff screens' live feed (ADR 0029), one WebSocket per page.

Admitted like every long-lived connection (`ioc_core.sockets`: origin, per-client and total
caps, never a request slot). Server to client, JSON text frames: `hello` (the latest cursor),
then `event` frames (`{"type","cursor","event"}`), and `resync` when the client must reload
its state over REST (an unknown cursor, or it fell behind). `?after=<cursor>` resumes after a
reconnect. The client sends nothing that matters; a client that floods is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from typing import Any

from aiohttp import WSMsgType, web

from ioc_core.access.roles import STAFF, Principal, Role
from ioc_core.access.sessions import COOKIE
from ioc_core.api.openapi import operation, response
from ioc_core.errors import Forbidden, IocError, MalformedRequest, Unauthorized
from ioc_core.live import Client, LiveHub, may_watch
from ioc_core.sockets import CLOSE_POLICY, SOCKETS, long_lived
from ioc_core.web.auth import principal_of
from ioc_core.web.keys import CORE

logger = logging.getLogger(__name__)

HUB: web.AppKey[LiveHub] = web.AppKey("live_hub", LiveHub)
PATH = "/api/v1/live"
HEARTBEAT_S = 20.0
# A socket whose browser takes this long to accept one batch is gone: closed, not waited on.
SEND_TIMEOUT_S = 30.0
# How often an open feed re-checks that its sign-in or token still holds.
RECHECK_S = 60.0
# Redis entry ids (`1733333333333-0`) and in-process cursors (`<epoch hex>-<n>`).
CURSOR = re.compile(r"[0-9a-f]{1,32}-[0-9]{1,20}")
SEND_BUFFER_BYTES = 128 * 1024
CLOSE_SIGNED_OUT = 4401  # application code: the session ended; the page goes to sign-in


@long_lived
async def live(request: web.Request) -> web.WebSocketResponse:
    principal = await principal_of(request)
    if principal.role is Role.PUBLIC:
        raise Unauthorized("the live feed is for signed-in staff", error_id="not-signed-in")
    if not may_watch(principal):
        raise Forbidden("this role has no live feed", error_id="no-live-feed")
    hub = request.app[HUB]
    after = request.query.get("after") or None
    if after is not None and not CURSOR.fullmatch(after):
        raise MalformedRequest("after: not a cursor of this feed", error_id="bad-cursor")
    lease = request.app[SOCKETS].admit(request)  # 403/429/503 before the upgrade
    with lease:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=4096)
        await ws.prepare(request)
        _bound_send_buffer(request)
        client = hub.attach(principal, after=after)
        sender = asyncio.create_task(_send(ws, client))
        checker = asyncio.create_task(_recheck(request, ws, principal))
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and not lease.allow():
                    await ws.close(code=CLOSE_POLICY, message=b"message rate exceeded")
                    break
        finally:
            hub.detach(client)
            for task in (sender, checker):
                task.cancel()
                # A browser that vanished mid-send is an ordinary end, not an error.
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            with contextlib.suppress(ConnectionError):
                await ws.close()
    return ws


def _bound_send_buffer(request: web.Request) -> None:
    """Linux grows a socket's send buffer up to tcp_wmem's maximum (4 MiB by default): a frozen
    tab would soak up minutes of events there before its queue noticed anything. A fixed
    128 KiB keeps kernel memory per screen small and lets the queue find a frozen one soon."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


async def _send(ws: web.WebSocketResponse, client: Client) -> None:
    while not ws.closed:
        await client.ready.wait()
        for message in client.take():
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await ws.send_str(message)
            except (TimeoutError, ConnectionError):
                await ws.close(code=CLOSE_POLICY, message=b"too slow")
                return


async def _recheck(request: web.Request, ws: web.WebSocketResponse, who: Principal) -> None:
    """A feed outlives no sign-out, disabled account, expiry or revoked token."""
    core = request.app[CORE]
    cookie = request.cookies.get(COOKIE, "")
    header = request.headers.get("Authorization", "")
    while not ws.closed:
        await asyncio.sleep(RECHECK_S)
        try:
            if who.session:
                await core.signins.lookup(cookie)
            else:
                await core.tokens.principal(header.partition(" ")[2].strip())
        except IocError:
            await ws.close(code=CLOSE_SIGNED_OUT, message=b"signed out")
            return


def attach(app: web.Application) -> None:
    settings = app[CORE].settings
    hub = LiveHub(buffer=settings.live_buffer, queue=settings.live_queue)
    app[HUB] = hub
    app.router.add_get(PATH, live)

    async def tap(app: web.Application) -> None:
        app[CORE].bus.watch(hub.publish)

    app.on_startup.append(tap)


def openapi_paths() -> dict[str, Any]:
    """The feed in the hub's OpenAPI document (ioc_core.web.openapi)."""
    after = {
        "name": "after",
        "in": "query",
        "required": False,
        "description": "the last cursor this screen saw: what came after it is replayed "
        "(or one resync when this worker no longer holds it)",
        "schema": {"type": "string", "pattern": f"^{CURSOR.pattern}$"},
    }
    roles = tuple(r.value for r in Role if r in STAFF or r is Role.AGENCY)
    return {
        PATH: {
            "get": operation(
                "The live feed (WebSocket): bus events the caller's role may see",
                roles=roles,
                description="JSON text frames: `hello` first, then `event`s; `resync` means "
                "reload over REST and go on from its cursor. A signed-in browser's cookie or a "
                "bearer token. Agency accounts see only incident events that name their agency.",
                parameters=[after],
                ok={"101": response("Switching to the WebSocket protocol", media="")},
                tags=("live",),
            )
        }
    }
