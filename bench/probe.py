"""What a phase cost besides time: CPU by process group, and PostgreSQL connections opened."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench import cpu, pgdb
from bench.stats import Cpu


@dataclass
class Probe:
    """`start()` before the measured part, `stop()` after it.

    app_pid/tree: whose CPU is "the app" (this process, or a server and its workers).
    """

    dsn: str
    app_pid: int
    tree: bool
    _cpu: cpu.Snapshot | None = None
    _sessions: int = 0

    @classmethod
    def in_process(cls, dsn: str) -> Probe:
        return cls(dsn=dsn, app_pid=os.getpid(), tree=False)

    async def start(self) -> None:
        self._sessions = await pgdb.sessions_opened(self.dsn)
        self._cpu = cpu.snapshot(self.app_pid, tree=self.tree)

    async def stop(self) -> tuple[Cpu, int]:
        assert self._cpu is not None, "start() first"
        used = cpu.between(self._cpu, cpu.snapshot(self.app_pid, tree=self.tree))
        # The connection start() used is counted once it closed; stop()'s own is not yet.
        opened = max(0, await pgdb.sessions_opened(self.dsn) - self._sessions - 1)
        return used, opened
