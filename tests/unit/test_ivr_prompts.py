"""Prompts for real: espeak-ng and sox (Debian packages the project installs) make them."""

from __future__ import annotations

import json
import os
import subprocess
import wave
from collections.abc import Mapping
from pathlib import Path

import pytest

from telephony.ivr import prompts
from telephony.ivr.prompts import PromptToolMissing, ensure_prompts, media_uri

ALL = {f"{lang}/{name}" for lang in prompts.LANGUAGES for name in prompts.catalog(lang)}


def _format(path: Path) -> tuple[int, int, int, float]:
    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        return rate, w.getnchannels(), w.getsampwidth(), w.getnframes() / rate


def test_the_translation_files_match_and_vietnamese_has_its_diacritics() -> None:
    vi, en = prompts.catalog("vi"), prompts.catalog("en")
    assert set(vi) == set(en)
    for name, text in vi.items():
        assert not text.isascii(), f"vi {name} reads like English or lost its diacritics"
        assert text.strip() and en[name].strip()


def test_media_uri_names_the_language_folder() -> None:
    assert media_uri("welcome", "vi") == "sound:ioc/vi/welcome"


def test_every_prompt_is_made_once_as_8khz_mono_16bit_speech(tmp_path: Path) -> None:
    target = tmp_path / "sounds"
    report = ensure_prompts(target)
    assert set(report["generated"]) == ALL and report["unchanged"] == []
    for key in ALL:
        rate, channels, width, seconds = _format(target / f"{key}.wav")
        assert (rate, channels, width) == (8000, 1, 2), key
        assert 0.5 < seconds < 30, key
    # Asterisk runs as another user inside the chroot: everything must be readable.
    assert (target / "vi" / "welcome.wav").stat().st_mode & 0o777 == 0o644
    assert (target / "vi").stat().st_mode & 0o777 == 0o755
    stamp = (target / "vi" / "welcome.wav").stat().st_mtime_ns

    again = ensure_prompts(target)
    assert set(again["unchanged"]) == ALL
    assert again["generated"] == again["recorded"] == again["removed"] == []
    assert (target / "vi" / "welcome.wav").stat().st_mtime_ns == stamp
    assert not list(target.rglob(".tmp-*")), "no temporary files left behind"


def test_only_changed_texts_are_spoken_again_and_dropped_prompts_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sounds"
    ensure_prompts(target)
    before = (target / "vi" / "welcome.wav").read_bytes()
    real = prompts.catalog

    def edited(language: str) -> Mapping[str, str]:
        texts = dict(real(language))
        del texts["goodbye"]
        if language == "vi":
            texts["welcome"] = "Xin kính chào quý vị đã gọi đến tổng đài 1022."
        return texts

    monkeypatch.setattr(prompts, "catalog", edited)
    report = ensure_prompts(target)
    assert report["generated"] == ["vi/welcome"]
    assert report["removed"] == ["en/goodbye", "vi/goodbye"]
    assert (target / "vi" / "welcome.wav").read_bytes() != before
    assert not (target / "vi" / "goodbye.wav").exists()
    manifest = json.loads((target / "manifest.json").read_text())
    assert set(manifest) == ALL - {"vi/goodbye", "en/goodbye"}


def _tone(path: Path, *options: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sox", "-n", *options, str(path), "synth", "1.5", "sine", "440"], check=True)


def test_a_recorded_prompt_replaces_the_synthetic_one(tmp_path: Path) -> None:
    target, recorded = tmp_path / "sounds", tmp_path / "recorded"
    ensure_prompts(target, recorded)  # a recorded_dir without files is fine
    studio = recorded / "vi" / "welcome.wav"
    _tone(studio, "-r", "44100", "-c", "2", "-b", "16")  # a studio file: converted
    phone = recorded / "en" / "closed.wav"
    _tone(phone, "-r", "8000", "-c", "1", "-b", "16")  # already right: copied as is

    report = ensure_prompts(target, recorded)
    assert sorted(report["recorded"]) == ["en/closed", "vi/welcome"]
    assert report["generated"] == []
    rate, channels, width, seconds = _format(target / "vi" / "welcome.wav")
    assert (rate, channels, width) == (8000, 1, 2) and seconds == pytest.approx(1.5, abs=0.01)
    assert (target / "en" / "closed.wav").read_bytes() == phone.read_bytes()
    assert ensure_prompts(target, recorded)["recorded"] == []  # unchanged recordings: no work

    _tone(studio, "-r", "16000", "-c", "1", "-b", "16")  # a new take
    assert ensure_prompts(target, recorded)["recorded"] == ["vi/welcome"]

    studio.unlink()  # the recording withdrawn: synthetic speech again
    assert ensure_prompts(target, recorded)["generated"] == ["vi/welcome"]


def test_a_damaged_manifest_only_costs_a_regeneration(tmp_path: Path) -> None:
    target = tmp_path / "sounds"
    ensure_prompts(target)
    (target / "manifest.json").write_text("{not json")
    assert set(ensure_prompts(target)["generated"]) == ALL


@pytest.mark.parametrize(("keep", "missing"), [(["sox"], "espeak-ng"), (["espeak-ng"], "sox")])
def test_a_missing_tool_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: list[str], missing: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in keep:
        (bin_dir / tool).symlink_to(f"/usr/bin/{tool}")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(PromptToolMissing) as caught:
        ensure_prompts(tmp_path / "sounds")
    assert f"apt-get install {missing}" in str(caught.value)
    assert caught.value.error_id == "prompt-tool-missing"
    assert caught.value.details["debian_package"] == missing


def test_an_announcement_is_spoken_once_per_text_and_old_ones_go(tmp_path: Path) -> None:
    text = "Xin chào, đây là tổng đài 1 1 4 gọi lại cuộc gọi của quý vị lúc 14 giờ 05."
    uri = prompts.announcement(text, "vi", tmp_path)
    assert uri.startswith("sound:ioc/vi/dyn/")
    (made,) = (tmp_path / "vi" / "dyn").glob("*.wav")
    with wave.open(str(made)) as w:
        assert (w.getframerate(), w.getnchannels()) == (8000, 1) and w.getnframes() > 8000
    stamp = made.stat().st_mtime_ns
    assert prompts.announcement(text, "vi", tmp_path) == uri  # cached: not spoken again
    assert made.stat().st_mtime_ns == stamp
    # A day later the greeting is gone when the next one is made.
    old = made.stat().st_mtime - prompts.KEEP_DYNAMIC_S - 60
    os.utime(made, (old, old))
    other = prompts.announcement("Hello, this is the 1 1 4 hotline.", "vi", tmp_path)
    assert other != uri and not made.exists()
