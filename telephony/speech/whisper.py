"""faster-whisper (CTranslate2) as a file engine: offline, CPU, int8.

Settings measured on these machines (../shared/notes/platform-facts.md): force the language
(Whisper's detection picks neighbours of Vietnamese on phone audio), beam 5, temperature 0,
`no_repeat_ngram_size=3` (robotic speech otherwise loops), the built-in Silero VAD; domain
words go in `hotwords` — an `initial_prompt` gets echoed back into the transcript.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from telephony.speech.audio import RATE, decode16k
from telephony.speech.engine import Segment, SpeechError, Transcript


class WhisperEngine:
    name = "faster-whisper"

    def __init__(
        self,
        *,
        model_dir: Path,
        language: str = "vi",
        hotwords: Sequence[str] = (),
        beam_size: int = 5,
        threads: int = 2,
    ) -> None:
        self.model = model_dir.name
        self._dir = model_dir
        self.language = language
        self._hotwords = " ".join(hotwords) or None
        self._beam = beam_size
        self._threads = threads
        self._loaded: Any = None
        self._lock = threading.Lock()  # one load, and CTranslate2 models are not re-entrant

    def _load(self) -> Any:
        if self._loaded is None:
            if not (self._dir / "model.bin").is_file():
                raise SpeechError(f"no Whisper model in {self._dir} (run: ioc setup models)")
            from faster_whisper import WhisperModel  # heavy import: only when used

            self._loaded = WhisperModel(
                str(self._dir), device="cpu", compute_type="int8", cpu_threads=self._threads
            )
        return self._loaded

    def _run(self, path: Path, language: str) -> Transcript:
        started = time.perf_counter()
        audio = decode16k(path)
        return self._decode(audio, language, reading_s=time.perf_counter() - started)

    def _decode(
        self,
        audio: Any,
        language: str,
        *,
        reading_s: float = 0.0,
        quick: bool = False,
        live: bool = False,
    ) -> Transcript:
        """`elapsed_s` is this decode's own time (plus reading the file): waiting for the
        model, busy with another call, is latency, not cost."""
        duration = len(audio) / RATE
        with self._lock:
            started = time.perf_counter() - reading_s
            model = self._load()
            segments, _info = model.transcribe(
                audio,
                language=language,
                beam_size=1 if quick else self._beam,
                temperature=0.0,
                # A live utterance was cut by streaming.py's VAD already, and needs no
                # timestamps inside it: both cost ~15% of a short decode (measured).
                vad_filter=not live,
                without_timestamps=live,
                hotwords=self._hotwords,
                no_repeat_ngram_size=3,
                condition_on_previous_text=False,
            )
            found = [
                Segment(
                    start_s=round(s.start, 2),
                    end_s=round(s.end, 2),
                    text=s.text.strip(),
                    confidence=round(min(1.0, math.exp(s.avg_logprob)), 3),
                )
                for s in segments
            ]
        return Transcript(
            text=" ".join(s.text for s in found if s.text).strip(),
            language=language,
            engine=self.name,
            model=self.model,
            duration_s=round(duration, 3),
            elapsed_s=round(time.perf_counter() - started, 3),
            segments=found,
        )

    async def transcribe_file(self, path: Path, language: str | None = None) -> Transcript:
        """`language`: forced for this file (a caller who chose English); else the engine's."""
        return await asyncio.to_thread(self._run, path, language or self.language)

    async def transcribe_samples(
        self, samples: Any, language: str, *, quick: bool = False
    ) -> Transcript:
        """16 kHz float32 samples (a live utterance, see streaming.py); `quick`: a partial
        result, greedy instead of beam search (it is replaced by the final one anyway)."""
        decode = partial(self._decode, samples, language, quick=quick, live=True)
        return await asyncio.to_thread(decode)
