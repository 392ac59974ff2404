"""One turn of a conversation, end to end: the chat's lock, its stored conversation, the
engine, and the replies queued in the same transaction that moves the conversation on."""

from __future__ import annotations

import asyncio
import copy
import logging
import weakref
from collections.abc import Callable
from dataclasses import replace

from bots.core.channel import Channel
from bots.core.engine import Engine
from bots.core.handlers import Services
from bots.messages import MAX_TEXT, Conversation, Inbound, Reply
from bots.store.service import BotStore, Turn, refused_by_database
from ioc_core.api.client import CoreApiError

logger = logging.getLogger(__name__)

CONTENT_REFUSED = frozenset({400, 413, 415, 422})


class BotService:
    def __init__(
        self,
        *,
        engine: Engine,
        store: BotStore,
        services: Callable[[Channel], Services],
    ) -> None:
        self.engine, self.store, self._services = engine, store, services
        # One turn at a time per chat (a photo album arrives as several updates at once).
        # Chats live on one hub process: webhooks of a chat are ordered by the cloud.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, msg: Inbound) -> asyncio.Lock:
        key = (msg.channel, msg.chat_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def handle(self, msg: Inbound, channel: Channel) -> list[Reply]:
        """Answer one message (already authenticated by its adapter). A message seen before
        (the cloud delivered it again) is answered with nothing. A message whose content is
        refused (the database will not store it, or the core answers 4xx) is answered too:
        "could not read that, please retype", the conversation left where it was."""
        if len(msg.text) > MAX_TEXT:
            msg = replace(msg, text=msg.text[:MAX_TEXT])
        lock = self._lock(msg)
        async with lock:
            # The NLU's answer (tens of ms) is asked for while the conversation loads.
            understood = (
                asyncio.ensure_future(self.engine.nlu.understand(msg.text))
                if self.engine.wants_understanding(msg)
                else None
            )
            try:
                turn = await self.store.begin(msg)
            except Exception as exc:
                if understood is not None:
                    understood.cancel()
                if not refused(exc):
                    raise
                return await self._unreadable_without_turn(msg, exc)
            if turn.duplicate:
                if understood is not None:
                    understood.cancel()
                return []
            conv = turn.conversation
            before = _snapshot(conv)
            if not msg.language:
                msg = replace(msg, language=conv.language)
            try:
                if msg.kind == "unsupported":
                    replies = [Reply(self.engine.texts.t("unsupported", conv.language))]
                else:
                    replies = await self.engine.handle(
                        msg, conv, self._services(channel), understood
                    )
            except Exception as exc:
                if refused(exc):
                    logger.warning("input refused for %s:%s: %s", msg.channel, msg.chat_id, exc)
                    _restore(conv, before)
                    replies = [Reply(self.engine.texts.t("input.unreadable", conv.language))]
                else:
                    # Never leave a citizen without an answer, nor stuck in a broken flow:
                    # the answer names the emergency numbers.
                    logger.exception("turn failed for %s:%s", msg.channel, msg.chat_id)
                    conv.end()
                    replies = [Reply(self.engine.texts.t("error.try_later", conv.language))]
            if understood is not None and not understood.done():
                understood.cancel()  # the turn ended before it was needed (a command, a failure)
            try:
                await self._finish(turn, msg, replies)
            except Exception as exc:
                if not refused(exc):
                    raise
                # What the turn would have stored (the citizen's words in the conversation,
                # the hand-off's log) was refused: the turn is undone, the citizen told.
                logger.warning("turn refused for %s:%s: %s", msg.channel, msg.chat_id, exc)
                _restore(conv, before)
                replies = [Reply(self.engine.texts.t("input.unreadable", conv.language))]
                await self._finish(turn, msg, replies)
            return replies

    async def _finish(self, turn: Turn, msg: Inbound, replies: list[Reply]) -> None:
        flow = self.engine.flows.flows.get(turn.conversation.flow or "")
        await self.store.finish(turn, msg, replies, timeout_s=flow.timeout_s if flow else None)

    async def _unreadable_without_turn(self, msg: Inbound, exc: BaseException) -> list[Reply]:
        """The chat itself could not be stored (its name, say): the answer is queued alone."""
        logger.warning("chat refused for %s:%s: %s", msg.channel, msg.chat_id, exc)
        replies = [Reply(self.engine.texts.t("input.unreadable", msg.language or "vi"))]
        await self.store.queue(msg.channel, msg.chat_id, replies, kind="reply")
        return replies


def refused(exc: BaseException) -> bool:
    """The content was refused, not the system failing: the database would not store a
    value (PostgreSQL: NUL in text, a value too long), or the core refused the content (400,
    413, 415, 422; not 401/403/404/409, which say something else and are answered so)."""
    if isinstance(exc, CoreApiError):
        return exc.status in CONTENT_REFUSED
    return refused_by_database(exc)


def _snapshot(conv: Conversation) -> Conversation:
    return Conversation(
        flow=conv.flow,
        step=conv.step,
        data=copy.deepcopy(conv.data),
        language=conv.language,
        expired=conv.expired,
    )


def _restore(conv: Conversation, before: Conversation) -> None:
    conv.flow, conv.step, conv.data = before.flow, before.step, copy.deepcopy(before.data)
    conv.language = before.language
