"""Processes the hub starts in the background (Asterisk, Rasa): started in their own session
with their PID on file, awaited until they answer, and asked whether they still live."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def alive(pid: int) -> bool:
    """Our own child lingers as a zombie after exiting (kill(pid, 0) still succeeds) until it
    is reaped; when another `ioc` process started it, init reaps it and kill() tells."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def spawn(
    cmd: Sequence[str],
    *,
    log: Path,
    pid_file: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`cmd` in a session of its own (it outlives this `ioc` command, and its whole group can
    be signalled), its output appended to `log`, no stdin; its PID written to `pid_file`."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    return proc


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    timeout_s: float,
    interval_s: float,
    what: str,
) -> bool:
    """Polls `ready` until it holds (True) or `timeout_s` passes (False: the caller stops
    the process); RuntimeError, naming `what` (the process and its log), if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if ready():
            return True
        time.sleep(interval_s)
    return False
