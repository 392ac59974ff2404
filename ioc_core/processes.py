"""Processes the hub starts in the background (Asterisk, Rasa): is a PID still alive."""

from __future__ import annotations

import os


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
