"""The project's own Asterisk: built into the cache, started, driven, stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ioc_core.artifacts import ArtifactCache, mounts_under
from ioc_core.config import Settings
from telephony.asterisk.chroot import ensure_chroot
from telephony.asterisk.process import AsteriskProcess

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
def chroot_root() -> Path:
    # The real cache (IOC_CACHE_DIR): built once (about a minute), reused by later runs.
    return ensure_chroot(ArtifactCache(Settings.from_env().cache_dir))


@pytest.fixture
def asterisk(chroot_root: Path, tmp_path: Path) -> Iterator[AsteriskProcess]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path / "asterisk")
    try:
        yield proc
    finally:
        proc.stop()


def test_start_status_cli_stop(asterisk: AsteriskProcess) -> None:
    pid = asterisk.start()
    assert asterisk.start() == pid  # already running: the same process
    status = asterisk.status()
    assert status.running and status.pid == pid and "Asterisk 22" in status.version
    assert "System uptime" in asterisk.cli("core show uptime")
    assert mounts_under(asterisk.root), "/proc and /dev are bound while it runs"
    asterisk.stop()
    assert not asterisk.status().running
    assert mounts_under(asterisk.root) == [], "nothing stays mounted inside the cache"
    asterisk.stop()  # stopping a stopped Asterisk is fine


def test_stale_artifact_with_mounts_is_not_deleted(tmp_path: Path) -> None:
    """Deleting a chroot with /dev bound inside would delete the host's device nodes."""
    assert "/proc" in mounts_under(Path("/proc"))
    assert mounts_under(tmp_path) == []
