"""The hub's way back into a conversation held on Rasa's own channels: a queued reply (a
notice, an agent's words) is pushed with Rasa's `trigger_intent` API. Its intent,
EXTERNAL_hub_message, carries the reply as an entity; Rasa's rule runs action_relay_message,
which the hub answers with that reply (bots/rasa/actions.py), and Rasa sends it on the
conversation's latest channel.

Rasa's quirk: its REST channel only answers the request a citizen makes, so a pushed message
reaches REST clients only in the API's own response; socket.io and the messaging channels
deliver it."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import quote

import aiohttp

from bots.core.channel import RetryLater, Undeliverable
from bots.messages import Inbound, Reply
from bots.rasa.actions import PUSHED, RELAYED


class RasaChannel:
    name = "rasa"
    window: timedelta | None = None

    def __init__(self, *, url: str, token: str, timeout_s: float = 15) -> None:
        self.url = url.rstrip("/")
        self._params = {"output_channel": "latest", **({"token": token} if token else {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: aiohttp.ClientSession | None = None

    async def send(self, chat_id: str, reply: Reply) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        body = {
            "name": PUSHED,
            "entities": {RELAYED: json.dumps(reply.as_json(), ensure_ascii=False)},
        }
        url = f"{self.url}/conversations/{quote(chat_id, safe='')}/trigger_intent"
        try:
            async with self._http.post(url, json=body, params=self._params) as r:
                if r.status == 200:
                    return
                text = (await r.text())[:300]
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise RetryLater(10, f"rasa: {exc.__class__.__name__}") from None
        if r.status >= 500 or r.status == 409:  # 409: the conversation is busy
            raise RetryLater(10, f"rasa: HTTP {r.status} {text}")
        raise Undeliverable(f"rasa refused the message: HTTP {r.status} {text}")

    async def fetch_photo(self, msg: Inbound) -> bytes:
        raise ValueError("Rasa's channels bring no photos to the hub")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
