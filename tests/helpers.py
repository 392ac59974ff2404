"""Shared test helpers: polling with a deadline, tokens, tiny images."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image

from ioc_core.access.tokens import create_token
from ioc_core.db import transaction
from ioc_core.runtime import Core


async def wait_until(
    predicate: Callable[[], Awaitable[Any] | Any],
    within: float = 5.0,
    what: str = "condition",
    *,
    interval: float = 0.02,
) -> Any:
    """Poll until `predicate` returns something truthy; fail with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


async def make_token(
    core: Core, role: str, *, agency: str | None = None, subject: str = "", name: str | None = None
) -> str:
    async with transaction(core.sessions) as s:
        token, _row = await create_token(
            s, role=role, name=name or f"test-{role}", agency_code=agency, subject=subject
        )
    return token


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format=fmt)
    return buf.getvalue()


def report(**over: Any) -> dict[str, Any]:
    """A valid report body; keyword arguments replace top-level fields."""
    body: dict[str, Any] = {
        "category": "moi_truong.rac_thai",
        "title": "Rác thải đổ trộm",
        "description": "Rác thải đổ trộm đầu hẻm 12",
        "channel": "web",
        "location": {
            "lat": 11.5349,
            "lon": 106.8832,
            "address": "Hẻm 12, Đồng Xoài",
            "area_code": "25210",
        },
        "reporter": {
            "name": "Nguyễn Văn An",
            "phone": "0912345678",
            "email": "an@example.vn",
            "channel_user_id": "zalo-123",
        },
    }
    body.update(over)
    return body


async def stalled_websocket(
    host: str, port: int, path: str, headers: dict[str, str]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that opens the connection and then never reads: a tiny receive
    buffer, so the server soon meets real TCP backpressure (what a frozen browser tab does)."""
    import base64
    import os
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    status = await reader.readline()
    if b" 101 " not in status:
        raise AssertionError(f"no WebSocket upgrade: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    return reader, writer
