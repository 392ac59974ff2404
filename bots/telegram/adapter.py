"""Telegram through python-telegram-bot 22, in webhook mode behind the hub's own web server:
PTB parses updates (`Update.de_json`) and makes the Bot API calls; the hub's sender decides
when (rate limits, retries).

Facts this relies on (Bot API docs, PTB 22.8 source):
- Telegram signs nothing; the only check is the secret given to setWebhook, sent back in
  `X-Telegram-Bot-Api-Secret-Token` (1-256 of A-Z a-z 0-9 _ -);
- a webhook that does not answer 2xx is delivered again: updates are deduplicated by
  `update_id`;
- PTB appends the token to `base_url` (".../bot" + token + "/method") and sends form-encoded
  requests; 429 answers carry `parameters.retry_after` (PTB's RetryAfter; a timedelta-like
  value since 22.2, read here as seconds either way);
- inline button data is at most 64 bytes; a message holds one keyboard: inline buttons or a
  reply keyboard (the "share my location" button), not both.
"""

from __future__ import annotations

import logging
import warnings
from datetime import timedelta
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import BadRequest, Forbidden, InvalidToken, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from bots.core.channel import RetryLater, Undeliverable
from bots.messages import Inbound, Reply

logger = logging.getLogger(__name__)

MAX_TEXT = 4096
MAX_CALLBACK_BYTES = 64
PER_ROW = 2  # inline buttons per keyboard row


def _language(code: str | None) -> str:
    return "en" if (code or "").lower().startswith("en") else "vi"


class TelegramChannel:
    name = "telegram"
    window: timedelta | None = None  # a bot may write to whoever started it, until blocked

    def __init__(self, *, token: str, api_base: str = "https://api.telegram.org") -> None:
        self.bot = Bot(
            token,
            base_url=f"{api_base}/bot",
            base_file_url=f"{api_base}/file/bot",
            request=HTTPXRequest(connection_pool_size=16, read_timeout=10, write_timeout=10),
        )

    async def start(self) -> None:
        await self.bot.initialize()  # getMe: a wrong token or base URL shows at start-up

    async def close(self) -> None:
        await self.bot.shutdown()

    # ------------------------------------------------------------------ in

    def parse(self, data: dict[str, Any]) -> tuple[Inbound | None, str | None]:
        """(the message, a callback query id to answer); (None, None) for updates the bots
        do not handle (edits, membership changes, channel posts)."""
        update = Update.de_json(data, self.bot)
        uid = str(update.update_id)
        if (q := update.callback_query) is not None:
            chat = q.message.chat.id if q.message is not None else q.from_user.id
            return (
                Inbound(
                    channel=self.name,
                    chat_id=str(chat),
                    message_id=uid,
                    kind="choice",
                    user_id=str(q.from_user.id),
                    name=q.from_user.full_name,
                    language=_language(q.from_user.language_code),
                    choice=q.data or "",
                ),
                q.id,
            )
        m = update.message
        if m is None or m.chat.type != "private":
            return None, None
        who = m.from_user
        common: dict[str, Any] = dict(
            channel=self.name,
            chat_id=str(m.chat.id),
            message_id=uid,
            user_id=str(who.id) if who else str(m.chat.id),
            name=who.full_name if who else "",
            language=_language(who.language_code if who else None),
        )
        if m.location is not None:
            loc = m.location
            return Inbound(kind="location", lat=loc.latitude, lon=loc.longitude, **common), None
        if m.photo:
            # Sizes of one photo, smallest first: the largest is last.
            return Inbound(
                kind="photo", photo=m.photo[-1].file_id, text=m.caption or "", **common
            ), None
        if m.text is not None:
            return Inbound(kind="text", text=m.text, **common), None
        return Inbound(kind="unsupported", **common), None

    async def answer_callback(self, query_id: str) -> None:
        try:
            await self.bot.answer_callback_query(query_id)
        except TelegramError as exc:  # the spinner stops by itself after a while
            logger.info("telegram: answerCallbackQuery failed: %s", exc)

    async def fetch_photo(self, msg: Inbound) -> bytes:
        file = await self.bot.get_file(msg.photo)
        return bytes(await file.download_as_bytearray())

    # ------------------------------------------------------------------ out

    def _markup(self, reply: Reply) -> Any:
        buttons = [
            (label, payload)
            for label, payload in reply.buttons
            if len(payload.encode()) <= MAX_CALLBACK_BYTES
        ]
        if buttons:
            rows = [
                [
                    InlineKeyboardButton(label[:64], callback_data=payload)
                    for label, payload in buttons[i : i + PER_ROW]
                ]
                for i in range(0, len(buttons), PER_ROW)
            ]
            return InlineKeyboardMarkup(rows)
        if reply.ask_location:
            label = "📍 Gửi vị trí / Send location"
            return ReplyKeyboardMarkup(
                [[KeyboardButton(label, request_location=True)]],
                resize_keyboard=True,
                one_time_keyboard=True,
            )
        return ReplyKeyboardRemove()

    async def send(self, chat_id: str, reply: Reply) -> None:
        try:
            await self.bot.send_message(
                chat_id=int(chat_id), text=reply.text[:MAX_TEXT], reply_markup=self._markup(reply)
            )
        except RetryAfter as exc:
            with warnings.catch_warnings():
                # PTB 22.2+ warns that the int becomes a timedelta in v23; both are read.
                warnings.simplefilter("ignore")
                wait = exc.retry_after
            seconds = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
            raise RetryLater(seconds, f"telegram asked to wait {seconds:g} s") from exc
        except (Forbidden, BadRequest, InvalidToken) as exc:
            # Blocked by the user, chat gone, or a message Telegram refuses: never deliverable.
            raise Undeliverable(f"telegram: {exc}") from exc
