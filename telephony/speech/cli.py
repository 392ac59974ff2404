"""`ioc stt transcribe FILE...`, `ioc tts say TEXT -o OUT.wav`, and the `models` setup step."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from telephony.ivr.prompts import PromptToolMissing, speak
from telephony.settings import variables
from telephony.speech.engine import SpeechError
from telephony.speech.factory import configured_engine
from telephony.speech.models import stt_model_dir


def setup_models(settings: Settings) -> dict[str, Any]:
    try:
        return {
            "status": "ready",
            "stt_model": str(stt_model_dir(ArtifactCache(settings.cache_dir))),
        }
    except SpeechError as exc:
        print(f"ioc setup models: {exc}", file=sys.stderr)
        return {"status": "unavailable", "reason": str(exc)}


async def _transcribe(files: list[Path], language: str, settings: Settings) -> int:
    engine = configured_engine(settings.cache_dir)
    failed = 0
    for path in files:
        try:
            t = await engine.transcribe_file(path, language)
            out: dict[str, Any] = {
                "file": str(path),
                "text": t.text,
                "engine": t.engine,
                "model": t.model,
                "duration_s": t.duration_s,
                "rtf": t.rtf,
            }
        except SpeechError as exc:
            failed += 1
            out = {"file": str(path), "error": str(exc)}
        print(json.dumps(out, ensure_ascii=False), flush=True)
    return 1 if failed else 0


def _stt(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    try:
        return asyncio.run(_transcribe([Path(f) for f in args.files], args.language, settings))
    except SpeechError as exc:
        print(f"ioc stt: {exc}", file=sys.stderr)
        return 2


def _tts(args: argparse.Namespace) -> int:
    try:
        speak(args.text, args.language, Path(args.output))
    except PromptToolMissing as exc:
        print(f"ioc tts: {exc}", file=sys.stderr)
        return 2
    return 0


def register(sub: Any) -> None:
    stt = sub.add_parser("stt", help="speech to text (offline)")
    stt.add_argument("action", choices=["transcribe"])
    stt.add_argument("files", nargs="+", help="audio files (wav, mp3, ogg, ...)")
    stt.add_argument("--language", default=variables()("IOC_STT_LANGUAGE"))
    stt.set_defaults(fn=_stt)
    tts = sub.add_parser("tts", help="text to speech with espeak-ng (8 kHz WAV)")
    tts.add_argument("action", choices=["say"])
    tts.add_argument("text")
    tts.add_argument("-o", "--output", required=True)
    tts.add_argument("--language", choices=["vi", "en"], default="vi")
    tts.set_defaults(fn=_tts)
