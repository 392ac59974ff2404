"""The project's own Asterisk: built into the cache, started, driven, stopped by PID."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ioc_core.artifacts import mounts_under
from telephony.ari.client import AriClient
from telephony.asterisk.chroot import PACKAGES
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render
from telephony.asterisk.process import AsteriskProcess
from tests.helpers import wait_until
from tests.sip.sipp import SCENARIOS, run_sipp

pytestmark = pytest.mark.asterisk
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def asterisk(chroot_root: Path, tmp_path: Path) -> Iterator[AsteriskProcess]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path / "asterisk")
    try:
        yield proc
    finally:
        proc.stop()


def test_start_status_cli_stop(asterisk: AsteriskProcess) -> None:
    ensure_secrets(asterisk.state_dir)
    settings = AsteriskSettings.from_env(asterisk.state_dir)
    config = render(settings.placeholders())
    pid = asterisk.start(config)
    assert asterisk.start(config) == pid  # already running: the same process
    assert asterisk.log_problems() == [], "a clean start: no ERROR or WARNING in the log"
    ari = f"http://127.0.0.1:{settings.http_port}/ari/asterisk/info"
    assert _get(ari, settings.ari_user, settings.ari_password) == 200
    assert _get(ari, settings.ari_user, "wrong") == 401
    status = asterisk.status()
    assert status.running and status.pid == pid and "Asterisk 22" in status.version
    assert "System uptime" in asterisk.cli("core show uptime")
    assert mounts_under(asterisk.root), "/proc and /dev are bound while it runs"
    asterisk.stop()
    assert not asterisk.status().running
    assert mounts_under(asterisk.root) == [], "nothing stays mounted inside the cache"
    asterisk.stop()  # stopping a stopped Asterisk is fine


@pytest.fixture(scope="module")
def switchboard(
    chroot_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AsteriskProcess]:
    proc = AsteriskProcess(root=chroot_root, state_dir=tmp_path_factory.mktemp("switchboard"))
    ensure_secrets(proc.state_dir)
    proc.start(render(AsteriskSettings.from_env(proc.state_dir).placeholders()))
    try:
        yield proc
    finally:
        proc.stop()


def _sipp(*args: str) -> subprocess.CompletedProcess[str]:
    """One call from the carrier's address (127.0.0.1 is the default trunk IP)."""
    return run_sipp(AsteriskSettings.from_env(Path(tempfile.mkdtemp())).sip_port, *args)


async def test_an_emergency_call_reaches_its_queue_even_with_the_app_down(
    switchboard: AsteriskProcess,
) -> None:
    # No Stasis app is connected: Stasis() fails and the dialplan falls back to the queue.
    done = await asyncio.to_thread(_sipp, "-sn", "uac", "-s", "114", "-d", "1000")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    queue_log = switchboard.log_dir / "queue_log"
    entered = "|emergency-114|NONE|ENTERQUEUE|"
    await wait_until(lambda: entered in queue_log.read_text(), 5, "ENTERQUEUE 114")


async def test_the_stasis_app_sees_an_emergency_call_first_then_hands_it_to_the_queue(
    switchboard: AsteriskProcess,
) -> None:
    settings = AsteriskSettings.from_env(switchboard.state_dir)
    ari = AriClient(
        base_url=f"http://127.0.0.1:{settings.http_port}",
        user=settings.ari_user,
        password=settings.ari_password,
        app="ioc",
    )
    seen: list[Mapping[str, Any]] = []

    async def handler(event: Mapping[str, Any]) -> None:
        if event["type"] == "StasisStart":
            seen.append(event)
            await ari.continue_in_dialplan(event["channel"]["id"])

    task = asyncio.create_task(ari.run(handler))
    try:
        await asyncio.wait_for(ari.connected.wait(), 10)
        done = await asyncio.to_thread(_sipp, "-sn", "uac", "-s", "115", "-d", "500")
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await ari.close()
    assert [e["args"][:2] for e in seen] == [["emergency", "115"]]
    assert seen[0]["channel"]["caller"]["number"] == "sipp"
    # Asterisk's logger thread writes queue_log after the fact: poll, don't read once.
    queue_log = switchboard.log_dir / "queue_log"
    await wait_until(lambda: "|emergency-115|" in queue_log.read_text(), 5, "ENTERQUEUE 115")


def test_a_number_that_is_not_a_hotline_is_refused(switchboard: AsteriskProcess) -> None:
    done = _sipp("-sf", str(SCENARIOS / "uac_expect_404.xml"), "-s", "999")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _get(url: str, user: str, password: str) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_every_placeholder_is_filled(tmp_path: Path) -> None:
    ensure_secrets(tmp_path)
    files = render(AsteriskSettings.from_env(tmp_path).placeholders())
    assert "modules.conf" in files and "http.conf" in files
    assert all("@{" not in text for text in files.values())
    assert "${EXTEN}" in files["extensions.conf"]  # Asterisk's own variables pass through
    assert "bindaddr = 127.0.0.1" in files["http.conf"]  # loopback only
    secrets = (tmp_path / "secrets.json").stat().st_mode & 0o777
    assert secrets == 0o600


def test_production_image_installs_what_the_chroot_installs() -> None:
    dockerfile = (ROOT / "docker" / "asterisk" / "Dockerfile").read_text()
    assert "FROM debian:sid" in dockerfile
    for package in PACKAGES:
        assert f" {package} " in dockerfile or f" {package}\n" in dockerfile, package


def test_render_for_the_container(tmp_path: Path) -> None:
    env = {**os.environ, "IOC_DATA_DIR": str(tmp_path / "data")}
    out = tmp_path / "etc"
    done = subprocess.run(
        [sys.executable, "-m", "ioc_core.cli", "asterisk", "render", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "modules.conf").exists() and "@{" not in (out / "ari.conf").read_text()


def test_stale_artifact_with_mounts_is_not_deleted(tmp_path: Path) -> None:
    """Deleting a chroot with /dev bound inside would delete the host's device nodes."""
    assert "/proc" in mounts_under(Path("/proc"))
    assert mounts_under(tmp_path) == []
