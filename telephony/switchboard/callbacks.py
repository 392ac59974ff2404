"""Call-backs the switchboard places by itself: due items dialled out over the trunk, the
citizen greeted when they pick up and put at the front of the service's queue, each
attempt's outcome recorded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from telephony.ari.client import AriError, ChannelGone
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.i18n import t
from telephony.settings import SwitchboardSettings
from telephony.switchboard.voice import Voice

logger = logging.getLogger(__name__)

# Q.850 causes of an unanswered call-back, as the attempt's outcome.
_NOT_ANSWERED = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "rejected"}


class Callbacks:
    def __init__(
        self, *, voice: Voice, store: CallStore, settings: SwitchboardSettings, zone: ZoneInfo
    ) -> None:
        self._voice = voice
        self._store = store
        self._settings = settings
        self._zone = zone
        self.originated: dict[str, int] = {}  # call-back channel id -> call-back id
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            try:
                for callback_id in await self._store.callbacks.due():
                    await self._originate(callback_id)
            except Exception:
                logger.exception("call-back loop failed; retrying")

    async def _originate(self, callback_id: int) -> None:
        cb = await self._store.callbacks.get(callback_id)
        if cb is None:
            return
        number = str(cb["ani"])
        if not (number.isascii() and number.isdigit()):
            # The store's policy let only digits through (callback_policy.decide); this is the
            # last line before the trunk, where any other character changes what is dialled.
            logger.error("call-back %d: refusing dial string %r", callback_id, number)
            await self._store.callbacks.attempt_finished(callback_id, "failed")
            return
        channel_id = f"callback-{callback_id}-{cb['attempts']}"
        self.originated[channel_id] = callback_id
        try:
            await self._voice.ari.originate(
                endpoint=f"PJSIP/{number}@trunk",
                app_args=f"callback,{callback_id},{cb['service']}",
                caller_id=cb["service"],
                timeout_s=self._settings.callback.ring_s,
                channel_id=channel_id,
            )
            await self._store.callbacks.attempt_started(callback_id, channel_id)
        except AriError as exc:
            logger.warning("call-back %d could not be placed: %s", callback_id, exc)
            self.originated.pop(channel_id, None)
            await self._store.callbacks.attempt_finished(callback_id, "failed")

    async def answered(self, channel: Mapping[str, Any], args: list[str]) -> None:
        """The citizen picked up a call-back: it joins the service's queue ahead of others."""
        cid = str(channel["id"])
        callback_id = int(args[0]) if args and args[0].isdigit() else None
        service = args[1] if len(args) > 1 else ""
        self.originated.pop(cid, None)
        ani = ""
        item: dict[str, Any] | None = None
        if callback_id is not None:
            item = await self._store.callbacks.attempt_finished(callback_id, "answered")
            ani = item["ani"] if item else ""
        # The originated channel's caller id is ours (the service number): the citizen's
        # number is the call-back item's.
        await self._store.record(
            cid,
            Fact.ARRIVED,
            ani=ani,
            service=service,
            channel=str(channel.get("name", "")),
            direction="callback",
            callback_of=callback_id,
        )
        try:
            if item is not None:
                await self._greet(cid, item)
        except ChannelGone:
            return  # the citizen hung up during the greeting: the observer ends the call
        except Exception:  # the greeting is a courtesy: the call goes on without it
            logger.exception("call-back greeting failed on %s", cid)
        finally:
            self._voice.release(cid)
        await self._voice.continue_in_dialplan(
            cid, context="callback", extension=service, priority="1"
        )

    async def _greet(self, cid: str, item: Mapping[str, Any]) -> None:
        """Tell the citizen who is calling and why: the service and the time they called."""
        language = await self._store.call_language(int(item["call_id"]))
        called = datetime.fromisoformat(str(item["created_at"])).astimezone(self._zone)
        text = t(
            "callback.greeting",
            language,
            number=" ".join(str(item["service"])),  # "1 1 4", as people say it
            time=called.strftime("%H:%M") if language == "en" else called.strftime("%H giờ %M"),
        )
        await self._voice.announce(cid, text, language, self._voice.events(cid))

    async def not_answered(self, cid: str, cause: int) -> None:
        callback_id = self.originated.pop(cid, None)
        if callback_id is not None:
            await self._store.callbacks.attempt_finished(
                callback_id, _NOT_ANSWERED.get(cause, "failed")
            )
