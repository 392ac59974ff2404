"""The web chat widget's channel: a page the hub serves for the province portal, talking to
the same engine over a WebSocket.

Replies go through the same outbox as every channel, but the open socket delivers them: it
drains its chat's queue when woken (same process) or every POLL_S (another worker queued
them), so a reply waits for a citizen who reconnects — the chat id lives in their browser.
The chat id is a random 128-bit value the server hands out: whoever holds it reads the chat.

Each message carries an id the page makes (`"id"`: 8-64 of A-Z a-z 0-9 _ -, random per
message): the dedupe key of the turn is the chat id with that id, so it stays unique across
reconnects (a per-connection counter restarted at 1 and swallowed a returning chat's
messages), and a page that resends a message it is unsure about is not answered twice.
A message without an id (a page cached before ids) gets a random one from the server.

A photo arrives inside its message; it is held here only for the turn that carries it (the
engine takes it, or the turn ends and it is dropped), and the store is bounded in count and
age besides, so a photo sent at a step that takes none never stays in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import secrets
import time
from collections import OrderedDict, defaultdict
from datetime import timedelta
from typing import Any

from aiohttp import WSMsgType, web

from bots.messages import Inbound, Reply
from bots.store.service import BotStore
from ioc_core.errors import MalformedRequest
from ioc_core.http import loads_json

logger = logging.getLogger(__name__)

POLL_S = 1.0
CHAT_ID_BYTES = 16
# A photo arrives base64-encoded (4 bytes per 3) inside one JSON message with its caption.
MESSAGE_OVERHEAD = 64 << 10
PHOTO_HOLD_S = 120.0  # a turn that has not taken its photo by then never will
PHOTOS_HELD = 32  # photos in flight at once in this worker; the oldest go first beyond


NOT_JSON = object()


def max_message_bytes(max_photo_bytes: int) -> int:
    """The largest message a socket accepts: one photo of the configured size, base64."""
    return (max_photo_bytes + 2) // 3 * 4 + MESSAGE_OVERHEAD


def new_chat_id() -> str:
    return secrets.token_urlsafe(CHAT_ID_BYTES)


def _token(value: str, low: int, high: int) -> bool:
    return low <= len(value) <= high and all(
        c.isascii() and (c.isalnum() or c in "-_") for c in value
    )


def valid_chat_id(value: str) -> bool:
    return _token(value, 16, 64)


def message_key(chat_id: str, client_id: str) -> str:
    """The turn's dedupe key: unique per chat and page-made id, and within the store's 64
    characters whatever the lengths of the two (a hash: both may be 64 long)."""
    return "w" + hashlib.sha256(f"{chat_id}:{client_id}".encode()).hexdigest()[:40]


class WebChatChannel:
    name = "web"
    window: timedelta | None = None

    def __init__(self, *, store: BotStore, max_photo_bytes: int) -> None:
        self.store = store
        self.max_photo_bytes = max_photo_bytes
        self._sockets: dict[str, set[web.WebSocketResponse]] = defaultdict(set)
        self._wake: dict[str, asyncio.Event] = {}
        # message id -> (when, bytes), until the engine takes it or the turn ends
        self._photos: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    # ------------------------------------------------------------------ in

    def parse(self, chat_id: str, data: dict[str, Any], language: str) -> Inbound:
        """One widget message: {"text"}, {"choice", "label"}, {"lat", "lon"} or
        {"photo": base64, "caption"}, each with its "id"; ValueError says what is wrong."""
        client_id = data.get("id")
        if client_id is None:
            client_id = secrets.token_urlsafe(12)
        elif not isinstance(client_id, str) or not _token(client_id, 8, 64):
            raise ValueError("id must be 8-64 characters of A-Z, a-z, 0-9, _ and -")
        common: dict[str, Any] = dict(
            channel=self.name,
            chat_id=chat_id,
            user_id=chat_id,
            message_id=message_key(chat_id, client_id),
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
            self._hold(common["message_id"], photo)
            caption = str(data.get("caption", ""))
            return Inbound(kind="photo", photo=common["message_id"], text=caption, **common)
        if "text" in data:
            return Inbound(kind="text", text=str(data["text"]), **common)
        raise ValueError("a message has text, choice, lat/lon or photo")

    def _hold(self, key: str, photo: bytes) -> None:
        now = time.monotonic()
        self._photos[key] = (now, photo)
        self._photos.move_to_end(key)
        while self._photos:
            oldest, (at, _) = next(iter(self._photos.items()))
            if len(self._photos) <= PHOTOS_HELD and now - at < PHOTO_HOLD_S:
                break
            del self._photos[oldest]

    def release(self, msg: Inbound) -> None:
        """The turn of `msg` ended (answered, refused or failed): its photo is not needed."""
        if msg.photo:
            self._photos.pop(msg.photo, None)

    def held_photos(self) -> int:
        return len(self._photos)

    async def fetch_photo(self, msg: Inbound) -> bytes:
        held = self._photos.pop(msg.photo, None)
        if held is None:
            raise ValueError("photo no longer available")
        return held[1]

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
                    # "n": the page shows a reply once, though a socket that closed
                    # between sending and marking it sent sends it again on the next.
                    await ws.send_json({"reply": item.payload, "n": item.id})
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
    """The next JSON message; NOT_JSON when it is not JSON (answered, the chat goes on);
    None when the socket closed, or broke a limit (too large: aiohttp closes it, 1009)."""
    msg = await ws.receive()
    if msg.type != WSMsgType.TEXT:
        return None
    try:
        # Depth-checked like every JSON body (a deep array hit Python's recursion limit);
        # the text is cleaned by parse, as on the other channels.
        return loads_json(msg.data, what="message", check_text=False)
    except MalformedRequest:
        return NOT_JSON
