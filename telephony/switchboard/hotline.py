"""The citizens' routes into the switchboard: an emergency call (113/114/115) and the 1022
hotline's voice menu, which ends in the queue, a message, the status line or a goodbye."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from telephony import dialplan_vars as dv
from telephony.ari.client import AriClient, ChannelGone
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.ivr.session import IvrResult
from telephony.switchboard.arrival import arrived
from telephony.switchboard.draft import Description
from telephony.switchboard.messages import Messages
from telephony.switchboard.status import StatusLine
from telephony.switchboard.transcripts import Transcripts
from telephony.switchboard.voice import Spawn, Voice

logger = logging.getLogger(__name__)


class IvrRunner(Protocol):
    """`telephony.ivr.session.run_ivr` with its menu bound (functools.partial)."""

    async def __call__(
        self,
        *,
        ari: AriClient,
        channel_id: str,
        events: asyncio.Queue[Mapping[str, Any]],
        now: datetime,
    ) -> IvrResult: ...


class Hotline:
    def __init__(
        self,
        *,
        voice: Voice,
        store: CallStore,
        ivr: IvrRunner | None,
        messages: Messages,
        status: StatusLine,
        transcripts: Transcripts,
        descriptions: dict[str, asyncio.Task[Description | None]],
        spawn: Spawn,
        clock: Callable[[], datetime],
    ) -> None:
        """`ivr`: the 1022 voice menu (None: 1022 callers go straight to the queue);
        `descriptions`: call id -> the transcription of the caller's description, until a
        draft takes it."""
        self._voice = voice
        self._store = store
        self._ivr = ivr
        self._messages = messages
        self._status = status
        self._transcripts = transcripts
        self._descriptions = descriptions
        self._spawn = spawn
        self._clock = clock

    async def emergency(self, channel: Mapping[str, Any], args: list[str]) -> None:
        # The caller goes on to the queue first; the record is written meanwhile.
        await asyncio.gather(
            self._voice.continue_in_dialplan(str(channel["id"])),
            arrived(self._store, channel, args),
        )

    async def menu(self, channel: Mapping[str, Any], args: list[str]) -> None:
        cid = str(channel["id"])
        await arrived(self._store, channel, args or ["1022"])
        if self._ivr is None:
            self._voice.release(cid)
            await self._voice.continue_in_dialplan(cid)
            return
        events = self._voice.events(cid)
        outcome = IvrResult(outcome="queue", language="vi", choices=())
        try:
            await self._store.record(cid, Fact.IVR_STARTED)
            outcome = await self._ivr(
                ari=self._voice.ari, channel_id=cid, events=events, now=self._clock()
            )
        except ChannelGone:
            outcome = IvrResult(outcome="hangup", language="vi", choices=(), hung_up=True)
        except Exception:
            logger.exception("IVR failed on %s; the caller goes to the queue", cid)
        finally:
            self._voice.release(cid)
        if outcome.hung_up:
            await self._store.record(cid, Fact.HANGUP, hangup_cause="caller hung up in the IVR")
            return
        choices = [list(c) for c in outcome.choices]
        await self._store.record(cid, Fact.IVR_DONE, language=outcome.language, ivr_choices=choices)
        await self._voice.set_vars(cid, {dv.LANGUAGE: outcome.language})
        if outcome.description_path:
            # Transcribed while the caller waits in the queue; the draft picks it up.
            self._descriptions[cid] = self._spawn(
                self._transcripts.describe(cid, outcome.description_path, outcome.language)
            )
        if outcome.outcome == "record":
            await self._messages.record(cid, outcome.language)
        elif outcome.outcome == "status":
            await self._status.read_out(cid, outcome.entered, outcome.language)
        elif outcome.outcome == "hangup":
            # The caller chose to end (after the information they wanted): not abandoned.
            await self._store.record(cid, Fact.SELF_SERVED)
            with contextlib.suppress(ChannelGone):
                await self._voice.ari.hang_up(cid)
        else:
            await self._voice.continue_in_dialplan(cid)
