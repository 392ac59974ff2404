"""The configured speech engine: IOC_STT_ENGINE picks it (configuration, not code)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ioc_core.artifacts import ArtifactCache
from telephony.speech.engine import SpeechEngine, SpeechError
from telephony.speech.external import ExternalEngine
from telephony.speech.models import stt_model_dir
from telephony.speech.whisper import WhisperEngine

ENGINES = ("whisper", "external")


def configured_engine(cache_dir: Path, env: Mapping[str, str] | None = None) -> SpeechEngine:
    env = os.environ if env is None else env
    kind = env.get("IOC_STT_ENGINE", "whisper")
    language = env.get("IOC_STT_LANGUAGE", "vi")
    if kind == "whisper":
        return WhisperEngine(model_dir=stt_model_dir(ArtifactCache(cache_dir)), language=language)
    if kind == "external":
        url = env.get("IOC_STT_EXTERNAL_URL", "")
        if not url.startswith(("ws://", "wss://")):
            raise SpeechError(f"IOC_STT_EXTERNAL_URL must be a ws:// or wss:// URL, got {url!r}")
        return ExternalEngine(url=url, language=language)
    raise SpeechError(f"IOC_STT_ENGINE must be one of {', '.join(ENGINES)}, got {kind!r}")
