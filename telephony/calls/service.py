"""The calls service: the only place that writes calls, call-backs and agents. Each fact is one
transaction that updates the call, stages its bus events in the outbox and, for an abandoned
call, creates the call-back item — so a crash never leaves a call without its call-back."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Literal, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core import events as ev
from ioc_core.bus import Event
from ioc_core.db import transaction, utcnow
from ioc_core.outbox import ConsumedEvent, add_events, first_time, stage_events
from nlu.keywords import emergency_service
from telephony.calls.callback_policy import decide
from telephony.calls.lifecycle import (
    AgentState,
    CallState,
    Effect,
    Fact,
    Outcome,
    Status,
    apply,
    wait_seconds,
)
from telephony.calls.models import Agent, Call, Callback, CallbackAttempt
from telephony.calls.models import Transcript as TranscriptRow
from telephony.i18n import said
from telephony.numbers import normalise_msisdn
from telephony.settings import SwitchboardSettings
from telephony.speech.engine import Transcript as SpeechTranscript

logger = logging.getLogger(__name__)


class CallbackStatus:
    PENDING = "pending"  # waiting for its next automatic attempt, or for a person
    CALLING = "calling"  # an attempt is ringing the citizen
    CLAIMED = "claimed"  # a call-taker took it
    DONE = "done"
    FAILED = "failed"  # attempts used up without reaching the citizen; needs a person
    CANCELLED = "cancelled"


OPEN_CALLBACKS = (
    CallbackStatus.PENDING,
    CallbackStatus.CALLING,
    CallbackStatus.CLAIMED,
    CallbackStatus.FAILED,
)


@dataclass(frozen=True, kw_only=True)
class Recorded:
    call: dict[str, Any]
    effects: tuple[Effect, ...]
    callback_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class DraftClaim:
    """`claimed`: make the draft; `again`: make it, a maker before was interrupted; `done`:
    nothing to make (made already, or not a citizen's call)."""

    verdict: Literal["claimed", "again", "done"]
    call: dict[str, Any] | None = None
    request: dict[str, Any] | None = None  # what an interrupted maker asked of the core


def call_view(c: Call | SimpleNamespace, now: datetime | None = None) -> dict[str, Any]:
    """The one JSON shape of a call (API and consoles)."""
    now = now or utcnow()
    end = c.answered_at or c.ended_at or now
    return {
        "id": c.uid,
        "channel": c.channel,  # Asterisk's channel name (what a console transfers)
        "direction": c.direction,
        "ani": c.ani,
        "service": c.service,
        "status": c.status,
        "outcome": c.outcome,
        "language": c.language,
        "ivr_choices": c.ivr_choices,
        "queue": c.queue,
        "position": c.position,
        "agent": c.agent,
        "incident_code": c.incident_code,
        "caller_calls": c.caller_calls,
        "recording_path": c.recording_path,
        "hangup_cause": c.hangup_cause,
        "wait_s": round(wait_seconds(c.queued_at, end), 3),
        "arrived_at": _iso(c.arrived_at),
        "ivr_done_at": _iso(c.ivr_done_at),
        "queued_at": _iso(c.queued_at),
        "answered_at": _iso(c.answered_at),
        "ended_at": _iso(c.ended_at),
        "live": c.live,
    }


def callback_view(cb: Callback) -> dict[str, Any]:
    return {
        "id": cb.id,
        "call_id": cb.call_id,
        "ani": cb.ani,
        "service": cb.service,
        "reason": cb.reason,
        "status": cb.status,
        "automatic": cb.automatic,
        "priority": cb.priority,
        "attempts": cb.attempts,
        "max_attempts": cb.max_attempts,
        "next_attempt_at": _iso(cb.next_attempt_at),
        "last_outcome": cb.last_outcome,
        "recording_path": cb.recording_path,
        "transcript": cb.transcript,
        "assigned_to": cb.assigned_to,
        "note": cb.note,
        "created_at": _iso(cb.created_at),
        "updated_at": _iso(cb.updated_at),
    }


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _call_event(name: str, c: Call | SimpleNamespace, **extra: Any) -> Event:
    payload = {
        "call_id": c.uid,
        "service": c.service,
        "direction": c.direction,
        "status": c.status,
        "queue": c.queue,
        "agent": c.agent,
        **extra,
    }
    return Event(name=name, payload=payload, correlation_id=c.uid)


class CallStore:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: SwitchboardSettings,
        clock: Callable[[], datetime] = utcnow,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._on_commit = on_commit  # wakes the outbox relay
        # ARI and AMI report the same call concurrently: one writer per call at a time.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        # Calls in progress, and the last ones that ended (see _nothing_to_do).
        self._live: dict[str, CallState] = {}
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Recorded | None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._ended: OrderedDict[str, CallState] = OrderedDict()
        self._warm = False

    def _committed(self) -> None:
        if self._on_commit is not None:
            self._on_commit()

    # ------------------------------------------------------------------ calls

    async def record(
        self,
        uid: str,
        fact: Fact,
        *,
        ani: str = "",
        service: str = "",
        channel: str = "",
        direction: str = "in",
        **info: Any,
    ) -> Recorded | None:
        """Apply one fact about call `uid` (creating the call on first sight). Returns what
        changed, or None when the fact changed nothing (late, repeated, or an unknown call
        whose service we cannot tell)."""
        # One form of a number everywhere (history, look-ups, reporter phone): 0xxxxxxxxx.
        ani = normalise_msisdn(ani) or ani
        async with self._locked(uid):
            if self._nothing_to_do(uid, fact, service, info):
                return None
            done = await self._submit(uid, fact, ani, service, channel, direction, info)
            if done is not None:
                self._remember(uid, done.call)
            return done

    # ------------------------------------------------------------------ group commit

    async def _submit(self, *fact: Any) -> Recorded | None:
        """Queue one fact for the writer, which commits whatever facts are waiting (of
        different calls) in one transaction: at a burst of calls a transaction per fact is
        what costs most (BEGIN/COMMIT, the SQLite write lock). The caller waits for the commit:
        nothing is acknowledged before it is durable."""
        done: asyncio.Future[Recorded | None] = asyncio.get_running_loop().create_future()
        self._pending.append((fact, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        # Runs while facts wait, then ends (no task outlives the work it was made for).
        while self._pending:
            batch, self._pending = self._pending[: self._BATCH], self._pending[self._BATCH :]
            try:
                async with transaction(self._sessions) as s:
                    results = [await self._apply(s, *fact) for fact, _ in batch]
            except Exception:
                # One bad fact must not sink the others: one transaction each, errors to their
                # own callers.
                logger.warning("a batch of %d call facts failed; one by one", len(batch))
                for fact, done in batch:
                    try:
                        async with transaction(self._sessions) as s:
                            result = await self._apply(s, *fact)
                    except Exception as exc:
                        if not done.done():
                            done.set_exception(exc)
                        continue
                    self._committed()
                    if not done.done():
                        done.set_result(result)
                continue
            self._committed()
            for (_, done), result in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(result)

    # Asterisk reports most things twice (ARI and AMI; Hangup after QueueCallerAbandon) and
    # reports every agent leg too: the states of the calls in progress are kept in memory so
    # that a fact that changes nothing costs no transaction. `warm()` loads them after a start.
    _QUIET = frozenset({"hangup_cause", "queue", "position"})  # never worth a write alone
    _KEEP = 10_000
    _BATCH = 200

    def _nothing_to_do(self, uid: str, fact: Fact, service: str, info: Mapping[str, Any]) -> bool:
        state = self._live.get(uid) or self._ended.get(uid)
        if state is None:
            # Not a call we know: unless it starts one or brings news (a recording), it is an
            # agent's or another leg's hang-up, once we know every call in progress.
            return self._warm and not service and set(info) <= {"hangup_cause"}
        if set(info) - self._QUIET:
            return False
        return apply(state, fact) is None

    def _remember(self, uid: str, call: Mapping[str, Any]) -> None:
        outcome = Outcome(call["outcome"]) if call["outcome"] else None
        state = CallState(status=Status(call["status"]), outcome=outcome)
        if state.status is not Status.ENDED:
            self._live[uid] = state
            return
        # Ended calls are kept a while (late reports: a recording after the hang-up).
        self._live.pop(uid, None)
        self._ended[uid] = state
        self._ended.move_to_end(uid)
        if len(self._ended) > self._KEEP:
            self._ended.popitem(last=False)

    async def warm(self) -> None:
        """Know every call in progress (after a start or reconnect, before trusting memory)."""
        calls = await self.live_calls()
        self._live = {
            c.uid: CallState(
                status=Status(c.status), outcome=Outcome(c.outcome) if c.outcome else None
            )
            for c in calls
        }
        self._warm = True

    @asynccontextmanager
    async def _locked(self, uid: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(uid) or (asyncio.Lock(), 0)
        self._locks[uid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[uid]
            if users == 1:
                del self._locks[uid]
            else:
                self._locks[uid] = (lock, users - 1)

    async def _apply(
        self,
        s: AsyncSession,
        uid: str,
        fact: Fact,
        ani: str,
        service: str,
        channel: str,
        direction: str,
        info: Mapping[str, Any],
    ) -> Recorded | None:
        # `at`/`arrived_at`: when a fact happened, for facts learnt late (Asterisk's own call
        # records, telephony.calls.reconcile); live facts happen now.
        now = info.get("at") or self._clock()
        table = cast(Table, Call.__table__)
        # Core statements, not the ORM's unit of work: this runs for every fact of every call.
        found = (
            (await s.execute(select(table).where(table.c.uid == uid).with_for_update()))
            .mappings()
            .first()
        )
        events: list[Event] = []
        before: dict[str, Any] = dict(found) if found is not None else {}
        if found is None:
            if not service and "queue" in info:
                svc = self._settings.service_of_queue(str(info["queue"]))
                service = svc.number if svc else ""
            if not service:
                return None  # not a hotline call (an agent's leg, a call-back leg, ...)
            earlier = info.get("caller_calls")
            if earlier is None:  # the dialplan's look-up did not say (it failed, app down)
                earlier = await s.scalar(
                    select(func.count()).select_from(Call).where(Call.ani == ani, Call.ani != "")
                )
            values: dict[str, Any] = {
                "uid": uid,
                "channel": channel,
                "direction": direction,
                "ani": ani,
                "service": service,
                "status": Status.NEW.value,
                "language": "vi",
                "arrived_at": info.get("arrived_at") or now,
                "caller_calls": int(earlier or 0),
                "callback_of": info.get("callback_of"),
                "ivr_choices": [],
            }
            new_id = await s.scalar(insert(table).values(**values).returning(table.c.id))
            before = {c.key: None for c in table.columns} | values | {"id": new_id}
            call = SimpleNamespace(**before)
            events.append(_call_event(ev.CALL_ARRIVED, call))
        else:
            call = SimpleNamespace(**before)
        state = CallState(
            status=Status(call.status), outcome=Outcome(call.outcome) if call.outcome else None
        )
        change = apply(state, fact)
        for key in ("queue", "position", "agent", "language", "recording_path"):
            if info.get(key) is not None:
                setattr(call, key, info[key])
        if info.get("ivr_choices") is not None:
            call.ivr_choices = list(info["ivr_choices"])
        if info.get("hangup_cause") and call.hangup_cause is None:
            call.hangup_cause = str(info["hangup_cause"])
        callback_id = None
        effects: tuple[Effect, ...] = ()
        if change is not None:
            call.status = change.status.value
            call.outcome = change.outcome.value if change.outcome else None
            for stamp in change.stamps:
                if getattr(call, stamp) is None:
                    setattr(call, stamp, now)
            effects = change.effects
            if fact is Fact.RECORDED and Effect.CALLBACK not in effects:
                # The message was reported after the hang-up had opened the call-back
                # item: the item now carries the message.
                await s.execute(
                    update(Callback)
                    .where(Callback.call_id == call.id)
                    .values(recording_path=call.recording_path, reason="voicemail")
                )
            if Effect.CALLBACK in effects and call.direction == "in":
                cb = await self._open_callback(s, call, now)
                callback_id = cb.id if cb else None
            for name in change.events:
                events.append(self._event_for(name, call, now, callback_id))
        elif not events and not info:
            return None
        changed = {k: v for k, v in vars(call).items() if before.get(k) != v}
        if changed:
            await s.execute(update(table).where(table.c.id == call.id).values(**changed))
        await stage_events(s, events)
        view = call_view(call, now)
        return Recorded(call=view, effects=effects, callback_id=callback_id)

    def _event_for(
        self, name: str, c: Call | SimpleNamespace, now: datetime, callback_id: int | None
    ) -> Event:
        wait = round(wait_seconds(c.queued_at, c.answered_at or c.ended_at or now), 3)
        by_name: dict[str, dict[str, Any]] = {
            ev.CALL_QUEUED: {"position": c.position},
            ev.CALL_ANSWERED: {"wait_s": wait, "incident_code": c.incident_code},
            ev.CALL_ABANDONED: {"wait_s": wait, "callback_id": callback_id},
            ev.CALL_ENDED: {"outcome": c.outcome, "incident_code": c.incident_code},
        }
        return _call_event(name, c, **by_name.get(name, {}))

    async def link_incident(self, uid: str, code: str) -> None:
        async with transaction(self._sessions) as s:
            await s.execute(update(Call).where(Call.uid == uid).values(incident_code=code))

    # ------------------------------------------------------------------ a call's draft

    async def claim_draft(self, uid: str, *, consumer: str, key: str | None) -> DraftClaim:
        """Take call `uid`'s draft slot, in one transaction, before the core is asked (see
        telephony.switchboard.draft). `key`: the `call.answered` event making it, marked
        consumed by `consumer` (None: the start-up's catch-up, which no event drives)."""
        async with transaction(self._sessions) as s:
            if key is not None and await s.get(ConsumedEvent, (consumer, key)) is not None:
                return DraftClaim(verdict="done")
            call = await s.scalar(select(Call).where(Call.uid == uid).with_for_update())
            if call is None or call.direction != "in" or call.incident_code:
                if key is not None:
                    await first_time(s, consumer, key)
                return DraftClaim(verdict="done")
            verdict: Literal["claimed", "again"] = (
                "claimed" if call.draft_claim is None else "again"
            )
            call.draft_claim = key or consumer
            return DraftClaim(
                verdict=verdict, call=call_view(call, self._clock()), request=call.draft_request
            )

    async def keep_draft_request(self, uid: str, request: dict[str, Any]) -> None:
        """The draft's report as it will be asked of the core (see DraftClaim.request)."""
        async with transaction(self._sessions) as s:
            await s.execute(update(Call).where(Call.uid == uid).values(draft_request=request))

    async def link_draft(
        self, uid: str, code: str, *, consumer: str, key: str | None, described: bool
    ) -> None:
        """The core made the draft: link it to its call and mark the maker's event consumed,
        together (the link is unique: one call, one draft)."""
        async with transaction(self._sessions) as s:
            await s.execute(
                update(Call)
                .where(Call.uid == uid)
                .values(incident_code=code, draft_described=described)
            )
            if key is not None:
                await first_time(s, consumer, key)

    async def answered_without_draft(self, since: datetime) -> list[str]:
        """Citizens' calls that arrived since `since`, answered by an agent, that have no
        draft (yet); a call known answered only from Asterisk's records names no agent."""
        async with self._sessions() as s:
            rows = await s.scalars(
                select(Call.uid)
                .where(
                    # (status, arrived_at) is indexed: a start reads a day of calls, not all.
                    Call.status.in_([Status.CONNECTED.value, Status.ENDED.value]),
                    Call.arrived_at >= since,
                    Call.answered_at.is_not(None),
                    Call.direction == "in",
                    Call.agent.is_not(None),
                    Call.incident_code.is_(None),
                )
                .order_by(Call.answered_at)
            )
            return list(rows.all())

    async def description(self, uid: str) -> str:
        """The words of the caller's recorded description (1022 "say what happened"), once
        transcribed and kept; "" before that, or when nothing was understood."""
        async with self._sessions() as s:
            text = await s.scalar(
                select(TranscriptRow.text)
                .where(
                    TranscriptRow.call_uid == uid,
                    TranscriptRow.kind == "ivr",
                    TranscriptRow.error.is_(None),
                )
                .order_by(TranscriptRow.id.desc())
                .limit(1)
            )
        return (text or "").strip()

    async def describe_draft(self, uid: str, *, described: bool = True) -> str | None:
        """Take the duty of putting the description on call `uid`'s draft: its code when this
        caller takes it (the draft exists and lacks it), else None. `described=False` gives
        the duty back (the note could not be written)."""
        async with transaction(self._sessions) as s:
            call = await s.scalar(select(Call).where(Call.uid == uid).with_for_update())
            if call is None or not call.incident_code:
                return None
            if described and call.draft_described:
                return None
            call.draft_described = described
            return call.incident_code

    async def call_language(self, call_id: int) -> str:
        """The language a call's caller chose (vi when none): a call-back speaks it."""
        async with self._sessions() as s:
            language = await s.scalar(select(Call.language).where(Call.id == call_id))
            return language or "vi"

    async def get_call(self, uid: str) -> dict[str, Any] | None:
        async with self._sessions() as s:
            call = await s.scalar(select(Call).where(Call.uid == uid))
            return call_view(call, self._clock()) if call else None

    async def list_calls(
        self,
        *,
        status: Sequence[str] = (),
        service: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        stmt = select(Call).order_by(Call.arrived_at.desc(), Call.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(Call.status.in_(list(status)))
        if service:
            stmt = stmt.where(Call.service == service)
        if since:
            stmt = stmt.where(Call.arrived_at >= since)
        async with self._sessions() as s:
            now = self._clock()
            return [call_view(c, now) for c in (await s.scalars(stmt)).all()]

    async def live_calls(self) -> list[Call]:
        async with self._sessions() as s:
            stmt = select(Call).where(Call.status != Status.ENDED.value)
            return list((await s.scalars(stmt)).all())

    async def caller_history(self, ani: str) -> int:
        async with self._sessions() as s:
            n = await s.scalar(select(func.count()).select_from(Call).where(Call.ani == ani))
            return int(n or 0)

    async def calls_since(self, since: datetime) -> list[Call]:
        """Calls that arrived since `since`, or still live (the queue board's window)."""
        async with self._sessions() as s:
            stmt = select(Call).where(
                (Call.arrived_at >= since) | (Call.status != Status.ENDED.value)
            )
            return list((await s.scalars(stmt)).all())

    async def messages_without_transcript(self, since: datetime) -> list[tuple[str, str, str]]:
        """Messages left since `since` whose transcription never ended, neither with words
        nor with the reason there are none (the process died first): (call id, recording,
        language) each."""
        kept = select(TranscriptRow.id).where(
            TranscriptRow.call_uid == Call.uid, TranscriptRow.kind == "message"
        )
        async with self._sessions() as s:
            rows = await s.execute(
                select(Call.uid, Callback.recording_path, Call.language)
                .join(Call, Call.id == Callback.call_id)
                .where(
                    Callback.reason == "voicemail",
                    Callback.recording_path.is_not(None),
                    Callback.created_at >= since,
                    ~kept.exists(),
                )
                .order_by(Callback.created_at)
            )
            return [(uid, str(path), language or "vi") for uid, path, language in rows.all()]

    # ------------------------------------------------------------------ call-backs

    async def _open_callback(
        self, s: AsyncSession, call: Call | SimpleNamespace, now: datetime
    ) -> Callback | None:
        existing = await s.scalar(
            select(Callback).where(Callback.call_id == call.id).order_by(Callback.id).limit(1)
        )
        if existing is not None:
            return existing
        policy = self._settings.callback
        svc = self._settings.service(call.service)
        reason = {Outcome.RECORDED.value: "voicemail", Outcome.UNKNOWN.value: "lost"}.get(
            call.outcome or "", "abandoned"
        )
        automatic = call.service in policy.automatic and reason == "abandoned"
        cb = Callback(
            call_id=call.id,
            ani=call.ani,
            service=call.service,
            reason=reason,
            status=CallbackStatus.PENDING,
            automatic=automatic and bool(call.ani),
            priority=10 if svc and svc.emergency else 0,
            attempts=0,
            max_attempts=policy.attempts if automatic else 0,
            next_attempt_at=now + timedelta(seconds=policy.first_delay_s) if automatic else None,
            recording_path=call.recording_path,
            note="",
            created_at=now,
            updated_at=now,
        )
        s.add(cb)
        await s.flush()
        add_events(
            s,
            [
                Event(
                    name=ev.CALLBACK_CREATED,
                    payload={
                        "callback_id": cb.id,
                        "call_id": call.uid,
                        "service": cb.service,
                        "reason": reason,
                        "automatic": cb.automatic,
                    },
                    correlation_id=call.uid,
                )
            ],
        )
        return cb

    async def list_callbacks(
        self, *, status: Sequence[str] = (), limit: int = 100
    ) -> list[dict[str, Any]]:
        stmt = (
            select(Callback)
            .order_by(Callback.priority.desc(), Callback.created_at.asc())
            .limit(limit)
        )
        if status:
            stmt = stmt.where(Callback.status.in_(list(status)))
        async with self._sessions() as s:
            return [callback_view(cb) for cb in (await s.scalars(stmt)).all()]

    async def get_callback(self, callback_id: int) -> dict[str, Any] | None:
        async with self._sessions() as s:
            cb = await s.get(Callback, callback_id)
            return callback_view(cb) if cb else None

    async def due_callbacks(self, limit: int = 10) -> list[int]:
        """Claim automatic call-backs whose next attempt is due (status -> calling); those
        the call-back policy refuses (callback_policy.decide) stay pending for a person."""
        now = self._clock()
        policy = self._settings.callback
        async with transaction(self._sessions) as s:
            rows = (
                await s.scalars(
                    select(Callback)
                    .where(
                        Callback.status == CallbackStatus.PENDING,
                        Callback.automatic.is_(True),
                        Callback.next_attempt_at <= now,
                        Callback.attempts < Callback.max_attempts,
                    )
                    .order_by(Callback.priority.desc(), Callback.next_attempt_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            ids: list[int] = []
            placed: dict[str, int] = {}  # this batch's own dials, per number
            for cb in rows:
                if cb.ani not in placed:
                    placed[cb.ani] = await self._placed_last_hour(s, cb.ani, now)
                verdict = decide(
                    cb.ani,
                    allowed=policy.allowed,
                    placed_last_hour=placed[cb.ani],
                    max_per_hour=policy.max_per_hour,
                )
                if verdict.refusal is not None:
                    await self._refuse(s, cb, verdict.refusal, placed[cb.ani], now)
                    continue
                placed[cb.ani] += 1
                cb.status = CallbackStatus.CALLING
                cb.attempts += 1
                cb.updated_at = now
                s.add(CallbackAttempt(callback_id=cb.id, by="auto", started_at=now))
                ids.append(cb.id)
        if len(ids) < len(rows):
            self._committed()  # the refusals' events
        return ids

    @staticmethod
    async def _placed_last_hour(s: AsyncSession, ani: str, now: datetime) -> int:
        """Automatic call-backs placed to `ani` in the hour before `now`, whatever the item."""
        count = await s.scalar(
            select(func.count())
            .select_from(CallbackAttempt)
            .join(Callback, Callback.id == CallbackAttempt.callback_id)
            .where(
                Callback.ani == ani,
                CallbackAttempt.by == "auto",
                CallbackAttempt.started_at > now - timedelta(hours=1),
            )
        )
        return int(count or 0)

    async def _refuse(
        self, s: AsyncSession, cb: Callback, refusal: str, placed: int, now: datetime
    ) -> None:
        """The switchboard will not dial this item: it stays open for a person, saying why."""
        logger.warning("call-back %d not placed automatically: %s", cb.id, refusal)
        cb.automatic = False
        cb.next_attempt_at = None
        cb.last_outcome = "refused"
        cb.note = said(f"callback.refused.{refusal}", number=cb.ani or "?", count=placed)
        cb.updated_at = now
        add_events(s, [self._callback_event(cb, await self._call_uid(s, cb))])

    async def attempt_started(self, callback_id: int, channel_uid: str) -> None:
        async with transaction(self._sessions) as s:
            attempt = await self._last_attempt(s, callback_id)
            if attempt is not None:
                attempt.channel_uid = channel_uid

    @staticmethod
    async def _last_attempt(s: AsyncSession, callback_id: int) -> CallbackAttempt | None:
        return await s.scalar(
            select(CallbackAttempt)
            .where(CallbackAttempt.callback_id == callback_id)
            .order_by(CallbackAttempt.id.desc())
            .limit(1)
        )

    async def attempt_finished(self, callback_id: int, outcome: str) -> dict[str, Any] | None:
        """Record an attempt's outcome (answered | busy | no_answer | failed) and decide what
        is next: done, another attempt after `spacing_s`, or failed (a person takes over)."""
        now = self._clock()
        policy = self._settings.callback
        async with transaction(self._sessions) as s:
            cb = await s.get(Callback, callback_id, with_for_update=True)
            if cb is None or cb.status != CallbackStatus.CALLING:
                return None
            attempt = await self._last_attempt(s, callback_id)
            if attempt is not None and attempt.outcome is None:
                attempt.outcome, attempt.ended_at = outcome, now
            cb.last_outcome = outcome
            cb.updated_at = now
            if outcome == "answered":
                cb.status = CallbackStatus.DONE
            elif cb.attempts >= cb.max_attempts:
                cb.status = CallbackStatus.FAILED
            else:
                cb.status = CallbackStatus.PENDING
                cb.next_attempt_at = now + timedelta(seconds=policy.spacing_s)
            add_events(s, [self._callback_event(cb, await self._call_uid(s, cb))])
            view = callback_view(cb)
        self._committed()
        return view

    @staticmethod
    async def _call_uid(s: AsyncSession, cb: Callback) -> str:
        return str(await s.scalar(select(Call.uid).where(Call.id == cb.call_id)) or "")

    @staticmethod
    def _callback_event(cb: Callback, call_uid: str) -> Event:
        return Event(
            name=ev.CALLBACK_UPDATED,
            payload={
                "callback_id": cb.id,
                "call_id": call_uid,
                "status": cb.status,
                "attempts": cb.attempts,
                "outcome": cb.last_outcome,
            },
            correlation_id=call_uid,
        )

    async def act_on_callback(
        self, callback_id: int, action: str, *, agent: str, note: str = ""
    ) -> dict[str, Any] | None:
        """A person's action: claim, complete (reached the citizen), cancel (with a note),
        retry (back to the automatic queue now). Returns None for an unknown item; raises
        ValueError when the action does not fit its status."""
        now = self._clock()
        async with transaction(self._sessions) as s:
            cb = await s.get(Callback, callback_id, with_for_update=True)
            if cb is None:
                return None
            allowed = {
                "claim": (CallbackStatus.PENDING, CallbackStatus.FAILED),
                "complete": (CallbackStatus.CLAIMED, CallbackStatus.PENDING, CallbackStatus.FAILED),
                "cancel": (CallbackStatus.PENDING, CallbackStatus.CLAIMED, CallbackStatus.FAILED),
                "retry": (CallbackStatus.FAILED, CallbackStatus.CLAIMED),
            }[action]
            if cb.status not in allowed:
                raise ValueError(f"cannot {action} a call-back that is {cb.status}")
            if action == "cancel" and not note:
                raise ValueError("cancelling a call-back needs a note saying why")
            cb.status = {
                "claim": CallbackStatus.CLAIMED,
                "complete": CallbackStatus.DONE,
                "cancel": CallbackStatus.CANCELLED,
                "retry": CallbackStatus.PENDING,
            }[action]
            if action == "retry":
                cb.automatic = True
                cb.max_attempts = cb.attempts + max(1, self._settings.callback.attempts)
                cb.next_attempt_at = now
            cb.assigned_to = agent or cb.assigned_to
            if note:
                cb.note = note
            cb.updated_at = now
            add_events(s, [self._callback_event(cb, await self._call_uid(s, cb))])
            view = callback_view(cb)
        self._committed()
        return view

    async def add_partial(
        self, uid: str, *, text: str, start_s: float, end_s: float, engine: str
    ) -> None:
        """A live partial result: the call's `live` (read by staff through the calls API) and
        an event that names it without its words (events carry no caller content)."""
        payload = {"call_id": uid, "start_s": start_s, "end_s": end_s}
        live = payload | {"text": text, "engine": engine}
        async with transaction(self._sessions) as s:
            await s.execute(update(Call).where(Call.uid == uid).values(live=live))
            add_events(
                s,
                [
                    Event(
                        name=ev.CALL_TRANSCRIPT_PARTIAL,
                        payload=payload | {"engine": engine},
                        correlation_id=uid,
                        version=ev.SCHEMAS[ev.CALL_TRANSCRIPT_PARTIAL][0],
                    )
                ],
            )

    async def add_transcript(
        self,
        uid: str,
        *,
        kind: str,
        audio_path: str,
        language: str,
        transcript: SpeechTranscript | None = None,
        engine: str = "",
        model: str = "",
        error: str | None = None,
    ) -> dict[str, Any]:
        """Keep a transcript (or why there is none) with its engine, model and timings; a
        message's text also goes onto the call's call-back item for the person calling back."""
        t = transcript
        row = TranscriptRow(
            call_uid=uid,
            kind=kind,
            audio_path=audio_path,
            language=language,
            engine=t.engine if t else engine,
            model=t.model if t else model,
            text=t.text if t else "",
            segments=[vars(seg) for seg in t.segments] if t else [],
            duration_s=t.duration_s if t else 0.0,
            elapsed_s=t.elapsed_s if t else 0.0,
            error=error,
            created_at=self._clock(),
        )
        async with transaction(self._sessions) as s:
            s.add(row)
            call_id = await s.scalar(select(Call.id).where(Call.uid == uid))
            urgent = emergency_service(t.text) if t is not None else None
            if kind == "live" and call_id is not None:  # the utterance heard live is now kept
                await s.execute(update(Call).where(Call.id == call_id).values(live=None))
            if t is not None and kind == "message" and call_id is not None:
                await s.execute(
                    update(Callback).where(Callback.call_id == call_id).values(transcript=t.text)
                )
                if urgent:
                    # Emergency words in a message left on 1022 (a fire, someone unconscious):
                    # the item jumps the queue and the switchboard calls back by itself.
                    now = self._clock()
                    await s.execute(
                        update(Callback)
                        .where(
                            Callback.call_id == call_id,
                            Callback.status == CallbackStatus.PENDING,
                        )
                        .values(
                            reason="emergency",
                            priority=10,
                            automatic=True,
                            max_attempts=Callback.attempts
                            + max(1, self._settings.callback.attempts),
                            next_attempt_at=now,
                            updated_at=now,
                        )
                    )
            await s.flush()
            if t is not None:
                # No text on the bus (nor anything else the caller said): consumers that need
                # the words read them through the calls API, as staff.
                payload = {
                    "call_id": uid,
                    "kind": kind,
                    "transcript_id": row.id,
                    "engine": t.engine,
                    "model": t.model,
                }
                version, _keys = ev.SCHEMAS[ev.CALL_TRANSCRIPT_FINAL]
                add_events(
                    s,
                    [
                        Event(
                            name=ev.CALL_TRANSCRIPT_FINAL,
                            payload=payload,
                            correlation_id=uid,
                            version=version,
                        )
                    ],
                )
            view = {
                "id": row.id,
                "call_id": uid,
                "kind": kind,
                "text": row.text,
                "engine": row.engine,
                "model": row.model,
                "duration_s": row.duration_s,
                "elapsed_s": row.elapsed_s,
                "error": row.error,
                "emergency": urgent,
            }
        self._committed()
        return view

    async def transcripts(self, uid: str) -> list[dict[str, Any]]:
        async with self._sessions() as s:
            rows = await s.scalars(
                select(TranscriptRow)
                .where(TranscriptRow.call_uid == uid)
                .order_by(TranscriptRow.id)
            )
            return [
                {
                    "id": r.id,  # what a call.transcript.final event names
                    "kind": r.kind,
                    "text": r.text,
                    "language": r.language,
                    "engine": r.engine,
                    "model": r.model,
                    "duration_s": r.duration_s,
                    "elapsed_s": r.elapsed_s,
                    "audio_path": r.audio_path,
                    "error": r.error,
                    "segments": r.segments,
                    "created_at": _iso(r.created_at),
                }
                for r in rows
            ]

    async def recover_callbacks(self, older_than_s: float) -> int:
        """After a restart: attempts left `calling` by a dead process go back to pending."""
        cutoff = self._clock() - timedelta(seconds=older_than_s)
        async with transaction(self._sessions) as s:
            result = await s.execute(
                update(Callback)
                .where(Callback.status == CallbackStatus.CALLING, Callback.updated_at < cutoff)
                .values(status=CallbackStatus.PENDING, updated_at=self._clock())
            )
            return int(getattr(result, "rowcount", 0) or 0)

    # ------------------------------------------------------------------ agents

    async def set_agent_state(
        self,
        extension: str,
        state: AgentState,
        *,
        reason: str = "",
        queues: Sequence[str] | None = None,
        name: str | None = None,
    ) -> dict[str, Any] | None:
        """Store an agent's state; returns the view when it changed (and stages the event)."""
        now = self._clock()
        async with transaction(self._sessions) as s:
            agent = await s.get(Agent, extension, with_for_update=True)
            if agent is None:
                agent = Agent(extension=extension, name=name or "", state="logged_out")
                agent.queues, agent.pause_reason, agent.state_since = [], "", now
                s.add(agent)
            previous = agent.state
            changed = previous != state.value or (
                state is AgentState.PAUSED and reason != agent.pause_reason
            )
            if queues is not None:
                agent.queues = list(queues)
            if name:
                agent.name = name
            if changed:
                agent.state, agent.pause_reason, agent.state_since = state.value, reason, now
                add_events(
                    s,
                    [
                        Event(
                            name=ev.AGENT_STATE_CHANGED,
                            payload={
                                "agent": extension,
                                "state": state.value,
                                "previous": previous,
                                "reason": reason,
                            },
                            correlation_id=f"agent:{extension}",
                        )
                    ],
                )
            view = agent_view(agent)
        if changed:
            self._committed()
        return view if changed else None

    async def agents(self) -> list[dict[str, Any]]:
        async with self._sessions() as s:
            return [agent_view(a) for a in (await s.scalars(select(Agent))).all()]


def agent_view(a: Agent) -> dict[str, Any]:
    return {
        "extension": a.extension,
        "name": a.name,
        "state": a.state,
        "pause_reason": a.pause_reason,
        "queues": a.queues,
        "state_since": _iso(a.state_since),
    }
