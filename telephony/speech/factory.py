"""The configured speech engine: IOC_STT_ENGINE picks it (configuration, not code)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ioc_core.artifacts import ArtifactCache
from telephony.settings import variables
from telephony.speech.engine import SpeechEngine, SpeechError
from telephony.speech.external import ExternalEngine
from telephony.speech.models import stt_model_dir
from telephony.speech.vosk_engine import VoskEngine
from telephony.speech.whisper import WhisperEngine

ENGINES = ("whisper", "vosk", "external")


def configured_engine(cache_dir: Path, env: Mapping[str, str] | None = None) -> SpeechEngine:
    g = variables(env)
    kind, language = g("IOC_STT_ENGINE"), g("IOC_STT_LANGUAGE")
    if kind == "whisper":
        return WhisperEngine(model_dir=stt_model_dir(ArtifactCache(cache_dir)), language=language)
    if kind == "vosk":
        folder = g("IOC_STT_VOSK_MODEL_DIR")
        if not folder:
            raise SpeechError(
                "IOC_STT_ENGINE=vosk needs IOC_STT_VOSK_MODEL_DIR (a Vosk model folder)"
            )
        return VoskEngine(
            model_dir=Path(folder), language=language, grammar=_grammar(g("IOC_STT_VOSK_GRAMMAR"))
        )
    if kind == "external":
        url = g("IOC_STT_EXTERNAL_URL")
        if not url.startswith(("ws://", "wss://")):
            raise SpeechError(f"IOC_STT_EXTERNAL_URL must be a ws:// or wss:// URL, got {url!r}")
        return ExternalEngine(url=url, language=language)
    raise SpeechError(f"IOC_STT_ENGINE must be one of {', '.join(ENGINES)}, got {kind!r}")


def _grammar(name: str) -> list[str]:
    """IOC_STT_VOSK_GRAMMAR: a file of phrases, one per line ('#' comments); unset: full mode."""
    if not name:
        return []
    try:
        lines = Path(name).read_text("utf-8").splitlines()
    except OSError as exc:
        raise SpeechError(f"IOC_STT_VOSK_GRAMMAR: cannot read {name} ({exc.strerror})") from None
    phrases = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not phrases:
        raise SpeechError(f"IOC_STT_VOSK_GRAMMAR: {name} lists no phrases")
    return phrases
