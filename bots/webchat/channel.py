"""The web chat widget's channel: a page the hub serves for the province portal, talking to
the same engine over a WebSocket.

Replies go through the same outbox as every channel, but the open socket delivers them: it
drains its chat's queue when woken (same process) or every POLL_S (another worker queued
them), so a reply waits for a citizen who reconnects — the chat id lives in their browser.
The chat id is a random 128-bit value the server hands out: whoever holds it reads the chat.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import secrets
from collections import defaultdict
from datetime import timedelta
from typing import Any

from aiohttp import WSMsgType, web

from bots.core.messages import Inbound, Reply
from bots.store.service import BotStore

logger = logging.getLogger(__name__)

POLL_S = 1.0
MAX_MESSAGE = 16 << 20  # a photo arrives base64-encoded inside one message
CHAT_ID_BYTES = 16


def new_chat_id() -> str:
    return secrets.token_urlsafe(CHAT_ID_BYTES)


def valid_chat_id(value: str) -> bool:
    return 16 <= len(value) <= 64 and all(c.isalnum() or c in "-_" for c in value)


class WebChatChannel:
    name = "web"
    window: timedelta | None = None

    def __init__(self, *, store: BotStore, max_photo_bytes: int) -> None:
        self.store = store
        self.max_photo_bytes = max_photo_bytes
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self._wake: dict[str, asyncio.Event] = {}
        self._photos: dict[str, bytes] = {}  # message id -> bytes, until the engine takes it

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    # ------------------------------------------------------------------ in

    def parse(self, chat_id: str, seq: int, data: dict[str, Any], language: str) -> Inbound:
        """One widget message: {"text"}, {"choice", "label"}, {"lat", "lon"} or
        {"photo": base64, "caption"}; ValueError says what is wrong."""
        common: dict[str, Any] = dict(
            channel=self.name,
            chat_id=chat_id,
            user_id=chat_id,
            message_id=f"{chat_id}:{seq}",
            language=language,
        )
        if "choice" in data:
            choice = str(data["choice"])[:200]
            return Inbound(
                kind="choice", choice=choice, text=str(data.get("label", ""))[:200], **common
            )
        if "lat" in data or "lon" in data:
            lat, lon = float(data["lat"]), float(data["lon"])
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError("lat/lon out of range")
            return Inbound(kind="location", lat=lat, lon=lon, **common)
        if "photo" in data:
            try:
                photo = base64.b64decode(str(data["photo"]), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("photo must be base64") from None
            if not photo or len(photo) > self.max_photo_bytes:
                raise ValueError(f"a photo is at most {self.max_photo_bytes} bytes")
            self._photos[common["message_id"]] = photo
            caption = str(data.get("caption", ""))
            return Inbound(kind="photo", photo=common["message_id"], text=caption, **common)
        if "text" in data:
            return Inbound(kind="text", text=str(data["text"]), **common)
        raise ValueError("a message has text, choice, lat/lon or photo")

    async def fetch_photo(self, msg: Inbound) -> bytes:
        photo = self._photos.pop(msg.photo, None)
        if photo is None:
            raise ValueError("photo no longer available")
        return photo

    # ------------------------------------------------------------------ out

    async def send(self, chat_id: str, reply: Reply) -> None:
        """Not used: the chat's socket delivers (see `deliver`)."""
        raise NotImplementedError

    async def deliver(self, chat_id: str, ws: web.WebSocketResponse) -> None:
        """Push the chat's queued replies down this socket until it closes."""
        event = self._wake.setdefault(chat_id, asyncio.Event())
        self._sockets[chat_id].add(ws)
        try:
            while not ws.closed:
                event.clear()
                for item in await self.store.due(self.name, chat_id=chat_id):
                    await ws.send_json({"reply": item.payload})
                    await self.store.sent(item.id)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_S):
                        await event.wait()
        except (ConnectionResetError, RuntimeError):
            pass  # the citizen went away; what is left waits for them
        finally:
            self._sockets[chat_id].discard(ws)
            if not self._sockets[chat_id]:
                self._sockets.pop(chat_id, None)
                self._wake.pop(chat_id, None)


async def receive(ws: web.WebSocketResponse) -> Any:
    """The next JSON message, or None when the socket closed."""
    msg = await ws.receive()
    if msg.type == WSMsgType.TEXT:
        return msg.json()
    return None
