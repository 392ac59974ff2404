"""Drive the IVR engine on a live ARI channel.

The switchboard's Stasis router owns the WebSocket; it hands this session the events of one
channel through a queue (`channel_of(event)` says which channel an event belongs to):
ChannelDtmfReceived, PlaybackFinished, StasisEnd, ChannelHangupRequest, ChannelDestroyed.
Everything else is ignored, so routing more is harmless.

Never leaves a call stuck: a hang-up ends the session (`hung_up=True`, a 404 on the channel is
the same normal race), anything unexpected ends it with outcome "queue", and a silent
Asterisk (no event for `guard_s` while a prompt plays) does too.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telephony.ari.client import AriClient, AriError, ChannelGone
from telephony.ari.events import channel_of
from telephony.ivr import engine
from telephony.ivr.menus import Menu, Outcome
from telephony.ivr.prompts import media_uri

logger = logging.getLogger(__name__)

HANGUP_EVENTS = frozenset({"StasisEnd", "ChannelHangupRequest", "ChannelDestroyed"})
RECORDING_EVENTS = frozenset({"RecordingFinished", "RecordingFailed"})
ROUTED_EVENTS = frozenset(
    {"ChannelDtmfReceived", "PlaybackFinished", *RECORDING_EVENTS, *HANGUP_EVENTS}
)
# Recordings of callers' descriptions: Asterisk's spool/recording/<DESCRIPTIONS>/<call>.wav.
DESCRIPTIONS = "ioc-describe"
SILENCE_ENDS_S = 3  # a pause this long ends a description (the caller has finished)


@dataclass(frozen=True, kw_only=True)
class IvrResult:
    outcome: Outcome
    language: str
    choices: tuple[engine.Choice, ...]  # (node, digit) in the order the caller pressed them
    hung_up: bool = False  # the caller left during the menu (outcome is then "hangup")
    last_node: str = ""  # where the caller was when the menu ended (abandonment statistics)
    # The caller's own description (a recording node), relative to Asterisk's spool.
    description_path: str | None = None
    entered: str = ""  # digits keyed in at a collecting node (a tracking code)


class _Hangup(Exception):
    """The caller is gone: end quietly."""


class _Session:
    def __init__(
        self,
        *,
        ari: AriClient,
        channel_id: str,
        menu: Menu,
        events: asyncio.Queue[Mapping[str, Any]],
        guard_s: float,
    ) -> None:
        self.ari = ari
        self.channel_id = channel_id
        self.menu = menu
        self.events = events
        self.guard_s = guard_s
        self.loop = asyncio.get_running_loop()
        self.playback: str | None = None  # the playback whose PlaybackFinished we await
        self.recording: str | None = None  # the recording whose end we await
        self.listen_until: float | None = None
        self.state: engine.State | None = None  # the engine's latest, for an early end

    async def run(self, now: datetime) -> engine.Finish:
        self.state, actions = engine.start(self.menu, now)
        while True:
            for action in actions:
                if isinstance(action, engine.Finish):
                    return action
                await self.perform(action)
            event = await self.next_event()
            self.state, actions = engine.step(self.menu, self.state, event)
            if any(isinstance(a, engine.Play | engine.Finish) for a in actions):
                self.listen_until = None

    async def perform(self, action: engine.Action) -> None:
        if isinstance(action, engine.Play):
            # Our own playback id, sent with the request: PlaybackFinished can then be matched
            # even when it arrives before the POST returns.
            self.playback = f"ivr-{uuid.uuid4().hex}"
            await self.ari.play(
                self.channel_id,
                media_uri(action.prompt, action.language),
                playback_id=self.playback,
                lang=action.language,
            )
        elif isinstance(action, engine.StopPrompt):
            await self.stop_playback()
        elif isinstance(action, engine.Listen):
            self.listen_until = self.loop.time() + action.timeout_s
        elif isinstance(action, engine.Record):
            self.recording = f"{DESCRIPTIONS}/{self.channel_id}"
            await self.ari.record(
                self.channel_id, self.recording, max_s=int(action.max_s), silence_s=SILENCE_ENDS_S
            )
            # A recording makes no PlaybackFinished: the guard must wait out its whole length.
            self.listen_until = None

    def ended(self, outcome: Outcome, *, hung_up: bool) -> IvrResult:
        """The result when the menu could not finish by itself."""
        state = self.state
        return IvrResult(
            outcome=outcome,
            language=state.language if state else self.menu.default_language,
            choices=state.choices if state else (),
            hung_up=hung_up,
            last_node=state.node if state else self.menu.start,
        )

    async def stop_quietly(self) -> None:
        try:
            await self.stop_playback()
        except Exception:  # the call goes to the queue whatever happens here
            logger.debug("could not stop the playback on %s", self.channel_id, exc_info=True)

    async def stop_playback(self) -> None:
        playback, self.playback = self.playback, None
        if playback is None:
            return
        try:
            await self.ari.stop_playback(playback)
        except AriError as exc:
            if exc.status != 404:  # 404: it finished meanwhile
                raise

    async def next_event(self) -> engine.Event:
        while True:
            if self.listen_until is not None:
                wait = self.listen_until - self.loop.time()
                if wait <= 0:
                    self.listen_until = None
                    return engine.Timeout()
            else:
                wait = self.guard_s
            try:
                raw = await asyncio.wait_for(self.events.get(), wait)
            except TimeoutError:
                if self.listen_until is not None:
                    continue  # the Listen period is over: the loop above says Timeout
                raise RuntimeError(f"no event from Asterisk for {self.guard_s:.0f}s") from None
            if (event := self.translate(raw)) is not None:
                return event

    def translate(self, raw: Mapping[str, Any]) -> engine.Event | None:
        kind = raw.get("type")
        if kind not in ROUTED_EVENTS or channel_of(raw) != self.channel_id:
            return None
        if kind in HANGUP_EVENTS:
            raise _Hangup(str(kind))
        if kind == "ChannelDtmfReceived":
            return engine.Digit(str(raw.get("digit", "")))
        if kind in RECORDING_EVENTS:
            if raw.get("recording", {}).get("name") != self.recording:
                return None
            if kind == "RecordingFailed":
                logger.warning("description recording failed on %s", self.channel_id)
                self.recording = None
            return engine.Recorded(saved=kind == "RecordingFinished")
        playback = raw.get("playback", {})
        if playback.get("id") != self.playback:
            return None  # a stopped (barged-in) playback reporting its end
        self.playback = None
        if playback.get("state") == "failed":
            # Asterisk could not play it (e.g. a missing file): go on rather than wait forever.
            # Asterisk quirk: a prompt cut short by a hang-up is also reported "failed"; the
            # hang-up event follows and ends the session anyway.
            logger.warning(
                "prompt %s failed to play on %s", playback.get("media_uri"), self.channel_id
            )
        return engine.PromptDone()


async def run_ivr(
    *,
    ari: AriClient,
    channel_id: str,
    menu: Menu,
    events: asyncio.Queue[Mapping[str, Any]],
    now: datetime,
    guard_s: float = 120.0,
) -> IvrResult:
    """Run `menu` on the answered channel `channel_id` (already in Stasis) until it finishes
    or the caller hangs up. The caller of this function acts on the result: continue the
    channel into the dialplan (queue), record a message (record) or hang up (hangup)."""
    session = _Session(ari=ari, channel_id=channel_id, menu=menu, events=events, guard_s=guard_s)
    try:
        finish = await session.run(now)
    except (_Hangup, ChannelGone) as exc:
        logger.info("caller left the menu on %s (%s)", channel_id, exc)
        return session.ended("hangup", hung_up=True)
    except Exception:
        logger.exception("IVR failed on %s; sending the call to the queue", channel_id)
        await session.stop_quietly()
        return session.ended("queue", hung_up=False)
    return IvrResult(
        outcome=finish.outcome,
        language=finish.language,
        choices=finish.choices,
        last_node=session.state.node if session.state else menu.start,
        description_path=f"recording/{session.recording}.wav"
        if finish.described and session.recording
        else None,
        entered=finish.entered,
    )
