"""The calls service: with its parts, the only place that writes calls, call-backs and
agents. Each fact is one transaction that updates the call, stages its bus events in the
outbox and, for an abandoned call, creates the call-back item — so a crash never leaves a call
without its call-back. Call-backs, transcripts and agents are the store's parts
(callbacks.py, transcripts.py, agents.py); the JSON shapes are in views.py."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Literal, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core import events as ev
from ioc_core.bus import Event
from ioc_core.db import transaction, utcnow
from ioc_core.outbox import ConsumedEvent, first_time, stage_events
from telephony.calls.agents import Agents
from telephony.calls.callbacks import Callbacks
from telephony.calls.lifecycle import (
    CallState,
    Effect,
    Fact,
    Outcome,
    Status,
    apply,
    wait_seconds,
)
from telephony.calls.models import Call, Callback
from telephony.calls.models import Transcript as TranscriptRow
from telephony.calls.transcripts import Transcripts
from telephony.calls.views import DraftClaim, Recorded, call_view
from telephony.numbers import normalise_msisdn
from telephony.settings import SwitchboardSettings

logger = logging.getLogger(__name__)


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
        # The store's parts, each writing its own tables and waking the relay after a commit.
        self.callbacks = Callbacks(
            sessions=sessions, settings=settings, clock=clock, on_commit=self._committed
        )
        self.transcripts = Transcripts(
            sessions=sessions, settings=settings, clock=clock, on_commit=self._committed
        )
        self.agents = Agents(sessions=sessions, clock=clock, on_commit=self._committed)
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
                cb = await self.callbacks.open(s, call, now)
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
        ani: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        stmt = select(Call).order_by(Call.arrived_at.desc(), Call.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(Call.status.in_(list(status)))
        if service:
            stmt = stmt.where(Call.service == service)
        if ani:
            stmt = stmt.where(Call.ani == ani)
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
