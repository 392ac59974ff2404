"""Offline speech-to-text with the bundled Whisper base model, and espeak-ng text-to-speech,
through the `ioc` command as an operator would run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from telephony.speech.models import WHISPER_BASE_SHA256, ensure_whisper_base


def _ioc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioc_core.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def model() -> Path:
    return ensure_whisper_base(ArtifactCache(Settings.from_env().cache_dir))


def test_the_model_is_assembled_once_and_checksummed(model: Path) -> None:
    assert (model / "model.bin").stat().st_size > 100_000_000
    assert WHISPER_BASE_SHA256[:12] and (model / "tokenizer.json").exists()
    again = ensure_whisper_base(ArtifactCache(Settings.from_env().cache_dir))
    assert again == model  # reused, not rebuilt


def test_speech_to_text_of_an_english_phone_caller(model: Path, tmp_path: Path) -> None:
    """The visitor (English) line: espeak-ng speech at phone quality (8 kHz) is understood well
    enough for its keywords; the Vietnamese figures are model-bound (see the README)."""
    said = _ioc(
        "tts",
        "say",
        "There is a fire in the market. Please send a fire truck.",
        "--language",
        "en",
        "-o",
        str(tmp_path / "call.wav"),
    )
    assert said.returncode == 0, said.stderr
    silence = tmp_path / "silence.wav"
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", str(silence), "trim", "0", "2"], check=True
    )
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio")
    done = _ioc(
        "stt",
        "transcribe",
        "--language",
        "en",
        str(tmp_path / "call.wav"),
        str(silence),
        str(junk),
        str(tmp_path / "missing.wav"),
    )
    assert done.returncode == 1, done.stderr  # some files failed: said, not hidden
    call, quiet, bad, missing = (json.loads(line) for line in done.stdout.splitlines())
    assert {"file", "text", "engine", "model", "duration_s", "rtf"} <= set(call)
    assert call["engine"] == "faster-whisper" and call["model"] == model.name
    assert "fire" in call["text"].lower() and "market" in call["text"].lower()
    assert 3 < call["duration_s"] < 8 and call["rtf"] < 2
    assert quiet["text"] == ""  # silence is an empty result, not an invention
    assert "not audio" in bad["error"] and "no such file" in missing["error"]


def test_text_to_speech_in_vietnamese_is_8k_phone_audio(tmp_path: Path) -> None:
    out = tmp_path / "loi-chao.wav"
    done = _ioc("tts", "say", "Tổng đài 1022 xin kính chào quý vị.", "-o", str(out))
    assert done.returncode == 0, done.stderr
    info = subprocess.run(["soxi", str(out)], capture_output=True, text=True, check=True).stdout
    assert "8000" in info and "1" in info.split("Channels")[1].splitlines()[0]
    assert out.stat().st_size > 16_000  # more than a second of speech
