"""The switchboard: one Stasis application with a router, the AMI observer, agents, and the
call-back worker, wired together.

Fail-safe rules this code keeps (ARCHITECTURE "Telephony rules", ADR 0010):
- an emergency call is handed back to the dialplan (its queue) before anything else is done;
- every route ends in `continue` to the dialplan, whatever fails on the way;
- after a reconnect the app re-reads Asterisk (live channels over ARI, queue members and
  waiting callers over AMI) and corrects the calls table: no ghost calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ioc_core.api import CoreApi
from ioc_core.bus import Bus
from ioc_core.db import utcnow
from telephony.ami.client import AmiClient
from telephony.ari.client import AriClient, AriError, ChannelGone
from telephony.ari.events import channel_cause, channel_of
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.settings import SwitchboardSettings
from telephony.speech.engine import SpeechEngine
from telephony.switchboard.agents import AgentDesk
from telephony.switchboard.announce import Positions
from telephony.switchboard.audiosocket import AudioSocketServer
from telephony.switchboard.callbacks import Callbacks
from telephony.switchboard.console import ConsoleCalls
from telephony.switchboard.draft import Description, Drafts
from telephony.switchboard.hotline import Hotline, IvrRunner
from telephony.switchboard.live import LiveTaps, owned, remove_leftovers
from telephony.switchboard.messages import Messages
from telephony.switchboard.observe import MEMBER_EVENTS, Observed, call_fact
from telephony.switchboard.status import StatusLine, status_text, tracking_code
from telephony.switchboard.supervise import DEFAULT_BACKOFF, Backoff, Health, retry, supervise
from telephony.switchboard.transcripts import Transcripts
from telephony.switchboard.voice import Voice

__all__ = ["IvrRunner", "Switchboard", "status_text", "tracking_code"]

logger = logging.getLogger(__name__)

# How far back a start looks for messages left untranscribed by an earlier process.
MESSAGES_CATCH_UP = timedelta(days=1)
# Events the router hands to a channel's own session (the IVR), by channel id.
CHANNEL_EVENTS = frozenset(
    {
        "ChannelDtmfReceived",
        "PlaybackStarted",
        "PlaybackFinished",
        "RecordingFinished",
        "RecordingFailed",
        "ChannelHangupRequest",
        "ChannelDestroyed",
        "StasisEnd",
    }
)


class Switchboard:
    """The router: hands each Stasis call to one route by its first argument, each AMI fact to
    the call store, and supervises the parts. The routes are objects of their own (hotline,
    messages, callbacks, status, announce, draft), on a shared bottom layer (voice)."""

    def __init__(
        self,
        *,
        ari: AriClient,
        ami: AmiClient,
        store: CallStore,
        desk: AgentDesk,
        api: CoreApi,
        settings: SwitchboardSettings,
        ivr: IvrRunner | None = None,
        record_calls: bool = False,
        stt: SpeechEngine | None = None,
        spool: Path | None = None,
        sounds: Path | None = None,
        timezone: str = "Asia/Ho_Chi_Minh",
        tracking_prefix: str = "PA",
        announce_s: int = 0,
        live_max: int = 0,
        audiosocket_port: int = 0,
        clock: Callable[[], datetime] = utcnow,
        backoff: Backoff = DEFAULT_BACKOFF,
        bus: Bus | None = None,
    ) -> None:
        """`live_max`: callers transcribed live at once (needs `stt`); their audio comes to
        an AudioSocket server on 127.0.0.1:`audiosocket_port` (0: any free port). `bus`:
        where answered calls' drafts are made from (none: no drafts). `announce_s`: queue
        position announcements every so often (0 = off)."""
        self.ari, self.ami, self.store, self.desk = ari, ami, store, desk
        self._settings = settings
        self._clock = clock
        self._record_calls = record_calls  # app_queue's MixMonitor (queues.conf monitor-format)
        zone = ZoneInfo(timezone)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.voice = Voice(ari=ari, sounds=sounds)
        # Call id -> the transcription of the caller's description, until a draft takes it.
        self._descriptions: dict[str, asyncio.Task[Description | None]] = {}
        self.drafts = Drafts(store=store, api=api, settings=settings, pending=self._descriptions)
        self.callbacks = Callbacks(voice=self.voice, store=store, settings=settings, zone=zone)
        # The consoles' telephony: three-way calls, listen/whisper/barge, call-back dialling.
        self.console = ConsoleCalls(ari=ari, ami=ami, agents=desk.extensions)
        self.transcripts = Transcripts(
            store=store, drafts=self.drafts, stt=stt, spool=spool, urgent=self.wake_callbacks
        )
        self.messages = Messages(
            voice=self.voice, store=store, transcripts=self.transcripts, spawn=self._spawn
        )
        self.hotline = Hotline(
            voice=self.voice,
            store=store,
            ivr=ivr,
            messages=self.messages,
            status=StatusLine(
                voice=self.voice, store=store, api=api, tracking_prefix=tracking_prefix, zone=zone
            ),
            transcripts=self.transcripts,
            descriptions=self._descriptions,
            spawn=self._spawn,
            clock=clock,
        )
        self.positions = Positions(
            voice=self.voice, ami=ami, store=store, every_s=announce_s, spawn=self._spawn
        )
        # Live transcripts of queued and answered callers (OP-1).
        self._live = (
            LiveTaps(
                ari=ari,
                engine=stt,
                server=AudioSocketServer(port=audiosocket_port),
                on_result=self.transcripts.live_result,
                max_live=live_max,
            )
            if stt is not None and live_max > 0
            else None
        )
        self._bus = bus
        self.health = Health(clock=clock)
        self._backoff = backoff
        self._catching_up: dict[str, asyncio.Task[Any]] = {}  # on-connect work being retried
        self._routes: dict[str, Callable[[Mapping[str, Any], list[str]], Awaitable[None]]] = {
            "emergency": self.hotline.emergency,
            "ivr": self.hotline.menu,
            "callback": self.callbacks.answered,
            "record": self.messages.route,
        }

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Run until cancelled. Every part is supervised (restarted after a failure, with a
        growing pause) and the start-up work is retried until the database answers: nothing
        here may end the switchboard for good (ADR 0017). Calls do not wait for the start-up:
        Asterisk must reach us while the database is still coming back."""
        if self._bus is not None:
            self.drafts.subscribe(self._bus)
        if self._live is not None:
            try:
                await self._live.start()
            except OSError as exc:  # the port is taken: calls matter more than transcripts
                logger.error("live transcripts off: AudioSocket server cannot start (%s)", exc)
                self._live = None
        ari_caught_up = self._after_connect("ari-catch-up", self.ari_connected)
        ami_caught_up = self._after_connect("ami-catch-up", self.ami_connected)
        parts: dict[str, Callable[[], Awaitable[None]]] = {
            "start-up": self._start_up,
            "ari": lambda: self.ari.run(self.on_ari, on_connect=ari_caught_up),
            "ami": lambda: self.ami.run(self.on_ami, on_connect=ami_caught_up),
            "callbacks": self.callbacks.loop,
            "positions": self.positions.loop,
        }
        await asyncio.gather(
            *(supervise(name, part, health=self.health, backoff=self._backoff)
              for name, part in parts.items())
        )  # fmt: skip

    async def _start_up(self) -> None:
        """Once per start: attempts a dead process left ringing go back to pending; calls
        answered without a draft get theirs; messages whose transcription died get theirs."""
        await self.store.callbacks.recover(older_than_s=self._settings.callback.ring_s + 30)
        await self.store.warm()
        if self._bus is not None:
            await self.drafts.catch_up()
        await self.transcripts.catch_up(self._clock() - MESSAGES_CATCH_UP)

    def _after_connect(
        self, name: str, work: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        """`work` after each (re)connection; when it fails (the database is down), the link
        still serves calls and the work is retried in the background until it succeeds."""

        async def caught_up() -> None:
            if (earlier := self._catching_up.pop(name, None)) is not None:
                earlier.cancel()  # a newer connection re-reads everything anyway
            try:
                await work()
            except Exception as exc:
                self.health.failed(name, exc)
                logger.exception("%s failed; retrying in the background", name)
                self._catching_up[name] = self._spawn(
                    retry(name, work, health=self.health, backoff=self._backoff)
                )
            else:
                self.health.done(name)

        return caught_up

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, ChannelGone):
            logger.error("switchboard task failed", exc_info=exc)

    async def close(self) -> None:
        await self.drafts.unsubscribe()
        self.desk.close()
        if self._live is not None:
            await self._live.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self.ari.close()
        await self.ami.close()

    def wake_callbacks(self) -> None:
        self.callbacks.wake()

    # ------------------------------------------------------------------ ARI: the router

    async def on_ari(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        channel = event.get("channel") or {}
        # Playback*/Recording* events name their channel only in target_uri (channel_of).
        cid = channel_of(event) or ""
        if kind == "StasisStart" and owned(cid):
            # A tap's or a whisper's own channel, not a caller.
            if self._live is not None:
                self._live.entered_stasis(cid)
        elif kind == "StasisStart":
            args = list(event.get("args") or [])
            route = args[0] if args else ""
            handler = self._routes.get(route)
            if handler is None:
                logger.warning("unknown Stasis route %r; back to the dialplan", route)
                await self.ari.continue_in_dialplan(cid)
                return
            if route in ("ivr", "record", "callback"):
                # Registered now, not in the task: the caller's first key may come at once.
                self.voice.sessions[cid] = asyncio.Queue()
            self._spawn(self._guarded(route, cid, handler(channel, args[1:])))
        elif kind in CHANNEL_EVENTS:
            if (queue := self.voice.sessions.get(cid)) is not None:
                queue.put_nowait(event)
            if kind == "ChannelDestroyed" and cid in self.callbacks.originated:
                self._spawn(self.callbacks.not_answered(cid, channel_cause(event)))

    async def _guarded(self, route: str, cid: str, work: Awaitable[None]) -> None:
        """Run one route; whatever fails in it (the database, the core, a bug), the caller goes
        on in the dialplan, whose fallback (the route's queue, a recorded message) serves them
        without us — nobody is left in silence in Stasis. One place for every route."""
        try:
            await work
        except ChannelGone:
            pass  # the caller hung up meanwhile: a normal race
        except Exception:
            logger.exception("route %s failed on %s; the call goes on in the dialplan", route, cid)
            self.voice.release(cid)
            # A channel already back in the dialplan answers 404/409/422 here: nothing to do.
            with contextlib.suppress(AriError):
                await self.voice.continue_in_dialplan(cid)

    # ------------------------------------------------------------------ AMI: the observer

    async def on_ami(self, msg: dict[str, str]) -> None:
        event = msg.get("Event", "")
        if event in MEMBER_EVENTS:
            await self.desk.on_event(msg)
            return
        if event == "AgentComplete" and msg.get("MemberName"):
            await self.desk.call_completed(msg["MemberName"])
            return
        if event == "UserEvent" and msg.get("UserEvent") == "IocRecorded":
            # The dialplan recorded a message itself (the app was down at overflow time).
            await self.messages.recorded_by_dialplan(msg.get("Uniqueid", ""), msg.get("Path", ""))
            return
        observed = call_fact(msg)
        if observed is None:
            return
        if observed.fact is Fact.ANSWERED and self._record_calls:
            # app_queue's MixMonitor names the file after the caller's channel.
            observed.info["recording_path"] = f"monitor/{observed.uid}.wav"
        # Each fact in its own task: facts of different calls are written together (the
        # store's group commit); a call's own facts keep their order (its lock is FIFO and
        # taken before the task first yields).
        self._spawn(self._observe(observed))

    async def _observe(self, observed: Observed) -> None:
        done = await self.store.record(
            observed.uid,
            observed.fact,
            ani=observed.ani,
            channel=observed.channel,
            **observed.info,
        )
        if done is None:
            return
        ended = done.call.get("status") == "ended"
        if self._live is not None and done.call["direction"] == "in":
            if observed.fact is Fact.QUEUED:
                # The language the caller chose in the menu; else the configured one (an
                # emergency caller is never asked).
                chosen = done.call.get("language") if done.call.get("ivr_done_at") else None
                self._spawn(self._live.attach(observed.uid, chosen))
            elif ended:
                self._spawn(self._live.detach(observed.uid))
        # The answered call's draft is made from the bus (`call.answered`, telephony.
        # switchboard.draft), not here: a crash after the commit above must not lose it.
        if ended and not done.call.get("answered_at"):
            # Nobody answered: no draft will take the description (its transcript stays on
            # the call); forget the task so a busy day does not keep them all.
            self._descriptions.pop(done.call["id"], None)
        if done.callback_id is not None:
            self.wake_callbacks()

    # ------------------------------------------------------------------ reconnects

    async def ari_connected(self) -> None:
        """Re-read live channels: end calls that vanished while we were away, and hand any
        channel still parked in our Stasis app (its session died with us) to the queue."""
        try:
            live = {str(c["id"]): c for c in await self.ari.channels()}
        except AriError:
            logger.exception("could not list channels after reconnecting")
            return
        for call in await self.store.live_calls():
            if call.uid not in live:
                await self.store.record(call.uid, Fact.LOST, hangup_cause="gone on reconnect")
        # Taps and whispers whose stream or playback died with an earlier run.
        sessions = self.voice.sessions
        held = set(sessions) | (self._live.held() if self._live is not None else set())
        await remove_leftovers(self.ari, held)
        for cid, channel in live.items():
            if owned(cid):
                continue  # a tap's or a whisper's channel, never a caller's
            dialplan = channel.get("dialplan") or {}
            if dialplan.get("app_name") == "Stasis" and cid not in sessions:
                if cid in self.callbacks.originated:
                    continue
                logger.info("re-attached %s left in Stasis; back to the dialplan", cid)
                await self.voice.continue_in_dialplan(cid)

    async def ami_connected(self) -> None:
        await self.desk.refresh()
        for msg in await self.ami.list_action("QueueStatus"):
            if msg.get("Event") == "QueueEntry" and msg.get("Uniqueid"):
                await self.store.record(
                    msg["Uniqueid"],
                    Fact.QUEUED,
                    ani=msg.get("CallerIDNum", ""),
                    channel=msg.get("Channel", ""),
                    queue=msg.get("Queue"),
                )
