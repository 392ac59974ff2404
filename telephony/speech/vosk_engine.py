"""Vosk (Kaldi) as an engine: light, fast, one model per language, full or grammar mode.

- Full mode: any words of the model's vocabulary.
- Grammar mode: only the phrases given (a keyword list: emergency words, district names) —
  much faster and far more robust on bad audio (platform facts: RTF 0.03-0.04). Phrases must
  use the model's vocabulary; Kaldi drops unknown words from the grammar (with a warning), and
  `[unk]` lets speech outside the list come back as "[unk]" instead of a forced match.

The model is a folder (`am/`, `conf/`, `graph/`, ...) from the vendor, e.g. the Vietnamese
`vosk-model-vn-0.4`, set by IOC_STT_VOSK_MODEL_DIR. A Vosk model knows one language: the
`language` of a request is recorded, not switched.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from telephony.speech.audio import RATE, as_pcm16, decode16k
from telephony.speech.engine import Segment, SpeechError, Transcript

UNKNOWN = "[unk]"
CHUNK = 8000  # samples fed per call: Kaldi's own buffering does the rest


class VoskEngine:
    name = "vosk"

    def __init__(
        self, *, model_dir: Path, language: str = "vi", grammar: Sequence[str] = ()
    ) -> None:
        self.model = model_dir.name
        self.language = language
        self._dir = model_dir
        self._grammar = json.dumps([*grammar, UNKNOWN], ensure_ascii=False) if grammar else None
        self._loaded: Any = None
        self._lock = threading.Lock()  # one load; recognisers are per call, the model shared

    @property
    def mode(self) -> str:
        return "grammar" if self._grammar else "full"

    def _load(self) -> Any:
        with self._lock:
            if self._loaded is None:
                if not (self._dir / "am").is_dir() or not (self._dir / "conf").is_dir():
                    raise SpeechError(
                        f"no Vosk model in {self._dir} (a folder with am/, conf/, graph/)"
                    )
                import vosk  # heavy import: only when used

                vosk.SetLogLevel(-1)
                try:
                    self._loaded = vosk.Model(str(self._dir))
                except Exception as exc:  # Kaldi reports a bad folder as a bare Exception
                    raise SpeechError(f"{self._dir}: not a usable Vosk model ({exc})") from None
            return self._loaded

    def _recognise(self, audio: Any, language: str, reading_s: float) -> Transcript:
        import vosk

        model = self._load()
        started = time.perf_counter() - reading_s
        rec = (
            vosk.KaldiRecognizer(model, RATE, self._grammar)
            if self._grammar
            else vosk.KaldiRecognizer(model, RATE)
        )
        rec.SetWords(True)
        pcm = as_pcm16(audio)
        results = []
        for i in range(0, len(pcm), CHUNK * 2):  # 2 bytes a sample
            if rec.AcceptWaveform(pcm[i : i + CHUNK * 2]):
                results.append(json.loads(rec.Result()))
        results.append(json.loads(rec.FinalResult()))
        segments = [segment(r) for r in results if r.get("text")]
        return Transcript(
            text=" ".join(s.text for s in segments),
            language=language,
            engine=self.name,
            model=f"{self.model} ({self.mode})",
            duration_s=round(len(audio) / RATE, 3),
            elapsed_s=round(time.perf_counter() - started, 3),
            segments=segments,
        )

    def _file(self, path: Path, language: str) -> Transcript:
        started = time.perf_counter()
        audio = decode16k(path)
        return self._recognise(audio, language, time.perf_counter() - started)

    async def transcribe_file(self, path: Path, language: str | None = None) -> Transcript:
        return await asyncio.to_thread(self._file, path, language or self.language)

    async def transcribe_samples(
        self, samples: Any, language: str, *, quick: bool = False
    ) -> Transcript:
        return await asyncio.to_thread(partial(self._recognise, samples, language, 0.0))


def segment(result: dict[str, Any]) -> Segment:
    """One Kaldi result (an utterance) as a segment; confidence is the words' mean."""
    words = result.get("result") or []
    confidence = float(np.mean([w.get("conf", 0.0) for w in words])) if words else 0.0
    return Segment(
        start_s=round(float(words[0]["start"]), 2) if words else 0.0,
        end_s=round(float(words[-1]["end"]), 2) if words else 0.0,
        text=str(result.get("text", "")).strip(),
        confidence=round(confidence, 3),
    )
