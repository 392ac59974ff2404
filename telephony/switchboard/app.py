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
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from ioc_core.api import CoreApi, CoreApiError
from ioc_core.bus import Bus
from ioc_core.db import utcnow
from telephony import dialplan_vars as dv
from telephony.ami.client import AmiClient
from telephony.ari.client import AriClient, AriError, ChannelGone
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.i18n import t
from telephony.ivr.prompts import announcement, media_uri
from telephony.ivr.session import IvrResult, channel_of
from telephony.settings import SwitchboardSettings
from telephony.speech.engine import SpeechEngine, SpeechError
from telephony.speech.streaming import StreamResult
from telephony.switchboard.agents import AgentDesk
from telephony.switchboard.audiosocket import AudioSocketServer
from telephony.switchboard.draft import Description, Drafts
from telephony.switchboard.live import PREFIX as TAP_PREFIX
from telephony.switchboard.live import LiveTaps, owned, remove_leftovers
from telephony.switchboard.observe import MEMBER_EVENTS, Observed, call_fact
from telephony.switchboard.supervise import DEFAULT_BACKOFF, Backoff, Health, retry, supervise

logger = logging.getLogger(__name__)

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
# Where messages left after the tone go (Asterisk's spool/recording/<MESSAGES>/<call>.wav).
MESSAGES = "ioc-msg"
# Q.850 causes of an unanswered call-back, as the attempt's outcome.
_NOT_ANSWERED = {17: "busy", 18: "no_answer", 19: "no_answer", 21: "rejected"}


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


class Switchboard:
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
        where answered calls' drafts are made from (none: no drafts)."""
        self.ari, self.ami, self.store, self.desk = ari, ami, store, desk
        self._api = api
        self._settings = settings
        self._ivr = ivr
        self._record_calls = record_calls  # app_queue's MixMonitor (queues.conf monitor-format)
        self._stt = stt  # transcribes messages left after the tone (SW-6, SW-8)
        self._spool = spool  # where Asterisk's recordings are, seen from here
        self._sounds = sounds  # where prompts are made (dynamic announcements go there too)
        self._zone = ZoneInfo(timezone)
        self._tracking_prefix = tracking_prefix
        self._announce_s = announce_s  # queue-position announcements every so often; 0 = off
        self._whispering: set[str] = set()  # callers hearing an announcement now
        # Live transcripts of queued and answered callers (OP-1).
        self._live = (
            LiveTaps(
                ari=ari,
                engine=stt,
                server=AudioSocketServer(port=audiosocket_port),
                on_result=self.live_result,
                max_live=live_max,
            )
            if stt is not None and live_max > 0
            else None
        )
        self._clock = clock
        self._sessions: dict[str, asyncio.Queue[Mapping[str, Any]]] = {}
        self._originated: dict[str, int] = {}  # call-back channel id -> call-back id
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        # Call id -> the transcription of the caller's description, until a draft takes it.
        self._descriptions: dict[str, asyncio.Task[Description | None]] = {}
        self.drafts = Drafts(store=store, api=api, settings=settings, pending=self._descriptions)
        self._bus = bus
        self.health = Health(clock=clock)
        self._backoff = backoff
        self._catching_up: dict[str, asyncio.Task[Any]] = {}  # on-connect work being retried

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
            "callbacks": self._callback_loop,
            "positions": self._position_loop,
        }
        await asyncio.gather(
            *(supervise(name, part, health=self.health, backoff=self._backoff)
              for name, part in parts.items())
        )  # fmt: skip

    async def _start_up(self) -> None:
        """Once per start: attempts a dead process left ringing go back to pending; calls
        answered without a draft get theirs."""
        await self.store.recover_callbacks(older_than_s=self._settings.callback.ring_s + 30)
        await self.store.warm()
        if self._bus is not None:
            await self.drafts.catch_up()

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
        self._wake.set()

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
            handler = {
                "emergency": self._emergency,
                "ivr": self._hotline,
                "callback": self._callback_answered,
                "record": self._record_route,
            }.get(route)
            if handler is None:
                logger.warning("unknown Stasis route %r; back to the dialplan", route)
                await self.ari.continue_in_dialplan(cid)
                return
            if route in ("ivr", "record", "callback"):
                # Registered now, not in the task: the caller's first key may come at once.
                self._sessions[cid] = asyncio.Queue()
            self._spawn(self._guarded(route, cid, handler(channel, args[1:])))
        elif kind in CHANNEL_EVENTS:
            if (queue := self._sessions.get(cid)) is not None:
                queue.put_nowait(event)
            if kind == "ChannelDestroyed" and cid in self._originated:
                self._spawn(self._callback_not_answered(cid, int(channel_cause(event))))

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
            self._sessions.pop(cid, None)
            # A channel already back in the dialplan answers 404/409/422 here: nothing to do.
            with contextlib.suppress(AriError):
                await self._continue(cid)

    async def _emergency(self, channel: Mapping[str, Any], args: list[str]) -> None:
        # The caller goes on to the queue first; the record is written meanwhile.
        await asyncio.gather(self._continue(str(channel["id"])), self._arrived(channel, args))

    async def _arrived(self, channel: Mapping[str, Any], args: list[str]) -> None:
        """Stasis arguments after the route: service, then the caller look-up's count of
        earlier calls and its status (the dialplan's IOC_CALLER_CALLS, IOC_AGI_STATUS)."""
        service = args[0] if args else ""
        info: dict[str, Any] = {}
        if len(args) >= 3 and args[2] == "ok" and args[1].isdigit():
            info["caller_calls"] = int(args[1])  # no second count of the same rows
        await self.store.record(
            str(channel["id"]),
            Fact.ARRIVED,
            ani=caller_number(channel),
            service=service,
            channel=str(channel.get("name", "")),
            **info,
        )

    async def _continue(self, cid: str, **where: str) -> None:
        with contextlib.suppress(ChannelGone):  # hung up meanwhile: a normal race
            await self.ari.continue_in_dialplan(cid, **where)

    async def _hotline(self, channel: Mapping[str, Any], args: list[str]) -> None:
        cid = str(channel["id"])
        await self._arrived(channel, args or ["1022"])
        if self._ivr is None:
            self._sessions.pop(cid, None)
            await self._continue(cid)
            return
        events = self._sessions.setdefault(cid, asyncio.Queue())
        outcome = IvrResult(outcome="queue", language="vi", choices=())
        try:
            await self.store.record(cid, Fact.IVR_STARTED)
            outcome = await self._ivr(
                ari=self.ari, channel_id=cid, events=events, now=self._clock()
            )
        except ChannelGone:
            outcome = IvrResult(outcome="hangup", language="vi", choices=(), hung_up=True)
        except Exception:
            logger.exception("IVR failed on %s; the caller goes to the queue", cid)
        finally:
            self._sessions.pop(cid, None)
        if outcome.hung_up:
            await self.store.record(cid, Fact.HANGUP, hangup_cause="caller hung up in the IVR")
            return
        choices = [list(c) for c in outcome.choices]
        await self.store.record(cid, Fact.IVR_DONE, language=outcome.language, ivr_choices=choices)
        await self._set_vars(cid, {dv.LANGUAGE: outcome.language})
        if outcome.description_path:
            # Transcribed while the caller waits in the queue; the draft picks it up.
            self._descriptions[cid] = self._spawn(
                self._describe(cid, outcome.description_path, outcome.language)
            )
        if outcome.outcome == "record":
            await self._record_message(cid, outcome.language)
        elif outcome.outcome == "status":
            await self._status(cid, outcome.entered, outcome.language)
        elif outcome.outcome == "hangup":
            # The caller chose to end (after the information they wanted): not abandoned.
            await self.store.record(cid, Fact.SELF_SERVED)
            with contextlib.suppress(ChannelGone):
                await self.ari.request("DELETE", f"/channels/{cid}")
        else:
            await self._continue(cid)

    async def _set_vars(self, cid: str, values: Mapping[str, str]) -> None:
        for name, value in values.items():
            with contextlib.suppress(ChannelGone):
                await self.ari.request(
                    "POST", f"/channels/{cid}/variable", variable=name, value=value
                )

    async def _record_route(self, channel: Mapping[str, Any], args: list[str]) -> None:
        """Overflow from the dialplan (a queue gave up): record a message, call back later."""
        cid = str(channel["id"])
        await self._arrived(channel, args)
        call = await self.store.get_call(cid)  # the language the caller chose in the menu
        language = "en" if call and call["language"] == "en" else "vi"
        await self._record_message(cid, language, announce="busy-message")

    async def _record_message(self, cid: str, language: str, *, announce: str = "") -> None:
        """Record after the tone (SW-8), then the call-back item carries the recording.
        `announce`: a prompt saying why first (the voice menu has said it on its own path)."""
        events = self._sessions.setdefault(cid, asyncio.Queue())
        name = f"{MESSAGES}/{cid}"
        try:
            if announce:
                await self._say(cid, announce, language, events)
            await self.ari.record(cid, name, max_s=120, silence_s=10)
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
            self._sessions.pop(cid, None)
        await self.store.record(cid, Fact.RECORDED, recording_path=f"recording/{name}.wav")
        with contextlib.suppress(ChannelGone, AriError):
            await self.ari.request("DELETE", f"/channels/{cid}")
        self._spawn(self.transcribe_message(cid, f"recording/{name}.wav", language))

    async def _transcribe(
        self, uid: str, kind: str, rel_path: str, language: str
    ) -> dict[str, Any] | None:
        """Transcribe a recording and keep the transcript, or the reason there is none."""
        if self._stt is None or self._spool is None:
            return None
        try:
            t = await self._stt.transcribe_file(self._spool / rel_path, language)
        except SpeechError as exc:
            await self.store.add_transcript(
                uid,
                kind=kind,
                audio_path=rel_path,
                language=language,
                engine=self._stt.name,
                model=self._stt.model,
                error=str(exc),
            )
            return None
        return await self.store.add_transcript(
            uid, kind=kind, audio_path=rel_path, language=language, transcript=t
        )

    async def transcribe_message(self, uid: str, rel_path: str, language: str) -> None:
        """The message's words onto its call-back item; a failure is kept as the reason."""
        kept = await self._transcribe(uid, "message", rel_path, language)
        if kept is not None and kept["emergency"]:
            logger.warning(
                "emergency words (%s) in message %s: calling back", kept["emergency"], uid
            )
            self.wake_callbacks()

    async def _describe(self, uid: str, rel_path: str, language: str) -> Description | None:
        """The caller's description (1022 "say what happened"): its words, the emergency
        number they point to, and the catalogue category they suggest. Never raises: the call
        goes on without it."""
        try:
            kept = await self._transcribe(uid, "ivr", rel_path, language)
            if kept is None or not kept["text"].strip():
                return None
            return await self.drafts.describe(kept["text"].strip())
        except Exception:
            logger.exception("could not transcribe the description on %s", uid)
            return None

    async def live_result(self, uid: str, language: str, result: StreamResult) -> None:
        """A live tap heard the caller: partials are events for the console; each final
        utterance is kept like every transcript, its audio referenced as a span of the call."""
        if result.kind == "partial":
            await self.store.add_partial(
                uid,
                text=result.text,
                start_s=result.start_s,
                end_s=result.end_s,
                engine=result.transcript.engine,
            )
            return
        await self.store.add_transcript(
            uid,
            kind="live",
            audio_path=f"call:{uid}#t={result.start_s},{result.end_s}",
            language=language,
            transcript=result.transcript,
        )

    async def _say(
        self, cid: str, prompt: str, language: str, events: asyncio.Queue[Mapping[str, Any]]
    ) -> None:
        """Play one prompt to the end (or until the caller leaves)."""
        await self._play(cid, media_uri(prompt, language), events)

    async def _play(self, cid: str, media: str, events: asyncio.Queue[Mapping[str, Any]]) -> None:
        playback = f"say-{cid}"
        await self.ari.request("POST", f"/channels/{cid}/play", media=media, playbackId=playback)
        while True:
            event = await asyncio.wait_for(events.get(), 60)
            if event.get("type") in ("StasisEnd", "ChannelDestroyed", "ChannelHangupRequest"):
                raise ChannelGone(404, cid)
            if event.get("type") == "PlaybackFinished":
                return

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
            uid, path = msg.get("Uniqueid", ""), msg.get("Path", "")
            await self.store.record(uid, Fact.RECORDED, recording_path=path)
            if path:
                self._spawn(self.transcribe_message(uid, path, "vi"))
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
        held = set(self._sessions) | (self._live.held() if self._live is not None else set())
        await remove_leftovers(self.ari, held)
        for cid, channel in live.items():
            if owned(cid):
                continue  # a tap's or a whisper's channel, never a caller's
            dialplan = channel.get("dialplan") or {}
            if dialplan.get("app_name") == "Stasis" and cid not in self._sessions:
                if cid in self._originated:
                    continue
                logger.info("re-attached %s left in Stasis; back to the dialplan", cid)
                await self._continue(cid)

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

    # ------------------------------------------------------------------ call-backs

    async def _callback_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            try:
                for callback_id in await self.store.due_callbacks():
                    await self._originate(callback_id)
            except Exception:
                logger.exception("call-back loop failed; retrying")

    async def _originate(self, callback_id: int) -> None:
        cb = await self.store.get_callback(callback_id)
        if cb is None:
            return
        number = str(cb["ani"])
        if not (number.isascii() and number.isdigit()):
            # The store's policy let only digits through (callback_policy.decide); this is the
            # last line before the trunk, where any other character changes what is dialled.
            logger.error("call-back %d: refusing dial string %r", callback_id, number)
            await self.store.attempt_finished(callback_id, "failed")
            return
        channel_id = f"callback-{callback_id}-{cb['attempts']}"
        self._originated[channel_id] = callback_id
        try:
            await self.ari.request(
                "POST",
                "/channels",
                endpoint=f"PJSIP/{number}@trunk",
                app=self.ari.app,
                appArgs=f"callback,{callback_id},{cb['service']}",
                callerId=cb["service"],
                timeout=self._settings.callback.ring_s,
                channelId=channel_id,
            )
            await self.store.attempt_started(callback_id, channel_id)
        except AriError as exc:
            logger.warning("call-back %d could not be placed: %s", callback_id, exc)
            self._originated.pop(channel_id, None)
            await self.store.attempt_finished(callback_id, "failed")

    async def _callback_answered(self, channel: Mapping[str, Any], args: list[str]) -> None:
        """The citizen picked up a call-back: it joins the service's queue ahead of others."""
        cid = str(channel["id"])
        callback_id = int(args[0]) if args and args[0].isdigit() else None
        service = args[1] if len(args) > 1 else ""
        self._originated.pop(cid, None)
        ani = ""
        item: dict[str, Any] | None = None
        if callback_id is not None:
            item = await self.store.attempt_finished(callback_id, "answered")
            ani = item["ani"] if item else ""
        # The originated channel's caller id is ours (the service number): the citizen's
        # number is the call-back item's.
        await self.store.record(
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
            self._sessions.pop(cid, None)
        await self._continue(cid, context="callback", extension=service, priority="1")

    async def _status(self, cid: str, entered: str, language: str) -> None:
        """Read out the state of the report whose code was keyed in, then say goodbye; a code
        that names nothing (or any failure) leads to an operator instead."""
        events = self._sessions.setdefault(cid, asyncio.Queue())
        found = False
        try:
            code = tracking_code(self._tracking_prefix, entered)
            incident = await self._lookup(code) if code else None
            found = incident is not None
            await self._announce(cid, status_text(language, incident, self._zone), language, events)
            if found:
                await self._say(cid, "goodbye", language, events)
        except ChannelGone:
            return  # the caller hung up meanwhile; the observer ends the call
        except Exception:
            logger.exception("status read-out failed on %s; the caller goes to the queue", cid)
            found = False
        finally:
            self._sessions.pop(cid, None)
        if not found:
            await self._continue(cid)
            return
        await self.store.record(cid, Fact.SELF_SERVED)
        with contextlib.suppress(ChannelGone, AriError):
            await self.ari.request("DELETE", f"/channels/{cid}")

    async def _lookup(self, code: str) -> dict[str, Any] | None:
        try:
            return await self._api.get_incident(code)
        except CoreApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def _position_loop(self) -> None:
        """Every `announce_s`, callers who have waited that long hear their place in line."""
        if not self._announce_s or self._sounds is None:
            return
        while True:
            await asyncio.sleep(self._announce_s)
            if not self.ami.connected.is_set():
                continue
            try:
                entries = await self.ami.list_action("QueueStatus")
            except Exception:
                logger.warning("queue positions unavailable", exc_info=True)
                continue
            for entry in entries:
                uid = entry.get("Uniqueid", "")
                if entry.get("Event") != "QueueEntry" or not uid or uid in self._whispering:
                    continue
                if int(entry.get("Wait") or 0) >= self._announce_s:
                    self._spawn(self._announce_position(uid, int(entry.get("Position") or 1)))

    async def _announce_position(self, uid: str, position: int) -> None:
        """Whisper "you are number N in line" to a caller waiting in app_queue: a snoop channel
        (whisper=out) carries the announcement over the queue's music without moving the call,
        so a failure here cannot lose the caller's place."""
        assert self._sounds is not None
        self._whispering.add(uid)
        whisper = f"{TAP_PREFIX}w-{uuid.uuid4().hex[:16]}"
        events = self._sessions.setdefault(whisper, asyncio.Queue())
        try:
            call = await self.store.get_call(uid)
            language = call["language"] if call else "vi"  # chosen in the menu, else vi
            text = t("queue.position", language, position=position)
            media = await asyncio.to_thread(announcement, text, language, self._sounds)
            await self.ari.request(
                "POST", f"/channels/{uid}/snoop", app=self.ari.app, whisper="out", spy="none",
                snoopId=whisper, appArgs="whisper",
            )  # fmt: skip
            for attempt in range(20):  # the snoop channel enters Stasis just after the POST
                try:
                    await self._play(whisper, media, events)
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
            self._sessions.pop(whisper, None)
            self._whispering.discard(uid)
            with contextlib.suppress(ChannelGone, AriError):
                await self.ari.request("DELETE", f"/channels/{whisper}")

    async def _announce(
        self, cid: str, text: str, language: str, events: asyncio.Queue[Mapping[str, Any]]
    ) -> None:
        """Speak `text` to the end (a dynamic announcement, made once per distinct text)."""
        if self._sounds is not None:
            media = await asyncio.to_thread(announcement, text, language, self._sounds)
            await self._play(cid, media, events)

    async def _greet(self, cid: str, item: Mapping[str, Any]) -> None:
        """Tell the citizen who is calling and why: the service and the time they called."""
        language = await self.store.call_language(int(item["call_id"]))
        called = datetime.fromisoformat(str(item["created_at"])).astimezone(self._zone)
        text = t(
            "callback.greeting",
            language,
            number=" ".join(str(item["service"])),  # "1 1 4", as people say it
            time=called.strftime("%H:%M") if language == "en" else called.strftime("%H giờ %M"),
        )
        await self._announce(cid, text, language, self._sessions.setdefault(cid, asyncio.Queue()))

    async def _callback_not_answered(self, cid: str, cause: int) -> None:
        callback_id = self._originated.pop(cid, None)
        if callback_id is not None:
            await self.store.attempt_finished(callback_id, _NOT_ANSWERED.get(cause, "failed"))


def tracking_code(prefix: str, entered: str) -> str | None:
    """Keys to a tracking code: the year's four digits, then the number (PA-2026-000123 is
    keyed 2026123); None when that cannot be a code."""
    if not entered.isdigit() or len(entered) < 5 or not entered.startswith("20"):
        return None
    number = int(entered[4:])
    return f"{prefix}-{entered[:4]}-{number:06d}" if 0 < number < 10**9 else None


def status_text(language: str, incident: Mapping[str, Any] | None, zone: ZoneInfo) -> str:
    """What the caller hears about their report: its state, and its deadline when it has one."""
    if incident is None:
        return t("status.not_found", language)
    prefix, year, number = str(incident["code"]).split("-")
    label = incident.get("state_label") or {}
    text = t(
        "status.found",
        language,
        prefix=" ".join(prefix),  # "P A": letters, not a word
        year=year,
        number=int(number),
        state=label.get(language) or label.get("vi") or incident.get("state", ""),
    )
    if incident.get("due_at"):
        due = datetime.fromisoformat(str(incident["due_at"])).astimezone(zone)
        text += " " + t("status.due", language, date=due.strftime("%d/%m/%Y"))
    return text


def caller_number(channel: Mapping[str, Any]) -> str:
    number = str((channel.get("caller") or {}).get("number", ""))
    return "" if number in ("<unknown>", "anonymous") else number


def channel_cause(event: Mapping[str, Any]) -> int:
    try:
        return int(event.get("cause", 0))
    except (TypeError, ValueError):
        return 0
