"""The bottom layer every route shares: a caller's channel and what can be done to it (go on
in the dialplan, set its variables, hear a prompt or an announcement), and the queues of
ARI events the router hands to the route that holds a channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from telephony.ari.client import AriClient, ChannelGone
from telephony.ivr.prompts import announcement, media_uri

Events = asyncio.Queue[Mapping[str, Any]]
# Runs work in the background, owned by the switchboard (cancelled when it closes).
Spawn = Callable[[Awaitable[Any]], "asyncio.Task[Any]"]


class Voice:
    def __init__(self, *, ari: AriClient, sounds: Path | None = None) -> None:
        """`sounds`: where prompts are made (dynamic announcements go there too); None: no
        announcements."""
        self.ari = ari
        self.sounds = sounds
        # Channel id -> the ARI events of the route holding it (an IVR, a recording, ...).
        self.sessions: dict[str, Events] = {}

    def events(self, cid: str) -> Events:
        """The channel's event queue, registered for the router if it is not yet."""
        return self.sessions.setdefault(cid, asyncio.Queue())

    def release(self, cid: str) -> None:
        self.sessions.pop(cid, None)

    async def continue_in_dialplan(self, cid: str, **where: str) -> None:
        with contextlib.suppress(ChannelGone):  # hung up meanwhile: a normal race
            await self.ari.continue_in_dialplan(cid, **where)

    async def set_vars(self, cid: str, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            with contextlib.suppress(ChannelGone):
                await self.ari.set_variable(cid, name, value)

    async def say(self, cid: str, prompt: str, language: str, events: Events) -> None:
        """Play one prompt to the end (or until the caller leaves)."""
        await self.play(cid, media_uri(prompt, language), events)

    async def play(self, cid: str, media: str, events: Events) -> None:
        await self.ari.play(cid, media, playback_id=f"say-{cid}")
        while True:
            event = await asyncio.wait_for(events.get(), 60)
            if event.get("type") in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
                raise ChannelGone(404, cid)
            if event.get("type") == "PlaybackFinished":
                return

    async def announce(self, cid: str, text: str, language: str, events: Events) -> None:
        """Speak `text` to the end (a dynamic announcement, made once per distinct text)."""
        if self.sounds is not None:
            media = await asyncio.to_thread(announcement, text, language, self.sounds)
            await self.play(cid, media, events)
