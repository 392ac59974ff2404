"""Messages left after the tone (SW-8): the overflow route (a queue gave up) and the voice
menu's "leave a message"; the call-back item carries the recording and its words."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from telephony.ari.client import AriError, ChannelGone
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.switchboard.arrival import arrived
from telephony.switchboard.transcripts import Transcripts
from telephony.switchboard.voice import Spawn, Voice

logger = logging.getLogger(__name__)

# Where messages left after the tone go (Asterisk's spool/recording/<MESSAGES>/<call>.wav).
MESSAGES = "ioc-msg"


class Messages:
    def __init__(
        self, *, voice: Voice, store: CallStore, transcripts: Transcripts, spawn: Spawn
    ) -> None:
        self._voice = voice
        self._store = store
        self._transcripts = transcripts
        self._spawn = spawn

    async def route(self, channel: Mapping[str, Any], args: list[str]) -> None:
        """Overflow from the dialplan (a queue gave up): record a message, call back later."""
        cid = str(channel["id"])
        await arrived(self._store, channel, args)
        call = await self._store.get_call(cid)  # the language the caller chose in the menu
        language = "en" if call and call["language"] == "en" else "vi"
        await self.record(cid, language, announce="busy-message")

    async def record(self, cid: str, language: str, *, announce: str = "") -> None:
        """Record after the tone, then the call-back item carries the recording.
        `announce`: a prompt saying why first (the voice menu has said it on its own path)."""
        events = self._voice.events(cid)
        name = f"{MESSAGES}/{cid}"
        try:
            if announce:
                await self._voice.say(cid, announce, language, events)
            await self._voice.ari.record(cid, name, max_s=120, silence_s=10)
            while True:
                event = await asyncio.wait_for(events.get(), 150)
                if event.get("type") in ("RecordingFinished", "RecordingFailed"):
                    break
                if event.get("type") in ("StasisEnd", "ChannelDestroyed"):
                    # Asterisk finishes the file on hang-up; its event may follow or not.
                    break
        except (ChannelGone, TimeoutError, AriError) as exc:
            logger.info("recording on %s ended early: %s", cid, exc)
        finally:
            self._voice.release(cid)
        await self._store.record(cid, Fact.RECORDED, recording_path=f"recording/{name}.wav")
        with contextlib.suppress(ChannelGone, AriError):
            await self._voice.ari.hang_up(cid)
        self._spawn(self._transcripts.message(cid, f"recording/{name}.wav", language))

    async def recorded_by_dialplan(self, uid: str, path: str) -> None:
        """The dialplan recorded a message itself (the app was down at overflow time)."""
        await self._store.record(uid, Fact.RECORDED, recording_path=path)
        if path:
            self._spawn(self._transcripts.message(uid, path, "vi"))
