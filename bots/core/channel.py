"""What a channel adapter (Telegram, Zalo, web chat) gives the rest of the bots."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from bots.messages import Inbound, Reply


class RetryLater(Exception):
    """The cloud asked us to wait (Telegram 429 `retry_after`) or failed for a while."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(reason)
        self.seconds = seconds


class Undeliverable(Exception):
    """The message can never be delivered (bot blocked, chat gone, outside the window)."""


class Channel(Protocol):
    name: str
    # How long after the citizen's last message the channel lets the bot write (Zalo's
    # customer-service window); None: no such rule.
    window: timedelta | None

    async def send(self, chat_id: str, reply: Reply) -> None:
        """Deliver one reply; RetryLater or Undeliverable when it cannot now or ever."""

    async def fetch_photo(self, msg: Inbound) -> bytes:
        """The photo a message carries, downloaded from the channel."""
