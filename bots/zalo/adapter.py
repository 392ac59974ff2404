"""Zalo Official Account, API v3, over plain HTTP (no official Python SDK exists).

The API's facts and quirks this relies on (signatures, ids, error codes, token lifetimes):
docs/quirks/zalo.md; the decision is docs/adr/0016.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bots.core.channel import RetryLater, Undeliverable
from bots.messages import Inbound, Reply

logger = logging.getLogger(__name__)

MAX_TEXT = 2000
WINDOW = timedelta(days=7)  # customer-service messages only this long after the citizen wrote
REFRESH_BEFORE_S = 3600
EXPIRED = frozenset({-216, -220})
RATE_LIMITED = -32
NEVER = {
    -213: "the citizen does not follow the OA",
    -217: "the citizen blocked the OA",
    -227: "the citizen's account is banned or inactive",
    -230: "the citizen has not written to the OA in the last 7 days",
    -232: "the citizen's last interaction with the OA has expired",
}
IGNORED = ("oa_send_", "user_seen_message", "user_received_message", "unfollow")
UNSUPPORTED = frozenset(
    {
        "user_send_sticker",
        "user_send_file",
        "user_send_gif",
        "user_send_audio",
        "user_send_video",
        "user_send_link",
        "user_send_business_card",
    }
)


def signature(app_id: str, body: bytes, timestamp: str, secret: str) -> str:
    digest = hashlib.sha256(app_id.encode() + body + timestamp.encode() + secret.encode())
    return "mac=" + digest.hexdigest()


def signed(header: str, app_id: str, body: bytes, timestamp: str, secret: str) -> bool:
    expected = signature(app_id, body, timestamp, secret)
    return hmac.compare_digest(header.strip().encode(), expected.encode())


@dataclass
class Tokens:
    access: str
    refresh: str
    expires_at: float  # epoch seconds; 0 = unknown (refresh when refused)


class TokenKeeper:
    """The OA's access token, refreshed before it expires or when Zalo refuses it, the new
    pair written (0600, atomically) before use: a refresh token works once."""

    def __init__(
        self,
        *,
        path: Path,
        app_id: str,
        app_secret: str,
        oauth_base: str,
        access: str,
        refresh: str,
        http: aiohttp.ClientSession,
    ) -> None:
        self.path, self.app_id, self.app_secret = path, app_id, app_secret
        self.oauth_base, self.http = oauth_base, http
        self._lock = asyncio.Lock()
        self.tokens = self._load() or Tokens(access, refresh, 0)

    def _load(self) -> Tokens | None:
        try:
            d = json.loads(self.path.read_text())
            return Tokens(d["access"], d["refresh"], float(d["expires_at"]))
        except (OSError, ValueError, KeyError):
            return None

    def _save(self, t: Tokens) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"access": t.access, "refresh": t.refresh, "expires_at": t.expires_at}, fh)
        os.replace(tmp, self.path)

    async def access(self) -> str:
        t = self.tokens
        if t.expires_at and t.expires_at - time.time() < REFRESH_BEFORE_S:
            await self.refresh(t.access)
        return self.tokens.access

    async def refresh(self, refused: str) -> None:
        """New tokens, unless another task already replaced the one that was refused."""
        async with self._lock:
            if self.tokens.access != refused:
                return
            if not (self.app_secret and self.tokens.refresh):
                raise Undeliverable("zalo: access token refused and no refresh token/app secret")
            async with self.http.post(
                f"{self.oauth_base}/v4/oa/access_token",
                data={
                    "refresh_token": self.tokens.refresh,
                    "app_id": self.app_id,
                    "grant_type": "refresh_token",
                },
                headers={"secret_key": self.app_secret},
            ) as r:
                body = await r.json(content_type=None)
            if not isinstance(body, dict) or not body.get("access_token"):
                raise Undeliverable(f"zalo: token refresh refused: {body}")
            t = Tokens(
                body["access_token"],
                body.get("refresh_token") or self.tokens.refresh,
                time.time() + float(body.get("expires_in") or 90000),
            )
            await asyncio.to_thread(self._save, t)
            self.tokens = t
            logger.info("zalo: access token refreshed")


class ZaloChannel:
    name = "zalo"
    # Customer-service messages only within 7 days of the citizen's last message; after that
    # only paid, pre-approved templates may be sent (not used by the hub).
    window: timedelta | None = WINDOW

    def __init__(
        self,
        *,
        app_id: str,
        oa_secret: str,
        api_base: str,
        tokens: TokenKeeper,
        http: aiohttp.ClientSession,
        max_photo_bytes: int = 10 << 20,
    ) -> None:
        self.app_id, self.oa_secret, self.api_base = app_id, oa_secret, api_base
        self.tokens, self.http, self.max_photo_bytes = tokens, http, max_photo_bytes

    async def close(self) -> None:
        await self.http.close()

    # ------------------------------------------------------------------ in

    def parse(self, event: dict[str, Any]) -> Inbound | None:
        """The message an event carries; None for events the bots do not handle."""
        name = str(event.get("event_name", ""))
        if not name or name.startswith(IGNORED):
            return None
        stamp = str(event.get("timestamp", ""))
        if name == "follow":
            user = str((event.get("follower") or {}).get("id", ""))
            return Inbound(
                channel=self.name,
                chat_id=user,
                user_id=user,
                message_id=f"follow:{user}:{stamp}",
                kind="text",
                text="/start",
            )
        if not name.startswith("user_send_"):
            return None
        user = str((event.get("sender") or {}).get("id", ""))
        if not user:
            raise ValueError("no sender.id")
        message = event.get("message") or {}
        common: dict[str, Any] = dict(
            channel=self.name,
            chat_id=user,
            user_id=user,
            message_id=str(message.get("msg_id") or f"{name}:{user}:{stamp}"),
            text=str(message.get("text") or ""),
        )
        attachments = message.get("attachments") or []
        first = attachments[0] if attachments and isinstance(attachments[0], dict) else {}
        payload = first.get("payload") or {}
        if name == "user_send_text":
            return Inbound(kind="text", **common)
        if name == "user_send_image":
            url = payload.get("url") or payload.get("thumbnail")
            if not url:
                raise ValueError("an image event without a URL")
            return Inbound(kind="photo", photo=str(url), **common)
        if name == "user_send_location":
            where = payload.get("coordinates") or {}
            lat, lon = float(where["latitude"]), float(where["longitude"])
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValueError("coordinates out of range")
            return Inbound(kind="location", lat=lat, lon=lon, **{**common, "text": ""})
        if name in UNSUPPORTED:
            return Inbound(kind="unsupported", **common)
        return None

    async def fetch_photo(self, msg: Inbound) -> bytes:
        async with self.http.get(msg.photo) as r:
            r.raise_for_status()
            data = await r.content.read(self.max_photo_bytes + 1)
        if len(data) > self.max_photo_bytes:
            raise ValueError("photo too large")
        return data

    # ------------------------------------------------------------------ out

    @staticmethod
    def render(reply: Reply) -> str:
        """Zalo's customer-service text has no buttons: choices become numbered lines (the
        engine takes a typed number for the button), unless the text already lists them."""
        text = reply.text
        labels = [label for label, _payload in reply.buttons]
        if labels and f"1. {labels[0]}" not in text:
            text += "\n" + "\n".join(f"{i}. {label}" for i, label in enumerate(labels, 1))
        return text[:MAX_TEXT]

    async def send(self, chat_id: str, reply: Reply) -> None:
        body = {"recipient": {"user_id": chat_id}, "message": {"text": self.render(reply)}}
        for attempt in (1, 2):
            token = await self.tokens.access()
            async with self.http.post(
                f"{self.api_base}/v3.0/oa/message/cs", json=body, headers={"access_token": token}
            ) as r:
                if r.status >= 500:
                    raise RetryLater(5, f"zalo: HTTP {r.status}")
                data = await r.json(content_type=None)
            error = int(data.get("error", -1)) if isinstance(data, dict) else -1
            if error == 0:
                return
            if error in EXPIRED and attempt == 1:
                await self.tokens.refresh(token)
                continue
            if error == RATE_LIMITED:
                raise RetryLater(60, "zalo: rate limited (-32)")
            reason = NEVER.get(error) or f"zalo refused the message: {data}"
            raise Undeliverable(f"zalo {error}: {reason}")
