"""Call-back items: opened with the abandoned call's fact (in its transaction), dialled
automatically within the call-back policy (callback_policy.decide), or acted on by a person."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core import events as ev
from ioc_core.bus import Event
from ioc_core.db import transaction
from ioc_core.outbox import add_events
from telephony.calls.callback_policy import decide
from telephony.calls.lifecycle import Outcome
from telephony.calls.models import Call, Callback, CallbackAttempt
from telephony.calls.views import callback_view
from telephony.i18n import said
from telephony.settings import SwitchboardSettings

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


class Callbacks:
    """The call-back items (a CallStore's `callbacks`)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: SwitchboardSettings,
        clock: Callable[[], datetime],
        on_commit: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock
        self._on_commit = on_commit  # wakes the outbox relay

    async def open(
        self, s: AsyncSession, call: Call | SimpleNamespace, now: datetime
    ) -> Callback | None:
        """The call-back item of an abandoned call (the one it has, if any), added in the
        call's own transaction `s`: a call is never kept without its item."""
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

    async def items(self, *, status: Sequence[str] = (), limit: int = 100) -> list[dict[str, Any]]:
        stmt = (
            select(Callback)
            .order_by(Callback.priority.desc(), Callback.created_at.asc())
            .limit(limit)
        )
        if status:
            stmt = stmt.where(Callback.status.in_(list(status)))
        async with self._sessions() as s:
            return [callback_view(cb) for cb in (await s.scalars(stmt)).all()]

    async def get(self, callback_id: int) -> dict[str, Any] | None:
        async with self._sessions() as s:
            cb = await s.get(Callback, callback_id)
            return callback_view(cb) if cb else None

    async def due(self, limit: int = 10) -> list[int]:
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
            self._on_commit()  # the refusals' events
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
        self._on_commit()
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

    async def act(
        self,
        callback_id: int,
        action: str,
        *,
        agent: str,
        note: str = "",
        outcome: str | None = None,
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
            if outcome is not None and action == "complete":
                cb.last_outcome = outcome
            cb.updated_at = now
            add_events(s, [self._callback_event(cb, await self._call_uid(s, cb))])
            view = callback_view(cb)
        self._on_commit()
        return view

    async def recover(self, older_than_s: float) -> int:
        """After a restart: attempts left `calling` by a dead process go back to pending."""
        cutoff = self._clock() - timedelta(seconds=older_than_s)
        async with transaction(self._sessions) as s:
            result = await s.execute(
                update(Callback)
                .where(Callback.status == CallbackStatus.CALLING, Callback.updated_at < cutoff)
                .values(status=CallbackStatus.PENDING, updated_at=self._clock())
            )
            return int(getattr(result, "rowcount", 0) or 0)
