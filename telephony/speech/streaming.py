"""Streaming recognition on live call audio: feed PCM frames, get partial and final results.

Whisper-like engines decode whole utterances, not frames, so streaming is built around them:
- an energy voice-activity detector (`Vad`, pure) cuts the caller's audio into utterances
  (speech, then `end_silence_s` of quiet; at most `max_utterance_s`);
- while an utterance goes on, it is decoded again every `partial_every_s` of new audio and the
  text is a *partial*; when it ends it is decoded once more and the text is *final*.

Back-pressure: decoding runs in one worker per stream. A partial is only started when the
worker is idle (a slow engine gives fewer partials, never a backlog of them); finals wait in a
bounded queue, and when it is full the oldest waiting utterance is dropped and counted
(`dropped_s`) rather than letting a call's audio pile up in memory.

Audio in: 16-bit signed little-endian mono PCM at `rate` (8 kHz from Asterisk's slin).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from telephony.speech.audio import RATE
from telephony.speech.engine import SpeechEngine, SpeechError, Transcript

logger = logging.getLogger(__name__)

FRAME_S = 0.02  # the VAD's frame: 20 ms, as telephony sends them


# ---------------------------------------------------------------------------- the VAD (pure)


@dataclass(frozen=True)
class VadState:
    in_speech: bool = False
    speech_frames: int = 0  # frames of the current utterance that were speech
    quiet_frames: int = 0  # consecutive quiet frames since the last speech
    frames: int = 0  # frames since the utterance started


@dataclass(frozen=True)
class Vad:
    """When an utterance starts and ends, from one speech/quiet verdict per frame."""

    end_silence_frames: int = 35  # 0.7 s of quiet ends an utterance
    min_speech_frames: int = 10  # 0.2 s: shorter bursts (a click, a cough) are not speech
    max_frames: int = 750  # 15 s: a caller who never pauses still gets results

    def step(self, state: VadState, speech: bool) -> tuple[VadState, str | None]:
        """The next state and "start", "end", "drop" (a burst too short to be speech) or
        None."""
        if not state.in_speech:
            return (VadState(True, 1, 0, 1), "start") if speech else (state, None)
        frames = state.frames + 1
        spoken = state.speech_frames + speech
        quiet = 0 if speech else state.quiet_frames + 1
        if quiet >= self.end_silence_frames or frames >= self.max_frames:
            return VadState(), "end" if spoken >= self.min_speech_frames else "drop"
        return VadState(True, spoken, quiet, frames), None


def rms(frame: Any) -> float:
    """Root mean square of float samples (0 for an empty frame)."""
    return float(np.sqrt(np.mean(np.square(frame)))) if len(frame) else 0.0


def is_speech(level: float, floor: float) -> bool:
    """Energy (RMS) above the noise floor, and at least ~-42 dBFS."""
    return level > max(0.008, 3.0 * floor)


# ---------------------------------------------------------------------------- the stream


@dataclass(frozen=True, kw_only=True)
class StreamResult:
    kind: Literal["partial", "final"]
    text: str
    start_s: float  # from the start of the stream
    end_s: float
    confidence: float
    transcript: Transcript  # the engine's own result (engine, model, timings, segments)


@dataclass
class _Utterance:
    start_s: float
    chunks: list[Any] = field(default_factory=list)  # float32 arrays at the input rate
    samples: int = 0
    decoded_samples: int = 0  # how much the last partial had


OnResult = Callable[[StreamResult], Awaitable[None]]


class LiveStream:
    def __init__(
        self,
        engine: SpeechEngine,
        *,
        language: str,
        on_result: OnResult,
        rate: int = 8000,
        partial_every_s: float = 1.0,
        max_pending: int = 4,
        vad: Vad | None = None,
    ) -> None:
        self._engine = engine
        self._language = language
        self._on_result = on_result
        self._rate = rate
        self._frame = int(rate * FRAME_S)
        self._partial_samples = int(partial_every_s * rate)
        self._vad = vad or Vad()
        self._state = VadState()
        self._floor = 0.0  # running noise floor (quiet frames only)
        self._pending: deque[_Utterance] = deque()
        self._max_pending = max_pending
        self._current: _Utterance | None = None
        self._preroll: deque[Any] = deque(maxlen=10)  # 200 ms before the detected start
        self._rest = np.zeros(0, dtype=np.float32)  # samples short of a whole frame
        self._received = 0  # samples fed so far
        self._wake = asyncio.Event()
        self._closing = False
        self._worker = asyncio.create_task(self._work(), name="live-stream")
        self.dropped_s = 0.0
        self.results = 0

    # ------------------------------------------------------------------ input

    def feed(self, pcm: bytes) -> None:
        """Raw slin; never blocks (the socket reader must keep up with real time)."""
        if self._closing or not pcm:
            return
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32)
        data = np.concatenate([self._rest, samples / 32768.0])
        whole = len(data) // self._frame * self._frame
        for offset in range(0, whole, self._frame):
            self._push(data[offset : offset + self._frame])
        self._rest = data[whole:]

    def _push(self, frame: Any) -> None:
        level = rms(frame)
        speech = is_speech(level, self._floor)
        if not speech:
            self._floor = 0.95 * self._floor + 0.05 * level if self._floor else level
        at = self._received / self._rate
        self._received += len(frame)
        self._state, event = self._vad.step(self._state, speech)
        if event == "start":
            pre = list(self._preroll)
            self._current = _Utterance(start_s=at - len(pre) * FRAME_S)
            for chunk in pre:
                self._append(chunk)
        self._preroll.append(frame)
        if self._current is not None:
            self._append(frame)
            if self._current.samples - self._current.decoded_samples >= self._partial_samples:
                self._wake.set()
        if event in ("end", "drop"):
            if event == "end" and self._current is not None:
                self._finish(self._current)
            self._current = None

    def _append(self, frame: Any) -> None:
        assert self._current is not None
        self._current.chunks.append(frame)
        self._current.samples += len(frame)

    def _finish(self, utterance: _Utterance) -> None:
        if len(self._pending) >= self._max_pending:
            dropped = self._pending.popleft()
            self.dropped_s += dropped.samples / self._rate
            logger.warning("live transcription behind: dropped %.1fs", dropped.samples / self._rate)
        self._pending.append(utterance)
        self._wake.set()

    async def close(self, *, timeout_s: float = 30.0) -> None:
        """The call ended: what the caller was saying is finished and decoded, then stop."""
        if self._closing:
            return
        self._closing = True
        current, self._current = self._current, None
        if current is not None and self._state.speech_frames >= self._vad.min_speech_frames:
            self._finish(current)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), timeout_s)
        except TimeoutError:
            logger.warning("live transcription did not finish within %.0fs", timeout_s)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    # ------------------------------------------------------------------ decoding

    async def _work(self) -> None:
        while True:
            if not self._pending and not self._partial_due():
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            if self._pending:
                await self._decode(self._pending.popleft(), "final")
            else:
                current = self._current
                assert current is not None
                current.decoded_samples = current.samples
                await self._decode(replace(current, chunks=list(current.chunks)), "partial")

    def _partial_due(self) -> bool:
        c = self._current
        return (
            c is not None
            and not self._closing
            and c.samples - c.decoded_samples >= self._partial_samples
        )

    async def _decode(self, utterance: _Utterance, kind: Literal["partial", "final"]) -> None:
        audio = np.concatenate(utterance.chunks) if utterance.chunks else np.zeros(0)
        try:
            t = await self._engine.transcribe_samples(
                to16k(audio, self._rate), self._language, quick=kind == "partial"
            )
        except SpeechError as exc:
            logger.warning("live %s not transcribed: %s", kind, exc)
            return
        except Exception:
            logger.exception("live transcription failed (%s)", kind)
            return
        if not t.text:
            return
        confidence = min((s.confidence for s in t.segments), default=0.0)
        result = StreamResult(
            kind=kind,
            text=t.text,
            start_s=round(utterance.start_s, 2),
            end_s=round(utterance.start_s + utterance.samples / self._rate, 2),
            confidence=confidence,
            transcript=t,
        )
        self.results += 1
        try:
            await self._on_result(result)
        except Exception:
            logger.exception("a live %s could not be delivered", kind)


def to16k(samples: Any, rate: int) -> Any:
    """float32 samples at `rate` as 16 kHz (linear interpolation: telephone audio has nothing
    above 4 kHz to lose)."""
    if rate == RATE or not len(samples):
        return samples.astype(np.float32)
    n = int(len(samples) * RATE / rate)
    x = np.linspace(0, len(samples) - 1, n, dtype=np.float64)
    return np.interp(x, np.arange(len(samples)), samples).astype(np.float32)
