"""The Asterisk chroot: Debian sid with Asterisk 22, built with debootstrap into the cache.

The same two inputs (suite + package list) are the production image (`docker/asterisk/`):
`FROM debian:sid` + `apt-get install` of these packages.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from ioc_core.artifacts import ArtifactCache

logger = logging.getLogger(__name__)

SUITE = "sid"
PACKAGES = (
    "asterisk",
    "asterisk-modules",
    "asterisk-core-sounds-en-wav",
    "asterisk-moh-opsound-wav",
    "procps",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BUILD_VERSION = "1"  # bump when the build steps below change


class ChrootUnavailable(RuntimeError):
    """Building is impossible here; the message says exactly what is missing."""


def missing_prerequisites() -> list[str]:
    missing = []
    if os.geteuid() != 0:
        missing.append("root (debootstrap and chroot need it)")
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        missing.append("debootstrap (apt-get install debootstrap)")
    return missing


def _ensure_debootstrap() -> str:
    path = shutil.which("debootstrap")
    if path:
        return path
    logger.info("installing debootstrap from Debian's packages")
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "debootstrap"], check=True, stdout=subprocess.DEVNULL
    )
    found = shutil.which("debootstrap")
    if not found:
        raise ChrootUnavailable("apt-get did not provide debootstrap")
    return found


def build(into: Path, *, mirror: str) -> None:
    """debootstrap into `into/root`; about a minute and 0.6 GB."""
    debootstrap = _ensure_debootstrap()
    root = into / "root"
    subprocess.run(
        [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            mirror,
        ],
        check=True,
    )


def ensure_chroot(cache: ArtifactCache, *, mirror: str = DEFAULT_MIRROR) -> Path:
    """The chroot's root folder, built when absent or when its inputs changed."""
    if missing := missing_prerequisites():
        raise ChrootUnavailable("cannot build the Asterisk chroot: needs " + ", ".join(missing))
    inputs = {
        "suite": SUITE,
        "packages": ",".join(PACKAGES),
        "mirror": mirror,
        "build": BUILD_VERSION,
    }
    return cache.ensure("asterisk-chroot", inputs, lambda into: build(into, mirror=mirror)) / "root"
