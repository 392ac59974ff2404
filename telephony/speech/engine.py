"""The speech-to-text interface every engine implements, and its result shapes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


class SpeechError(Exception):
    """A clear reason the audio could not be transcribed (bad file, missing model, ...)."""


@dataclass(frozen=True, kw_only=True)
class Segment:
    start_s: float
    end_s: float
    text: str
    confidence: float  # 0..1 (the engine's own measure, mapped)


@dataclass(frozen=True, kw_only=True)
class Transcript:
    text: str
    language: str
    engine: str
    model: str
    duration_s: float  # of the audio
    elapsed_s: float  # wall time the engine took
    segments: list[Segment] = field(default_factory=list)

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of work per second of audio (lower is faster)."""
        return round(self.elapsed_s / self.duration_s, 3) if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rtf"] = self.rtf
        return data


class SpeechEngine(Protocol):
    """Files (messages, descriptions) and samples (live utterances, see streaming.py)."""

    name: str
    model: str
    language: str  # the configured language, used when a call has not chosen one

    async def transcribe_file(self, path: Path, language: str | None = None) -> Transcript: ...

    async def transcribe_samples(
        self, samples: Any, language: str, *, quick: bool = False
    ) -> Transcript:
        """`samples`: float32 at 16 kHz in [-1, 1]; `quick`: a partial result, where speed
        matters more than the last bit of accuracy."""
        ...
