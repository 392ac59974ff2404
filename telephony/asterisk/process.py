"""Running Asterisk in its chroot: start in the background with its PID tracked, wait until it
has fully booted, stop by PID, report status, run CLI commands.

Facts this relies on (measured, see ../shared/notes/platform-facts.md):
- Asterisk needs /proc and /dev inside the chroot, and the host's /etc/hosts (without it every
  call logs getaddrinfo errors and ARI externalMedia receives nothing);
- it must run as the chroot's `asterisk` user (`-U root` fails: Asterisk drops capabilities
  and can no longer read its 0640 configs), and its run/log/spool/lib dirs must belong to it;
- the chroot shares the host's network, so 127.0.0.1 works both ways.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ioc_core.artifacts import mounts_under
from ioc_core.processes import alive, spawn, wait_ready
from telephony.asterisk.config import write

logger = logging.getLogger(__name__)

OWNED_DIRS = (
    "/run/asterisk",
    "/var/log/asterisk",
    # cdr_custom writes its call records there and does not make the folder itself.
    "/var/log/asterisk/cdr-custom",
    "/var/spool/asterisk",
    "/var/lib/asterisk",
    "/etc/asterisk",
)
SYSTEM_MOUNTS = (("proc", "proc"), ("/dev", "dev"))  # (source, target inside the chroot)


@dataclass(frozen=True)
class Status:
    running: bool
    pid: int | None
    version: str = ""


class AsteriskProcess:
    def __init__(self, *, root: Path, state_dir: Path) -> None:
        self.root = root
        self.state_dir = state_dir
        self.pid_file = state_dir / "asterisk.pid"
        self.log_file = state_dir / "asterisk.console.log"
        # This instance's configuration and logs, bound over the chroot's own folders.
        self.etc_dir = state_dir / "etc"
        self.log_dir = state_dir / "log"
        self.spool_dir = state_dir / "spool"  # recordings: monitor/, recording/
        self._log_offset = 0  # where this run's part of messages.log begins

    # ------------------------------------------------------------------ chroot plumbing

    def _chroot(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["chroot", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _mount(self) -> None:
        mounted = set(mounts_under(self.root))
        # The IVR prompts (telephony/ivr/prompts.py), played as `sound:ioc/<lang>/<name>`;
        # made before the start by `ioc setup`, an empty folder otherwise. Recordings (answered
        # calls: MixMonitor into spool/monitor; messages: spool/recording) stay with the
        # instance's data, never inside the shared cached chroot.
        sounds = self.state_dir / "sounds"
        mounts = (
            *SYSTEM_MOUNTS,
            (str(self.etc_dir), "etc/asterisk"),
            (str(self.log_dir), "var/log/asterisk"),
            (str(sounds), "usr/share/asterisk/sounds/ioc"),
            (str(self.spool_dir / "monitor"), "var/spool/asterisk/monitor"),
            (str(self.spool_dir / "recording"), "var/spool/asterisk/recording"),
        )
        for source, _target in mounts[len(SYSTEM_MOUNTS) :]:
            Path(source).mkdir(parents=True, exist_ok=True)
        for source, target in mounts:
            point = self.root / target
            if str(point.resolve()) in mounted:
                continue
            point.mkdir(parents=True, exist_ok=True)
            cmd = (
                ["mount", "-t", "proc", "proc", str(point)]
                if source == "proc"
                else ["mount", "--bind", source, str(point)]
            )
            subprocess.run(cmd, check=True)

    def _unmount(self) -> None:
        # Deepest first; lazy so a straggling process cannot keep /dev bound inside the cache.
        for point in sorted(mounts_under(self.root), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)

    def _prepare(self) -> None:
        self._mount()
        shutil.copyfile("/etc/hosts", self.root / "etc/hosts")
        owned = " ".join(OWNED_DIRS)
        result = self._chroot("sh", "-c", f"mkdir -p {owned} && chown -R asterisk:asterisk {owned}")
        if result.returncode != 0:
            raise RuntimeError(f"preparing the chroot failed: {result.stderr.strip()}")

    # ------------------------------------------------------------------ lifecycle

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def start(self, config: Mapping[str, str], *, timeout_s: float = 60) -> int:
        """Start unless running (with `config`: file name -> text for /etc/asterisk);
        returns the PID once Asterisk has fully booted."""
        if (pid := self.pid()) is not None:
            return pid
        write(self.etc_dir, config)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        messages = self.log_dir / "messages.log"
        self._log_offset = messages.stat().st_size if messages.exists() else 0
        self._prepare()
        proc = spawn(
            ["chroot", str(self.root), "asterisk", "-f", "-U", "asterisk", "-G", "asterisk"],
            log=self.log_file,
            pid_file=self.pid_file,
        )
        booted = wait_ready(
            proc,
            lambda: (
                self._chroot("asterisk", "-rx", "core waitfullybooted", timeout=10).returncode == 0
            ),
            timeout_s=timeout_s,
            interval_s=0.2,
            what=f"asterisk (see {self.log_file})",
        )
        if booted:
            logger.info("asterisk running, pid %d", proc.pid)
            return proc.pid
        self.stop()
        raise TimeoutError(f"asterisk did not boot within {timeout_s:.0f}s; see {self.log_file}")

    def stop(self, *, timeout_s: float = 15) -> None:
        """Graceful stop through the CLI, then SIGTERM and SIGKILL to our PID only."""
        pid = self.pid()
        if pid is not None:
            self._chroot("asterisk", "-rx", "core stop now", timeout=10)
            deadline = time.monotonic() + timeout_s
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and self.pid() is not None:
                    os.kill(pid, sig)
                while self.pid() is not None and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self.pid() is None:
                    break
                deadline = time.monotonic() + 5
        self.pid_file.unlink(missing_ok=True)
        self._unmount()

    def status(self) -> Status:
        pid = self.pid()
        if pid is None:
            return Status(running=False, pid=None)
        out = self.cli("core show version")
        return Status(running=True, pid=pid, version=out.strip())

    def log_problems(self) -> list[str]:
        """ERROR and WARNING lines this run wrote to the log: a clean start has none."""
        log = self.log_dir / "messages.log"
        if not log.exists():
            return []
        with open(log, "rb") as fh:
            fh.seek(self._log_offset)
            text = fh.read().decode(errors="replace")
        return [line for line in text.splitlines() if " ERROR[" in line or " WARNING[" in line]

    def cli(self, command: str) -> str:
        result = self._chroot("asterisk", "-rx", command)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip() or result.stdout.strip())
        return result.stdout
