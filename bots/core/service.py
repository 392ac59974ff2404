"""One turn of a conversation, end to end: the chat's lock, its stored conversation, the
engine, and the replies queued in the same transaction that moves the conversation on."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import replace

from bots.core.channel import Channel
from bots.core.engine import Engine
from bots.core.handlers import Services
from bots.core.messages import MAX_TEXT, Inbound, Reply
from bots.store.service import BotStore

logger = logging.getLogger(__name__)


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
        (the cloud delivered it again) is answered with nothing."""
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
            turn = await self.store.begin(msg)
            if turn.duplicate:
                if understood is not None:
                    understood.cancel()
                return []
            conv = turn.conversation
            if not msg.language:
                msg = replace(msg, language=conv.language)
            try:
                if msg.kind == "unsupported":
                    replies = [Reply(self.engine.texts.t("unsupported", conv.language))]
                else:
                    replies = await self.engine.handle(
                        msg, conv, self._services(channel), understood
                    )
            except Exception:
                # Never leave a citizen without an answer, nor stuck in a broken flow: the
                # answer names the emergency numbers.
                logger.exception("turn failed for %s:%s", msg.channel, msg.chat_id)
                conv.end()
                replies = [Reply(self.engine.texts.t("error.try_later", conv.language))]
            if understood is not None and not understood.done():
                understood.cancel()  # the turn ended before it was needed (a command, a failure)
            flow = self.engine.flows.flows.get(conv.flow or "")
            await self.store.finish(turn, msg, replies, timeout_s=flow.timeout_s if flow else None)
            return replies
