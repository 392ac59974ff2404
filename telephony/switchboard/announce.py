"""Queue-position announcements: callers who have waited a while hear their place in line,
whispered over app_queue's music."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from telephony.ami.client import AmiClient
from telephony.ari.client import AriError, ChannelGone
from telephony.calls.service import CallStore
from telephony.i18n import t
from telephony.ivr.prompts import announcement
from telephony.switchboard.live import PREFIX as TAP_PREFIX
from telephony.switchboard.voice import Spawn, Voice

logger = logging.getLogger(__name__)


class Positions:
    def __init__(
        self, *, voice: Voice, ami: AmiClient, store: CallStore, every_s: int, spawn: Spawn
    ) -> None:
        """`every_s`: how often (and after how long a wait) a caller hears it; 0 = off."""
        self._voice = voice
        self._ami = ami
        self._store = store
        self._every_s = every_s
        self._spawn = spawn
        self._whispering: set[str] = set()  # callers hearing an announcement now

    async def loop(self) -> None:
        """Every `every_s`, callers who have waited that long hear their place in line."""
        if not self._every_s or self._voice.sounds is None:
            return
        while True:
            await asyncio.sleep(self._every_s)
            if not self._ami.connected.is_set():
                continue
            try:
                entries = await self._ami.list_action("QueueStatus")
            except Exception:
                logger.warning("queue positions unavailable", exc_info=True)
                continue
            for entry in entries:
                uid = entry.get("Uniqueid", "")
                if entry.get("Event") != "QueueEntry" or not uid or uid in self._whispering:
                    continue
                if int(entry.get("Wait") or 0) >= self._every_s:
                    self._spawn(self.announce(uid, int(entry.get("Position") or 1)))

    async def announce(self, uid: str, position: int) -> None:
        """Whisper "you are number N in line" to a caller waiting in app_queue: a snoop channel
        (whisper=out) carries the announcement over the queue's music without moving the call,
        so a failure here cannot lose the caller's place."""
        sounds = self._voice.sounds
        assert sounds is not None
        ari = self._voice.ari
        self._whispering.add(uid)
        whisper = f"{TAP_PREFIX}w-{uuid.uuid4().hex[:16]}"
        events = self._voice.events(whisper)
        try:
            call = await self._store.get_call(uid)
            language = call["language"] if call else "vi"  # chosen in the menu, else vi
            text = t("queue.position", language, position=position)
            media = await asyncio.to_thread(announcement, text, language, sounds)
            await ari.snoop(uid, snoop_id=whisper, app_args="whisper", spy="none", whisper="out")
            for attempt in range(20):  # the snoop channel enters Stasis just after the POST
                try:
                    await self._voice.play(whisper, media, events)
                    break
                except AriError as exc:
                    if exc.status not in (404, 409, 422) or attempt == 19:
                        raise
                    await asyncio.sleep(0.05)
        except ChannelGone:
            pass  # the caller left, or was answered, meanwhile
        except Exception:
            logger.warning("position announcement failed for %s", uid, exc_info=True)
        finally:
            self._voice.release(whisper)
            self._whispering.discard(uid)
            with contextlib.suppress(ChannelGone, AriError):
                await ari.hang_up(whisper)
