"""Recordings and live audio turned into kept transcripts: messages left after the tone, the
caller's description in the 1022 menu, and what live taps hear."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from telephony.calls.service import CallStore
from telephony.speech.engine import SpeechEngine, SpeechError
from telephony.speech.streaming import StreamResult
from telephony.switchboard.draft import Description, Drafts

logger = logging.getLogger(__name__)


class Transcripts:
    def __init__(
        self,
        *,
        store: CallStore,
        drafts: Drafts,
        stt: SpeechEngine | None,
        spool: Path | None,
        urgent: Callable[[], None],
    ) -> None:
        """`stt`: transcribes messages and descriptions (SW-6, SW-8; None: they are not);
        `spool`: where Asterisk's recordings are, seen from here; `urgent`: called when a
        message has emergency words (the call-backs are woken)."""
        self._store = store
        self._drafts = drafts
        self._stt = stt
        self._spool = spool
        self._urgent = urgent

    async def transcribe(
        self, uid: str, kind: str, rel_path: str, language: str
    ) -> dict[str, Any] | None:
        """Transcribe a recording and keep the transcript, or the reason there is none."""
        if self._stt is None or self._spool is None:
            return None
        try:
            t = await self._stt.transcribe_file(self._spool / rel_path, language)
        except SpeechError as exc:
            await self._store.transcripts.add(
                uid,
                kind=kind,
                audio_path=rel_path,
                language=language,
                engine=self._stt.name,
                model=self._stt.model,
                error=str(exc),
            )
            return None
        return await self._store.transcripts.add(
            uid, kind=kind, audio_path=rel_path, language=language, transcript=t
        )

    async def message(self, uid: str, rel_path: str, language: str) -> None:
        """The message's words onto its call-back item; a failure is kept as the reason."""
        kept = await self.transcribe(uid, "message", rel_path, language)
        if kept is not None and kept["emergency"]:
            logger.warning(
                "emergency words (%s) in message %s: calling back", kept["emergency"], uid
            )
            self._urgent()

    async def catch_up(self, since: datetime) -> None:
        """Transcribe the messages whose transcription died with an earlier process (it runs
        in memory after the message's commit): their words reach the call-back item anyway."""
        if self._stt is None or self._spool is None:
            return
        for uid, rel_path, language in await self._store.transcripts.messages_without_transcript(
            since
        ):
            logger.info("transcribing message %s, left before a restart", uid)
            await self.message(uid, rel_path, language)

    async def describe(self, uid: str, rel_path: str, language: str) -> Description | None:
        """The caller's description (1022 "say what happened"): its words, the emergency
        number they point to, and the catalogue category they suggest. Never raises: the call
        goes on without it."""
        try:
            kept = await self.transcribe(uid, "ivr", rel_path, language)
            if kept is None or not kept["text"].strip():
                return None
            return await self._drafts.describe(kept["text"].strip())
        except Exception:
            logger.exception("could not transcribe the description on %s", uid)
            return None

    async def live_result(self, uid: str, language: str, result: StreamResult) -> None:
        """A live tap heard the caller: partials are events for the console; each final
        utterance is kept like every transcript, its audio referenced as a span of the call."""
        if result.kind == "partial":
            await self._store.transcripts.partial(
                uid,
                text=result.text,
                start_s=result.start_s,
                end_s=result.end_s,
                engine=result.transcript.engine,
            )
            return
        await self._store.transcripts.add(
            uid,
            kind="live",
            audio_path=f"call:{uid}#t={result.start_s},{result.end_s}",
            language=language,
            transcript=result.transcript,
        )
