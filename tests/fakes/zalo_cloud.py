"""A Zalo OA API v3 stand-in: customer-service messages, the OAuth token refresh and image
hosting, with Zalo's habits (errors in a 200 body with a negative `error`, single-use refresh
tokens), recording every call; and signed webhook events as Zalo posts them."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bots.zalo.adapter import signature
from tests.fakes import serve


@dataclass
class ZaloCloud:
    app_id: str = "1234567890123456789"
    oa_id: str = "579745863508352884"
    oa_secret: str = "oa-secret-for-tests"
    app_secret: str = "app-secret-for-tests"
    access: set[str] = field(default_factory=lambda: {"access-1"})
    refresh_token: str = "refresh-1"
    inactive: set[str] = field(default_factory=set)  # users outside the 7-day window
    images: dict[str, bytes] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    refreshes: int = 0
    runner: web.AppRunner | None = None
    port: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _stamps: Any = field(default_factory=lambda: itertools.count(int(time.time() * 1000)))
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ZaloCloud:
        app = web.Application()
        app.router.add_post("/v3.0/oa/message/cs", self._cs)
        app.router.add_post("/v4/oa/access_token", self._refresh)
        app.router.add_get("/img/{name}", self._image)
        self.runner, self.port = await serve(app)
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    # ------------------------------------------------------------------ what tests read

    def texts(self, user: str) -> list[str]:
        return [
            b["message"]["text"]
            for name, b, _at in self.calls
            if name == "cs" and b.get("_ok") and b["recipient"]["user_id"] == user
        ]

    async def wait_texts(self, user: str, count: int, within: float = 10) -> list[str]:
        deadline = time.monotonic() + within
        while len(self.texts(user)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {count} messages to {user}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await self._changed.wait()
        return self.texts(user)

    # ------------------------------------------------------------------ the API

    async def _cs(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.calls.append(("cs", body, time.monotonic()))
        self._changed.set()
        if request.headers.get("access_token") not in self.access:
            return web.json_response({"error": -216, "message": "Access token is invalid"})
        user = body.get("recipient", {}).get("user_id", "")
        if user in self.inactive:
            return web.json_response(
                {"error": -230, "message": "User has not interacted with the OA in the past 7 days"}
            )
        text = body.get("message", {}).get("text", "")
        if not text or len(text) > 2000:
            return web.json_response({"error": -201, "message": "message.text is invalid!"})
        body["_ok"] = True
        return web.json_response(
            {
                "error": 0,
                "message": "Success",
                "data": {"message_id": str(next(self._ids)), "user_id": user},
            }
        )

    async def _refresh(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.calls.append(("refresh", dict(form), time.monotonic()))
        ok = (
            request.headers.get("secret_key") == self.app_secret
            and form.get("app_id") == self.app_id
            and form.get("grant_type") == "refresh_token"
            and form.get("refresh_token") == self.refresh_token
        )
        if not ok:
            return web.json_response({"error": -14014, "error_name": "Invalid refresh token"})
        self.refreshes += 1
        access = f"access-{secrets.token_hex(4)}"
        self.access = {access}  # the old access token stops working
        self.refresh_token = f"refresh-{secrets.token_hex(4)}"  # single use
        return web.json_response(
            {"access_token": access, "refresh_token": self.refresh_token, "expires_in": "90000"}
        )

    async def _image(self, request: web.Request) -> web.Response:
        data = self.images.get(request.match_info["name"])
        return (
            web.Response(body=data, content_type="image/jpeg") if data else web.Response(status=404)
        )

    # ------------------------------------------------------------------ webhook events

    def event(
        self, name: str, user: str, *, secret: str | None = None, **message: Any
    ) -> tuple[bytes, dict[str, str]]:
        """(raw body, headers) of a signed event as Zalo posts it."""
        stamp = str(next(self._stamps))
        body: dict[str, Any] = {
            "app_id": self.app_id,
            "user_id_by_app": f"app-{user}",
            "event_name": name,
            "timestamp": stamp,
            "sender": {"id": user},
            "recipient": {"id": self.oa_id},
        }
        if message:
            body["message"] = {"msg_id": f"m{stamp}", **message}
        raw = json.dumps(body, ensure_ascii=False).encode()
        mac = signature(self.app_id, raw, stamp, secret or self.oa_secret)
        return raw, {"X-ZEvent-Signature": mac, "Content-Type": "application/json"}

    def text(self, user: str, text: str) -> tuple[bytes, dict[str, str]]:
        return self.event("user_send_text", user, text=text)

    def image(self, user: str, name: str, caption: str = "") -> tuple[bytes, dict[str, str]]:
        url = f"{self.base}/img/{name}"
        attachment = {"type": "image", "payload": {"thumbnail": url, "url": url}}
        return self.event("user_send_image", user, text=caption, attachments=[attachment])

    def location(self, user: str, lat: float, lon: float) -> tuple[bytes, dict[str, str]]:
        where = {"coordinates": {"latitude": str(lat), "longitude": str(lon)}}
        return self.event(
            "user_send_location", user, attachments=[{"type": "location", "payload": where}]
        )
