"""Streaming recognition: the VAD's cuts (table), partial and final results from a fake engine,
back-pressure, and the last words at hang-up."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from telephony.speech.engine import Segment, Transcript
from telephony.speech.streaming import LiveStream, StreamResult, Vad, VadState, to16k

VAD = Vad(end_silence_frames=3, min_speech_frames=2, max_frames=8)


def _cuts(frames: str) -> list[str | None]:
    """One verdict per character: S speech, . quiet."""
    state, out = VadState(), []
    for c in frames:
        state, event = VAD.step(state, c == "S")
        out.append(event)
    return out


@pytest.mark.parametrize(
    ("frames", "events"),
    [
        ("....", [None] * 4),
        ("SS...", ["start", None, None, None, "end"]),  # 3 quiet frames end it
        ("SS.S...", ["start", None, None, None, None, None, "end"]),  # a short pause does not
        ("S...", ["start", None, None, "drop"]),  # one frame of noise is not speech
        ("SSSSSSSSS", ["start", *[None] * 6, "end", "start"]),  # at most 8 frames, then again
    ],
)
def test_vad_cuts(frames: str, events: list[str | None]) -> None:
    assert _cuts(frames) == events


class FakeEngine:
    name, model, language = "fake", "fake-1", "vi"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.heard: list[float] = []  # seconds of audio per call

    async def transcribe_file(self, path: Any, language: str | None = None) -> Transcript:
        raise NotImplementedError

    async def transcribe_samples(
        self, samples: Any, language: str, *, quick: bool = False
    ) -> Transcript:
        await asyncio.sleep(self.delay_s)
        seconds = len(samples) / 16000
        self.heard.append(seconds)
        text = f"{seconds:.1f}s {language}"
        return Transcript(
            text=text, language=language, engine=self.name, model=self.model,
            duration_s=seconds, elapsed_s=self.delay_s,
            segments=[Segment(start_s=0, end_s=seconds, text=text, confidence=0.8)],
        )  # fmt: skip


def _pcm(seconds: float, loud: bool, rate: int = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) if loud else np.zeros_like(t)
    return (wave * 32767).astype("<i2").tobytes()


async def _feed(stream: LiveStream, pcm: bytes, *, real_time: bool = False) -> None:
    for i in range(0, len(pcm), 320):  # 20 ms packets, as AudioSocket sends them
        stream.feed(pcm[i : i + 320])
        if real_time and i % 3200 == 0:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0)


async def test_partials_while_speaking_then_one_final() -> None:
    got: list[StreamResult] = []

    async def on_result(r: StreamResult) -> None:
        got.append(r)

    stream = LiveStream(FakeEngine(), language="en", on_result=on_result, partial_every_s=1.0)
    await _feed(stream, _pcm(1.0, False) + _pcm(2.5, True), real_time=True)
    await _feed(stream, _pcm(1.0, False), real_time=True)  # 0.7 s of quiet ends it
    await stream.close()
    kinds = [r.kind for r in got]
    assert kinds.count("final") == 1 and kinds[-1] == "final" and "partial" in kinds
    final = got[-1]
    # From 200 ms before the speech (pre-roll) to the end of the 0.7 s pause that ended it.
    assert final.start_s == pytest.approx(0.8) and final.end_s == pytest.approx(4.2)
    assert final.text.endswith("en") and final.confidence == 0.8
    assert final.transcript.engine == "fake"


async def test_the_last_words_are_decoded_when_the_call_ends() -> None:
    got: list[StreamResult] = []

    async def on_result(r: StreamResult) -> None:
        got.append(r)

    stream = LiveStream(FakeEngine(), language="vi", on_result=on_result, partial_every_s=10)
    await _feed(stream, _pcm(1.5, True))  # still speaking at hang-up
    await stream.close()
    assert [r.kind for r in got] == ["final"]
    stream.feed(_pcm(1.0, True))  # after close: ignored
    assert stream.results == 1


async def test_silence_and_clicks_give_nothing() -> None:
    got: list[StreamResult] = []

    async def on_result(r: StreamResult) -> None:
        got.append(r)

    stream = LiveStream(FakeEngine(), language="vi", on_result=on_result)
    await _feed(stream, _pcm(2.0, False) + _pcm(0.1, True) + _pcm(2.0, False) + b"\x01")
    await stream.close()
    assert got == []


async def test_a_slow_engine_drops_the_oldest_waiting_utterance_not_the_call() -> None:
    engine = FakeEngine(delay_s=0.3)

    async def on_result(r: StreamResult) -> None:
        pass

    stream = LiveStream(engine, language="vi", on_result=on_result, max_pending=1)
    burst = _pcm(0.5, True) + _pcm(0.8, False)
    await _feed(stream, burst * 4)  # four utterances at once, faster than real time
    await stream.close()
    assert stream.dropped_s > 0
    assert len(engine.heard) < 4


def test_telephone_audio_is_resampled_to_16k() -> None:
    samples = np.linspace(-1, 1, 800, dtype=np.float32)
    out = to16k(samples, 8000)
    assert len(out) == 1600 and out.dtype == np.float32
    assert out[0] == pytest.approx(-1) and out[-1] == pytest.approx(1)
