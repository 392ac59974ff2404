"""Audio files into what recognisers take: 16 kHz mono samples (PyAV decodes wav, mp3, ogg,
...), with a clear error for what is not audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from telephony.speech.engine import SpeechError

RATE = 16_000


def as_pcm16(samples: Any) -> bytes:
    """float samples in [-1, 1] as signed 16-bit little-endian PCM (what engines take)."""
    return bytes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def decode16k(path: Path) -> Any:
    """float32 samples in [-1, 1] (a numpy array)."""
    from faster_whisper.audio import decode_audio  # heavy import: only when used

    if not path.is_file():
        raise SpeechError(f"{path}: no such file")
    try:
        return decode_audio(str(path), sampling_rate=RATE)
    except Exception as exc:  # PyAV raises many kinds; say which file and why
        raise SpeechError(f"{path.name}: not audio this engine can read ({exc})") from None
