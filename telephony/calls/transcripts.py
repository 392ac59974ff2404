"""A call's transcripts: the live partial result, the kept transcripts (live, IVR
description, message), and the messages whose transcription never ended."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core import events as ev
from ioc_core.bus import Event
from ioc_core.db import transaction
from ioc_core.outbox import add_events
from nlu.keywords import emergency_service
from telephony.calls.callbacks import CallbackStatus
from telephony.calls.models import Call, Callback
from telephony.calls.models import Transcript as TranscriptRow
from telephony.calls.views import iso
from telephony.settings import SwitchboardSettings
from telephony.speech.engine import Transcript as SpeechTranscript


class Transcripts:
    """The calls' transcripts (a CallStore's `transcripts`)."""

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

    async def partial(
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

    async def add(
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
        self._on_commit()
        return view

    async def of_call(self, uid: str) -> list[dict[str, Any]]:
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
                    "created_at": iso(r.created_at),
                }
                for r in rows
            ]

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
