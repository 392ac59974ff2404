"""What a channel adapter (Telegram, Zalo, web chat) gives the rest of the bots."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bots.core.messages import Inbound, Reply


class RetryLater(Exception):
    """The cloud asked us to wait (Telegram 429 `retry_after`) or failed for a while."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


class Undeliverable(Exception):
    """The message can never be delivered (bot blocked, chat gone, outside the window)."""


class Channel(Protocol):
    name: str

    async def send(self, chat_id: str, reply: Reply) -> None:
        """Deliver one reply; RetryLater or Undeliverable when it cannot now or ever."""

    async def fetch_photo(self, msg: Inbound) -> bytes:
        """The photo a message carries, downloaded from the channel."""

    def why_not(self, kind: str, last_inbound: datetime | None, now: datetime) -> str | None:
        """Why the channel's rules forbid a message of `kind` (reply, notice, agent) to a chat
        whose citizen last wrote at `last_inbound`; None when they allow it."""
