"""Shared fixtures of the integration tests that run the project's Asterisk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ioc_core.artifacts import ArtifactCache
from ioc_core.config import Settings
from telephony.asterisk.chroot import ensure_chroot


@pytest.fixture(scope="session")
def chroot_root() -> Path:
    """The Asterisk chroot: the real cache (IOC_CACHE_DIR; built once, about a minute), or
    IOC_TEST_ASTERISK_ROOT — a private copy, to run beside another Asterisk (two instances
    must not share a chroot: each binds its own /etc/asterisk over it). Ports come from
    IOC_ASTERISK_* through AsteriskSettings."""
    if root := os.environ.get("IOC_TEST_ASTERISK_ROOT"):
        return Path(root)
    return ensure_chroot(ArtifactCache(Settings.from_env().cache_dir))
