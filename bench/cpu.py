"""Who burns the CPU during a phase: the hub, PostgreSQL, the load generator (from /proc).

Linux only; on other systems every figure is NaN and the benchmark still runs.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass, field
from pathlib import Path

from bench.stats import Cpu

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class _Proc:
    comm: str
    ppid: int
    cpu_s: float
    reaped_s: float  # CPU of its children that exited and were waited for


@dataclass(frozen=True)
class Snapshot:
    app_s: float
    postgres_s: float
    children_s: float  # reaped children of this process (wrk, the open-loop generator)
    busy: float  # jiffies, all CPUs
    total: float
    interrupts: float  # jiffies in irq + softirq (loopback TCP is largely softirq work)
    app_pids: frozenset[int] = frozenset()
    procs: dict[int, _Proc] = field(default_factory=dict)


def _read_proc(pid: int) -> _Proc | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    return _Proc(
        comm=comm,
        ppid=int(rest[1]),
        cpu_s=(int(rest[11]) + int(rest[12])) / _TICK,
        reaped_s=(int(rest[13]) + int(rest[14])) / _TICK,
    )


def _processes() -> dict[int, _Proc]:
    out: dict[int, _Proc] = {}
    if not _PROC.is_dir():
        return out
    for entry in _PROC.iterdir():
        if entry.name.isdigit() and (p := _read_proc(int(entry.name))) is not None:
            out[int(entry.name)] = p
    return out


def _tree(root: int, procs: dict[int, _Proc]) -> frozenset[int]:
    """`root` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p.ppid, []).append(pid)
    found, stack = set(), [root]
    while stack:
        pid = stack.pop()
        if pid in procs:
            found.add(pid)
        stack.extend(children.get(pid, ()))
    return frozenset(found)


def _machine() -> tuple[float, float, float]:
    try:
        fields = [int(x) for x in (_PROC / "stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return math.nan, math.nan, math.nan
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return float(total - idle), float(total), float(fields[5] + fields[6])


def snapshot(app_pid: int, *, tree: bool) -> Snapshot:
    """`tree`: count the app's descendants too (a server with worker processes)."""
    procs = _processes()
    pids = _tree(app_pid, procs) if tree else frozenset({app_pid} & procs.keys())
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, total, interrupts = _machine()
    return Snapshot(
        app_s=sum(procs[p].cpu_s for p in pids) if pids else math.nan,
        # Backends that ended during the phase (pool churn) are in the postmaster's reaped time.
        postgres_s=sum(p.cpu_s + p.reaped_s for p in procs.values() if p.comm == "postgres"),
        children_s=usage.ru_utime + usage.ru_stime,
        busy=busy,
        total=total,
        interrupts=interrupts,
        app_pids=pids,
        procs=procs,
    )


def _top_others(a: Snapshot, b: Snapshot, wall_s: float, limit: int = 3) -> str:
    """The biggest other consumers, in % of one CPU (interrupts included)."""
    me = os.getpid()
    spent: dict[str, float] = {"irq+softirq": (b.interrupts - a.interrupts) / _TICK}
    for pid, p in b.procs.items():
        if pid in b.app_pids or p.comm == "postgres" or pid == me or p.ppid == me:
            continue
        before = a.procs.get(pid)
        used = p.cpu_s - (before.cpu_s if before and before.comm == p.comm else 0.0)
        name = f"{p.comm}[{pid}]"
        spent[name] = spent.get(name, 0.0) + used
    ranked = sorted(spent.items(), key=lambda kv: -kv[1])[:limit]
    top = [(name, s) for name, s in ranked if s > 0.01 * wall_s]
    return ", ".join(f"{name} {100 * s / wall_s:.0f}%" for name, s in top)


def between(a: Snapshot, b: Snapshot) -> Cpu:
    span = b.total - a.total  # jiffies of all CPUs
    if not span > 0:
        return Cpu()
    app, pg, gen = b.app_s - a.app_s, b.postgres_s - a.postgres_s, b.children_s - a.children_s
    other = max(0.0, (b.busy - a.busy) / _TICK - app - pg - gen)
    wall_s = span / _TICK / max(1, os.cpu_count() or 1)
    return Cpu(
        app_s=app,
        postgres_s=pg,
        loadgen_s=gen,
        other_s=other,
        machine_busy_pct=100 * (b.busy - a.busy) / span,
        other_pct=100 * other * _TICK / span,
        top_other=_top_others(a, b, wall_s),
    )
