"""Voice prompts: texts from `locales/<lang>.json`, spoken offline by espeak-ng, resampled by
sox into the format Asterisk plays without transcoding work (8 kHz mono 16-bit WAV, what
format_wav calls slin), and replaceable one by one by recorded files.

Layout on disk (`target_dir` is bound over the chroot's `/usr/share/asterisk/sounds/ioc`,
see telephony/asterisk/process.py): `target_dir/<lang>/<name>.wav`, played through ARI as
`sound:ioc/<lang>/<name>` (`media_uri`). The language is part of the path on purpose:
Asterisk's own language fallback (`sounds/<chanlang>/<file>`, then `sounds/<file>`) would
otherwise play a prompt in whatever language the channel happens to have.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Mapping
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import Any

from ioc_core.errors import IocError

logger = logging.getLogger(__name__)

LANGUAGES = ("vi", "en")  # Vietnamese first
# espeak-ng voice per language: `vi` is the northern voice (see `espeak-ng --voices=vi`).
# Korean is not a prompt language: it speaks test audio for the Vosk engine, whose only model
# on PyPI is Korean (tests, bench/speech.py).
VOICES = {"vi": "vi", "en": "en", "ko": "ko"}
SOUNDS_SUBDIR = "ioc"  # under Asterisk's sounds folder; process.py binds target_dir there
SAMPLE_RATE = 8000
MANIFEST = "manifest.json"
# Bump when the generation recipe changes (voice, speed, sox effects): every prompt is redone.
RECIPE = "espeak-ng -s 150 | sox 8k mono s16; v1"
_TOOL_PACKAGES = {"espeak-ng": "espeak-ng", "sox": "sox"}


class PromptToolMissing(IocError):
    """A program that makes prompts is not installed; the message names the Debian package."""

    status = 500
    error_id = "prompt-tool-missing"


class PromptFailed(IocError):
    status = 500
    error_id = "prompt-generation-failed"


@cache
def catalog(language: str) -> Mapping[str, str]:
    """Prompt name -> text for `language` (KeyError-free: unknown languages are an error)."""
    if language not in LANGUAGES:
        raise ValueError(f"no prompts for language {language!r}; known: {', '.join(LANGUAGES)}")
    text = resources.files("telephony.ivr.locales").joinpath(f"{language}.json").read_text("utf-8")
    data: dict[str, str] = json.loads(text)
    return data


def media_uri(prompt: str, language: str) -> str:
    """What ARI's `play` needs for a prompt (Asterisk appends the format's extension)."""
    return f"sound:{SOUNDS_SUBDIR}/{language}/{prompt}"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = _TOOL_PACKAGES[name]
        raise PromptToolMissing(
            f"{name} is needed to make the voice prompts: apt-get install {package}",
            details={"tool": name, "debian_package": package},
        )
    return path


def _run(args: list[str], *, stdin: bytes | None = None) -> bytes:
    done = subprocess.run(args, input=stdin, capture_output=True, timeout=60, check=False)  # noqa: S603
    if done.returncode != 0:
        raise PromptFailed(
            f"{Path(args[0]).name} failed ({done.returncode}): "
            + done.stderr.decode(errors="replace").strip()[-500:],
            details={"command": args[0]},
        )
    return done.stdout


def _sox_to_slin(source: str, target: Path, *, stdin: bytes | None = None) -> None:
    """Resample to 8 kHz mono signed 16-bit WAV; `source` "-" reads a WAV from `stdin`."""
    src = ["-t", "wav", "-"] if source == "-" else [source]
    rate = str(SAMPLE_RATE)
    out = ["-r", rate, "-c", "1", "-b", "16", "-e", "signed-integer", str(target)]
    _run([_tool("sox"), "-V1", *src, *out], stdin=stdin)


def speak(text: str, language: str, target: Path) -> None:
    # Text through stdin (`--stdin`, `-b 1` = UTF-8): never parsed as options, and diacritics
    # arrive intact. espeak-ng writes 22.05 kHz; Asterisk's .wav is 8 kHz, so sox resamples.
    speech = _run(
        [_tool("espeak-ng"), "-v", VOICES[language], "-s", "150", "-b", "1", "--stdin", "--stdout"],
        stdin=text.encode(),
    )
    _sox_to_slin("-", target, stdin=speech)


def _is_slin(path: Path) -> bool:
    try:
        with wave.open(str(path), "rb") as w:
            return (
                w.getframerate() == SAMPLE_RATE
                and w.getnchannels() == 1
                and w.getsampwidth() == 2
                and w.getcomptype() == "NONE"
            )
    except (wave.Error, EOFError, OSError):
        return False  # not plain PCM (e.g. A-law, float): sox converts it


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def _write_atomically(target: Path, make: Callable[[Path], object]) -> None:
    """`make(tmp_path)` writes the file; it replaces `target` only once complete, so Asterisk
    never plays half a prompt while `ioc setup` regenerates."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o755)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".wav")
    os.close(fd)
    try:
        make(Path(tmp))
        # Asterisk runs as the chroot's `asterisk` user: the file must be world-readable.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


DYNAMIC = "dyn"  # target_dir/<lang>/dyn/<digest>.wav: announcements made at run time
KEEP_DYNAMIC_S = 24 * 3600


def announcement(text: str, language: str, target_dir: Path) -> str:
    """A dynamic announcement (a call-back's greeting with the time of the missed call, say):
    spoken by espeak-ng once per distinct text and kept a day; returns its media URI.
    Blocking (espeak-ng and sox, ~0.2 s): run it in a thread."""
    name = announcement_name(text, language)
    folder = target_dir / language / DYNAMIC
    target = folder / f"{name}.wav"
    if not target.is_file():
        _prune(folder, KEEP_DYNAMIC_S)
        _write_atomically(target, partial(speak, text, language))
    return media_uri(f"{DYNAMIC}/{name}", language)


def announcement_name(text: str, language: str) -> str:
    """The file name (without .wav) an announcement of `text` has under <lang>/dyn/."""
    return _digest("tts", RECIPE, VOICES[language], text)[:24]


def _prune(folder: Path, older_than_s: float) -> None:
    if not folder.is_dir():
        return
    cutoff = time.time() - older_than_s
    for old in folder.glob("*.wav"):
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < cutoff:
                old.unlink()


def ensure_prompts(target_dir: Path, recorded_dir: Path | None = None) -> dict[str, Any]:
    """Make `target_dir/<lang>/<name>.wav` for every prompt of every language.

    A recorded `recorded_dir/<lang>/<name>.wav` (IOC_PROMPTS_DIR; the caller reads the
    environment) wins over speech synthesis; it is copied, or converted when it is not already
    8 kHz mono 16-bit. Work is skipped when the text (or the recording's bytes) and the recipe
    are unchanged since last time (a manifest of hashes in `target_dir`); prompts that left the
    translation files are removed. Returns what was done, per `<lang>/<name>`.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    target_dir.chmod(0o755)
    manifest_path = target_dir / MANIFEST
    try:
        old: dict[str, str] = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        old = {}
    new: dict[str, str] = {}
    report: dict[str, Any] = {"generated": [], "recorded": [], "unchanged": [], "removed": []}
    for language in LANGUAGES:
        for name, text in sorted(catalog(language).items()):
            key = f"{language}/{name}"
            target = target_dir / language / f"{name}.wav"
            recorded = recorded_dir / language / f"{name}.wav" if recorded_dir else None
            if recorded is not None and recorded.is_file():
                digest = _digest("recorded", recorded.read_bytes())
                kind = "recorded"
            else:
                recorded = None
                digest = _digest("tts", RECIPE, VOICES[language], text)
                kind = "generated"
            new[key] = digest
            if old.get(key) == digest and target.is_file():
                report["unchanged"].append(key)
                continue
            if recorded is None:
                _write_atomically(target, partial(speak, text, language))
            elif _is_slin(recorded):
                _write_atomically(target, partial(shutil.copyfile, recorded))
            else:
                _write_atomically(target, partial(_sox_to_slin, str(recorded)))
            report[kind].append(key)
            # Written after each prompt: an interrupted run keeps what it already made.
            _save_manifest(manifest_path, {**old, **new})
    for key in sorted(set(old) - set(new)):
        (target_dir / f"{key}.wav").unlink(missing_ok=True)
        report["removed"].append(key)
    _save_manifest(manifest_path, new)
    if report["generated"] or report["recorded"] or report["removed"]:
        logger.info(
            "prompts: %d generated, %d recorded, %d removed, %d unchanged",
            len(report["generated"]),
            len(report["recorded"]),
            len(report["removed"]),
            len(report["unchanged"]),
        )
    return report


def _save_manifest(path: Path, entries: Mapping[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(entries.items())), indent=1))
    os.replace(tmp, path)
