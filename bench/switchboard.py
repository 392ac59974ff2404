"""`python -m bench.switchboard [--quick] [--out results.json]`: the switchboard against bare
Asterisk, measured in the same run on the same Asterisk.

What runs
---------
One Asterisk from the cached chroot (or `--chroot`/IOC_BENCH_CHROOT: two Asterisks must never
share a chroot, so use a private copy when the test suite may run meanwhile), with the
project's rendered configuration on its own ports (IOC_ASTERISK_* or the bench's defaults,
48088/45038/45060/33000-39999/44573) plus one bench-only context appended to the rendered
extensions.conf (dialplans/etc is not touched): trunk number 9114 -> `[bench-bare]`, which is
`[queue]`'s 114 path (Answer, Queue(emergency-114,c), music on hold) without the FastAGI
caller look-up and without Stasis. That is the bare baseline.

The app is `python -m bench.switchboard_app`, a process of its own with the objects
`telephony.role` builds (Core on SQLite, or PostgreSQL on a fresh database with
`--database postgres`; CallStore; `build_switchboard(menu=load_menu())`;
`caller_lookup_server`), automatic call-backs off. It runs for the app paths and is stopped
for the bare ones, so a bare figure is Asterisk alone. App paths: 114 (caller look-up over
FastAGI, Stasis router, continue, queue with music on hold) and 1022 (look-up, Answer, Stasis
IVR playing prompts; callers hang up in the menu).

Callers are SIPp (one process per run) from 127.0.0.1, the trunk's address, each call from its
own mobile number, talking G.711 mu-law like a phone: Asterisk's Answer() waits for the
caller's first voice frame (up to 500 ms), so a silent caller would measure that wait.
Agents (phase c) are pyVoIP `AgentPhone`s in this process.

Phases (each row: bare, app, and app/bare)
------------------------------------------
a. Setup rate: each number at increasing rates for a few seconds, calls held `--setup-hold-ms`
   after the 200 OK (the caller says 0.2 s of audio, then is silent). Reported: failed calls,
   SIPp retransmissions, INVITE -> 200 OK p50/p95 (from SIPp's message log), the rate at which
   200 OKs came back, CPU, the app's event-loop lag, and whether the calls table caught up
   (every call recorded and ended within `--settle-s` after the run). The capacity is the
   highest rate with no failed call, no retransmission, no channel left over and, for the
   app, a table that caught up and no warning logged by the app (a caller look-up refused or
   timed out serves the caller with the dialplan's defaults). A path stops climbing after a
   level with more than 5% failed calls or two unclean levels in a row (media too). The 114
   path's 200 OK comes after the look-up and Stasis (Answer() is in [queue]);
   1022's right after the look-up (its Answer() comes before the IVR).
b. Concurrent media calls: N calls set up at `--media-ramp` calls/s, each held `--media-hold-s`
   with RTP both ways (SIPp loops mu-law audio; Asterisk plays music on hold or prompts).
   During a window when all are up, `pjsip show channelstats` is read twice: packets Asterisk
   sent and received per channel per second, against 50 (20 ms G.711): the real-time check.
   "clean" = no failed call, no retransmission, all N up, Asterisk sending >= 99% of real time
   (not judged on 1022: the IVR is silent while it waits for keys).
c. INVITE -> agent ringing: five `AgentPhone`s (1001-1005) logged in by the switchboard's desk
   (`desk.login`, all queues), ringing without answering; sequential calls (one SIPp, one call
   at a time, each held `--latency-hold-ms`, so agents are free). From the INVITE's first send
   time in SIPp's message log (wall clock, microseconds) to the phone's `ringing_wall` (when
   Asterisk's INVITE reached the phone's SIP receive loop; same host, same clock). Bare:
   9114 -> Queue(emergency-114); app: 114 through the look-up, Stasis and back to the same
   queue. The difference of p50/p95 is the software-added delay.

Limits
------
SIPp, Asterisk, the app (and PostgreSQL when used) share this machine's CPUs (2 here): a
figure near the top is where the machine ran out, not necessarily Asterisk or the app. The
CPU columns (% of one core, from /proc) show who used what; "other" is everything else on
the machine (other jobs): a high value means the run was perturbed, so compare bare and app
rows of the same run only. The app runs without its HTTP API (in production it shares the
primary worker's event loop with it) and on an in-process event bus. Ringing times include
Asterisk's Answer() waiting for the caller's first accepted voice frame (strict RTP), the same
on both paths. Benchmarks print figures and compare; they never assert.

Running it: root (mount, chroot) and SIPp (`sip-tester`); `--quick` takes about a minute,
the full run about 6-7 minutes on 2 cores. `--workdir DIR` keeps every log (Asterisk's, the
app's, SIPp's message logs); `--phases ac` runs some phases only; `--help` lists the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import pgdb, sipp
from bench.guard import cancellable_by_sigterm
from bench.server import server_env
from bench.stats import finite, percentile
from ioc_core.artifacts import ArtifactCache, mounts_under
from ioc_core.config import Settings
from ioc_core.runtime import prepare_database
from telephony.asterisk.chroot import ensure_chroot
from telephony.asterisk.config import AsteriskSettings, ensure_secrets, render
from telephony.asterisk.process import AsteriskProcess
from telephony.ivr.prompts import ensure_prompts
from tests.sip.agent_phone import AgentPhone

logger = logging.getLogger("bench.switchboard")

TARGET_RATIO = 0.9  # app capacity >= 0.9 x bare (setup rate and media calls)
TARGET_ADDED_P95_MS = 100.0  # INVITE -> agent ringing, app minus bare, p95
BARE_NUMBER = "9114"
PATHS = {"bare": BARE_NUMBER, "114": "114", "1022": "1022"}
PACKETS_PER_S = 50.0  # G.711, 20 ms packets
REAL_TIME = 0.99
OVERLOADED = 0.05  # failed share above which a path stops climbing
REPO = Path(__file__).resolve().parents[1]
PHONE_RTP = (41000, 41999)  # outside Asterisk's range and the tests' phones (40000-40999)
MEDIA_PORT = 50000  # SIPp's per-call RTP ports start here

# Ports of the bench's Asterisk unless IOC_ASTERISK_* says otherwise: never the defaults a
# developer's `ioc run` or the test suite uses.
BENCH_PORTS = {
    "IOC_ASTERISK_HTTP_PORT": "48088",
    "IOC_ASTERISK_AMI_PORT": "45038",
    "IOC_ASTERISK_SIP_PORT": "45060",
    "IOC_ASTERISK_RTP_START": "33000",
    "IOC_ASTERISK_RTP_END": "39999",
    "IOC_ASTERISK_AGI_PORT": "44573",
}

ASTERISK_ENV = ("IOC_RECORD_CALLS", "IOC_ARI_PASSWORD", "IOC_AMI_PASSWORD")

BENCH_DIALPLAN = f"""
; ---------------------------------------------------------------- bench/switchboard.py
; Appended by the benchmark to its own rendered copy (never in dialplans/etc): the bare
; baseline. [queue]'s 114 path without the caller look-up (FastAGI) and without Stasis.
[from-trunk](+)
exten => {BARE_NUMBER},1,Goto(bench-bare,114,1)

[bench-bare]
exten => 114,1,Set(__IOC_SERVICE=114)
 same => n,Set(QUEUE_PRIO=10)
 same => n,Answer()
 same => n,Queue(emergency-114,c)
 same => n,Hangup()
"""


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    quick: bool
    out: Path | None
    chroot: Path | None
    database: str
    phases: str
    setup_rates: tuple[int, ...]
    setup_seconds: float
    setup_hold_ms: int
    setup_paths: tuple[str, ...]
    media_levels: tuple[int, ...]
    media_hold_s: float
    media_ramp: float
    media_paths: tuple[str, ...]
    media_1022_levels: tuple[int, ...]
    latency_calls: int
    latency_hold_ms: int
    settle_s: float
    workdir: Path | None


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"a list of whole numbers, like 50,100: {text}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("numbers must not be negative")
    return values


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m bench.switchboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run (~1 min)")
    p.add_argument("--out", type=Path, help="also write the results here (JSON)")
    p.add_argument(
        "--chroot",
        type=Path,
        default=Path(os.environ["IOC_BENCH_CHROOT"]) if os.environ.get("IOC_BENCH_CHROOT")
        else None,
        help="Asterisk chroot to run (default: the cached one; IOC_BENCH_CHROOT). It must not "
        "be in use by another Asterisk",
    )  # fmt: skip
    default_db = (
        "postgres" if os.environ.get("IOC_DATABASE_URL", "").startswith("postgresql") else "sqlite"
    )
    p.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default=default_db,
        help="the app's store: embedded SQLite, or a fresh PostgreSQL database on "
        "IOC_BENCH_POSTGRES_DSN's server, dropped afterwards (default: postgres when "
        "IOC_DATABASE_URL is a PostgreSQL URL)",
    )
    p.add_argument("--phases", default="abc", help="which phases: a setup, b media, c ringing")
    p.add_argument("--setup-rates", type=_ints, help="calls/s (default 50,100,150,200,250)")
    p.add_argument("--setup-seconds", type=float, help="seconds per rate (default 4)")
    p.add_argument("--setup-hold-ms", type=int, default=500, help="call length after the 200")
    p.add_argument("--setup-paths", default="bare,114,1022", help="of bare,114,1022")
    p.add_argument("--media-levels", type=_ints, help="concurrent calls (default 100,200,300)")
    p.add_argument("--media-hold-s", type=float, help="seconds each media call lasts (25)")
    p.add_argument("--media-ramp", type=float, default=50.0, help="calls/s while ramping up")
    p.add_argument("--media-paths", default="bare,114", help="of bare,114,1022 (every level)")
    p.add_argument(
        "--media-1022-levels", type=_ints, help="1022 (IVR) levels besides (default 200)"
    )
    p.add_argument("--latency-calls", type=int, help="sequential calls per path (default 40)")
    p.add_argument("--latency-hold-ms", type=int, default=800, help="each call's length")
    p.add_argument("--settle-s", type=float, help="how long the calls table may lag (20)")
    p.add_argument("--workdir", type=Path, help="keep logs and SIPp files here (default: temp)")
    a = p.parse_args(argv)
    quick = bool(a.quick)

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    paths = tuple(x.strip() for x in a.setup_paths.split(",") if x.strip())
    media_paths = tuple(x.strip() for x in a.media_paths.split(",") if x.strip())
    for name in (*paths, *media_paths):
        if name not in PATHS:
            p.error(f"unknown path {name!r}: bare, 114 or 1022")
    return Options(
        quick=quick,
        out=a.out,
        chroot=a.chroot,
        database=a.database,
        phases=a.phases,
        setup_rates=pick(a.setup_rates, (50, 100, 150, 200, 250), (50, 100)),
        setup_seconds=pick(a.setup_seconds, 4.0, 2.0),
        setup_hold_ms=a.setup_hold_ms,
        setup_paths=paths,
        media_levels=pick(a.media_levels, (100, 200, 300), (20,)),
        media_hold_s=pick(a.media_hold_s, 25.0, 8.0),
        media_ramp=a.media_ramp,
        media_paths=media_paths,
        media_1022_levels=pick(a.media_1022_levels, (200,), ()),
        latency_calls=pick(a.latency_calls, 40, 8),
        latency_hold_ms=a.latency_hold_ms,
        settle_s=pick(a.settle_s, 20.0, 10.0),
        workdir=a.workdir,
    )


# ---------------------------------------------------------------- CPU (from /proc)

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _postgres_cpu_s() -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        if text[text.index("(") + 1 : text.rindex(")")] == "postgres":
            rest = text[text.rindex(")") + 2 :].split()
            total += (int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])) / _TICK
    return total


def _machine() -> tuple[float, float]:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return math.nan, math.nan
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return float(total - idle), float(total)


@dataclass(frozen=True)
class CpuMark:
    at: float
    by: dict[str, float]  # who -> CPU seconds so far
    busy: float  # jiffies, all CPUs
    total: float


def cpu_mark(pids: dict[str, int | None], *, postgres: bool) -> CpuMark:
    by = {name: sipp.proc_cpu_s(pid) for name, pid in pids.items()}
    if postgres:
        by["postgres"] = _postgres_cpu_s()
    busy, total = _machine()
    return CpuMark(at=time.monotonic(), by=by, busy=busy, total=total)


def cpu_between(a: CpuMark, b: CpuMark, *, sipp_s: float | None = None) -> dict[str, float]:
    """% of one core for each process; busy% of all CPUs; other% (of all CPUs): what the
    machine spent beyond the processes named (other jobs, the kernel's softirq work)."""
    wall = b.at - a.at
    cpus = os.cpu_count() or 1
    if wall <= 0:
        return {}
    out = {name: 100 * max(0.0, b.by[name] - a.by.get(name, 0.0)) / wall for name in b.by}
    if sipp_s is not None:
        out["sipp"] = 100 * sipp_s / wall
    span = b.total - a.total
    if span > 0:
        busy_s = (b.busy - a.busy) / _TICK
        known = sum(out.values()) * wall / 100
        out["busy"] = 100 * (b.busy - a.busy) / span
        out["other"] = max(0.0, 100 * (busy_s - known) / (wall * cpus))
    return {k: round(v, 1) for k, v in out.items()}


def per_call(a: CpuMark, b: CpuMark, calls: int) -> dict[str, float]:
    """CPU milliseconds per call of the app and Asterisk (and PostgreSQL)."""
    if calls <= 0:
        return {}
    return {
        f"{name}_ms_per_call": round(1000 * (b.by[name] - a.by.get(name, 0.0)) / calls, 2)
        for name in ("app", "asterisk", "postgres")
        if name in b.by
    }


# ---------------------------------------------------------------- Asterisk


_CHANNEL_STATS = re.compile(
    r"(?P<name>\S+)\s+\d+:\d\d:\d\d\s+\S+\s+(?P<rx>\d+)\s+(?P<rxlost>\d+)\s+\d+\s+"
    r"(?P<rxjitter>[\d.]+)\s+(?P<tx>\d+)\s+(?P<txlost>\d+)\s+\d+\s+(?P<txjitter>[\d.]+)"
)


@dataclass(frozen=True)
class ChannelStats:
    at: float
    rows: dict[str, dict[str, float]]  # channel -> rx, rxlost, rxjitter, tx, txlost, txjitter


class Pbx:
    """The bench's Asterisk: the project's configuration plus BENCH_DIALPLAN."""

    def __init__(self, root: Path, state_dir: Path, env: dict[str, str]) -> None:
        self.proc = AsteriskProcess(root=root, state_dir=state_dir)
        ensure_secrets(state_dir, env)  # the bench's own instance: its setup step
        self.settings = AsteriskSettings.from_env(state_dir, env)
        self.root = root

    def start(self) -> int:
        if busy := mounts_under(self.root):
            raise RuntimeError(
                f"the chroot {self.root} is in use (mounted: {busy[0]}, ...): another Asterisk "
                "runs from it. Give the bench its own copy (--chroot / IOC_BENCH_CHROOT)."
            )
        for port, kind in (
            (self.settings.http_port, socket.SOCK_STREAM),
            (self.settings.ami_port, socket.SOCK_STREAM),
            (self.settings.agi_port, socket.SOCK_STREAM),
            (self.settings.sip_port, socket.SOCK_DGRAM),
        ):
            with socket.socket(socket.AF_INET, kind) as s:
                # As the servers do: connections in TIME_WAIT do not make a port busy.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    raise RuntimeError(
                        f"port {port} is taken: another Asterisk or bench runs (set "
                        "IOC_ASTERISK_*_PORT to move the bench)"
                    ) from None
        ensure_prompts(self.proc.state_dir / "sounds")
        files = render(self.settings.placeholders())
        files["extensions.conf"] += BENCH_DIALPLAN
        try:
            return self.proc.start(files)
        except BaseException:  # a failed start may leave it mounted (or running)
            self.proc.stop()
            raise

    def stop(self) -> list[str]:
        """Stop; returns mount points left under the chroot (should be none)."""
        self.proc.stop()
        return mounts_under(self.root)

    @property
    def pid(self) -> int | None:
        return self.proc.pid()

    async def cli(self, command: str) -> str:
        return await asyncio.to_thread(self.proc.cli, command)

    async def channels(self) -> int:
        out = await self.cli("core show channels count")
        found = re.search(r"(\d+) active channel", out)
        return int(found.group(1)) if found else -1

    async def channel_stats(self) -> ChannelStats:
        out = await self.cli("pjsip show channelstats")
        at = time.monotonic()
        rows: dict[str, dict[str, float]] = {}
        for line in out.splitlines():
            if (m := _CHANNEL_STATS.search(line)) is not None:
                rows[m.group("name")] = {
                    k: float(v) for k, v in m.groupdict().items() if k != "name"
                }
        return ChannelStats(at=at, rows=rows)

    async def settle(self, timeout_s: float) -> int:
        """Wait until no channel is left; hang up stragglers after `timeout_s`. Returns how
        many had to be hung up."""
        deadline = time.monotonic() + timeout_s
        left = await self.channels()
        while left > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            left = await self.channels()
        if left > 0:
            await self.cli("channel request hangup all")
            await asyncio.sleep(1.0)
        return max(0, left)


def media_figures(a: ChannelStats, b: ChannelStats) -> dict[str, float]:
    """Packets per channel per second against real time, over channels up at both readings."""
    dt = b.at - a.at
    both = [name for name in b.rows if name in a.rows]
    if dt <= 0 or not both:
        return {"channels": float(len(both))}
    tx = [(b.rows[n]["tx"] - a.rows[n]["tx"]) / dt / PACKETS_PER_S for n in both]
    rx = [(b.rows[n]["rx"] - a.rows[n]["rx"]) / dt / PACKETS_PER_S for n in both]
    lost = sum(b.rows[n]["rxlost"] - a.rows[n]["rxlost"] for n in both)
    return {
        "channels": float(len(both)),
        "window_s": round(dt, 2),
        "tx_realtime_pct": round(100 * sum(tx) / len(tx), 1),
        "tx_min_pct": round(100 * min(tx), 1),
        "rx_realtime_pct": round(100 * sum(rx) / len(rx), 1),
        "rx_min_pct": round(100 * min(rx), 1),
        "rx_lost": lost,
        "rx_jitter_max": max(b.rows[n]["rxjitter"] for n in both),
    }


# ---------------------------------------------------------------- the app process


class App:
    """`python -m bench.switchboard_app` as a child, driven by JSON lines; stopped by PID."""

    def __init__(self, env: dict[str, str], state_dir: Path, log: Path) -> None:
        self.env, self.state_dir, self.log = env, state_dir, log
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.start_s: list[float] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def start(self) -> None:
        if self.pid is not None:
            return
        started = time.monotonic()
        log = await asyncio.to_thread(self.log.open, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.switchboard_app", "--state-dir", str(self.state_dir),
                env=self.env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, cwd=str(REPO), start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        try:
            ready = await self._read(60)
        except Exception:
            await self.stop()
            raise
        if not ready.get("ready"):
            await self.stop()
            raise RuntimeError(f"the app did not start: {ready}; see {self.log}")
        self.starts += 1
        self.start_s.append(time.monotonic() - started)

    async def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"the app exited ({self.proc.returncode}); see {self.log}")
        data: dict[str, Any] = json.loads(line)
        return data

    async def request(self, cmd: str, timeout_s: float = 30, **fields: Any) -> dict[str, Any]:
        if self.proc is None or self.proc.stdin is None or self.pid is None:
            raise RuntimeError("the app is not running")
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await self._read(timeout_s)
        if "error" in reply:
            raise RuntimeError(f"app command {cmd}: {reply['error']}")
        return reply

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.write(b'{"cmd": "stop"}\n')
            await proc.stdin.drain()
            proc.stdin.close()
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
            try:
                await asyncio.wait_for(proc.wait(), 15 if sig is None else 5)
                return
            except TimeoutError:
                continue


# ---------------------------------------------------------------- results


@dataclass
class Row:
    phase: str  # setup | media | ringing
    path: str  # bare | 114 | 1022
    level: float  # calls/s, concurrent calls, or sequential calls
    calls: int = 0
    ok: int = 0
    failed: int = 0
    retrans: int = 0
    rtd_p50: float = math.nan  # INVITE -> 200 OK, ms
    rtd_p95: float = math.nan
    cpu: dict[str, float] = field(default_factory=dict)
    lag: dict[str, float] = field(default_factory=dict)  # the app's event loop
    app_warnings: dict[str, int] = field(default_factory=dict)  # logged by the app, by kind
    table: dict[str, Any] = field(default_factory=dict)  # calls table after the run
    media: dict[str, float] = field(default_factory=dict)
    ringing: dict[str, float] = field(default_factory=dict)
    achieved: float = math.nan  # calls/s SIPp managed (setup) or channels up (media)
    hung_up: int = 0  # channels left after the run (hung up by the bench)
    failures: dict[str, int] = field(default_factory=dict)
    clean: bool = False
    note: str = ""


@dataclass
class Run:
    meta: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def app_kept_up(row: Row) -> bool:
    """Bare rows: nothing to judge. App rows: every call in the table and ended in time, and
    nothing went wrong inside the app (a refused or timed-out caller look-up is a caller
    served with the dialplan's defaults)."""
    return bool(row.table.get("kept_up", True)) and not row.app_warnings


def _q(values: Sequence[float], q: float) -> float:
    return percentile(sorted(values), q)


# ---------------------------------------------------------------- the bench


class Climb:
    """A path stops climbing after a level with more than OVERLOADED failed calls, or after
    two unclean levels in a row: higher levels would only take time (and leave backlogs)."""

    def __init__(self) -> None:
        self.unclean: dict[str, int] = {}
        self.stopped: set[str] = set()

    def goes_on(self, path: str) -> bool:
        return path not in self.stopped

    def saw(self, row: Row) -> None:
        self.unclean[row.path] = 0 if row.clean else self.unclean.get(row.path, 0) + 1
        if self.unclean[row.path] >= 2 or (row.calls and row.failed > OVERLOADED * row.calls):
            self.stopped.add(row.path)


class Bench:
    def __init__(self, opts: Options, folder: Path, pbx: Pbx, app: App, postgres: bool) -> None:
        self.opts, self.folder, self.pbx, self.app = opts, folder, pbx, app
        self.postgres = postgres
        self.run = Run()
        self.prefix = 0
        self.target = f"127.0.0.1:{pbx.settings.sip_port}"
        speech = pbx.proc.state_dir / "sounds" / "vi" / "welcome.wav"
        self.talk = sipp.make_audio(folder / "talk.ul", speech, 10.0)  # looped: a talker
        self.burst = sipp.make_audio(folder / "burst.ul", speech, 0.2)  # once: "hello?"

    def _next(self) -> int:
        self.prefix = (self.prefix + 1) % 100
        return self.prefix

    async def use_app(self, on: bool) -> None:
        if on:
            await self.app.start()
        else:
            await self.app.stop()

    def pids(self, sipp_pid: int | None = None) -> dict[str, int | None]:
        out: dict[str, int | None] = {"asterisk": self.pbx.pid, "app": self.app.pid}
        out["bench"] = os.getpid()
        if sipp_pid is not None:
            out["sipp"] = sipp_pid
        return out

    async def app_stats(self, row: Row) -> None:
        stats = await self.app.request("stats")
        row.lag, row.app_warnings = stats["lag"], stats["warnings"]

    async def table_after(self, prefix: int, expected: int) -> dict[str, Any]:
        """Wait until the calls table holds the run's `expected` calls (by their numbers), all
        ended; how long that took after the run, and what was there at the end."""
        started = time.monotonic()
        deadline = started + self.opts.settle_s
        last: dict[str, Any] = {}
        while True:
            last = await self.app.request("calls", ani_prefix=sipp.caller_number(prefix, 0)[:4])
            by = last.get("by_status", {})
            live = sum(n for status, n in by.items() if status != "ended")
            if (last["total"] >= expected and live == 0) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        waited = time.monotonic() - started
        by = last.get("by_status", {})
        live = sum(n for status, n in by.items() if status != "ended")
        kept_up = last.get("total", 0) >= expected and live == 0
        return {
            "recorded": last.get("total", 0),
            "expected": expected,
            "live": live,
            "by_status": by,
            "callbacks": last.get("callbacks", 0),
            "settled_s": round(waited, 2),
            "kept_up": kept_up,
        }

    # ------------------------------------------------------------ a. setup rate

    async def setup_phase(self) -> None:
        opts = self.opts
        climbing = Climb()
        for rate in opts.setup_rates:
            for path in opts.setup_paths:
                if not climbing.goes_on(path):
                    continue
                row = await self.setup_step(path, rate)
                climbing.saw(row)
                self.run.rows.append(row)
                logger.info(
                    "setup %s @%d/s: ok %d failed %d retrans %d p95 %s ms %s",
                    path, rate, row.ok, row.failed, row.retrans, _f(row.rtd_p95),
                    row.table.get("kept_up", ""),
                )  # fmt: skip

    async def setup_step(self, path: str, rate: int) -> Row:
        opts = self.opts
        await self.use_app(path != "bare")
        prefix = self._next()
        calls = max(1, int(rate * opts.setup_seconds))
        callers = self.folder / f"callers-{prefix:02d}.csv"
        sipp.write_callers(callers, prefix=prefix, count=calls)
        scenario = sipp.caller_scenario(hold_ms=opts.setup_hold_ms, audio=self.burst, loops=1)
        if self.app.pid is not None:
            await self.app.request("stats")
        before = cpu_mark(self.pids(), postgres=self.postgres)
        result = await sipp.run(
            name=f"setup-{path}-{rate}", folder=self.folder / f"run-{prefix:02d}-setup-{path}",
            target=self.target, service=PATHS[path], scenario=scenario, callers=callers,
            rate=rate, calls=calls, media_port=MEDIA_PORT,
            timeout_s=opts.setup_seconds + opts.setup_hold_ms / 1000 + 40,
        )  # fmt: skip
        after = cpu_mark(self.pids(), postgres=self.postgres)
        row = Row(phase="setup", path=path, level=rate)
        self._sipp_figures(row, result)
        row.cpu = cpu_between(before, after, sipp_s=result.cpu_s)
        row.cpu.update(per_call(before, after, result.created))
        row.achieved = round(result.answer_rate(), 1)
        if self.app.pid is not None:
            await self.app_stats(row)
            row.table = await self.table_after(prefix, result.created)
        row.hung_up = await self.pbx.settle(15)
        row.clean = result.clean and row.hung_up == 0 and app_kept_up(row)
        return row

    @staticmethod
    def _sipp_figures(row: Row, result: sipp.SippRun) -> None:
        row.calls, row.ok = result.created, result.successful
        row.failed, row.retrans = result.failed, result.retransmissions
        row.failures = result.failures
        if result.rtd_ms:
            row.rtd_p50 = _q(result.rtd_ms, 50)
            row.rtd_p95 = _q(result.rtd_ms, 95)
        if result.returncode not in (0, 1) or not result.created:
            row.note = f"sipp exit {result.returncode}: {result.output_tail[-300:]!r}"

    # ------------------------------------------------------------ b. media

    async def media_phase(self) -> None:
        opts = self.opts
        plan = [(level, path) for level in opts.media_levels for path in opts.media_paths]
        plan += [(level, "1022") for level in opts.media_1022_levels]
        climbing = Climb()
        for level, path in plan:
            if not climbing.goes_on(path):
                continue
            row = await self.media_step(path, level)
            climbing.saw(row)
            self.run.rows.append(row)
            logger.info(
                "media %s x%d: ok %d failed %d tx %s%% asterisk %s%%",
                path, level, row.ok, row.failed, row.media.get("tx_realtime_pct"),
                row.cpu.get("asterisk"),
            )  # fmt: skip

    async def media_step(self, path: str, level: int) -> Row:
        opts = self.opts
        await self.use_app(path != "bare")
        prefix = self._next()
        callers = self.folder / f"callers-{prefix:02d}.csv"
        sipp.write_callers(callers, prefix=prefix, count=level)
        hold_ms = int(opts.media_hold_s * 1000)
        scenario = sipp.caller_scenario(hold_ms=hold_ms, audio=self.talk)
        ramp_s = level / opts.media_ramp
        if self.app.pid is not None:
            await self.app.request("stats")
        sipp_pid: list[int] = []
        task = asyncio.create_task(
            sipp.run(
                name=f"media-{path}-{level}", folder=self.folder / f"run-{prefix:02d}-media-{path}",
                target=self.target, service=PATHS[path], scenario=scenario, callers=callers,
                rate=opts.media_ramp, calls=level, media_port=MEDIA_PORT,
                timeout_s=ramp_s + opts.media_hold_s + 40, on_start=sipp_pid.append,
            )
        )  # fmt: skip
        row = Row(phase="media", path=path, level=level)
        # All up: the ramp, then until the channel count stops growing (or 5 s more).
        await asyncio.sleep(ramp_s + 1.0)
        up, deadline = await self.pbx.channels(), time.monotonic() + 5
        while up < level and time.monotonic() < deadline and not task.done():
            await asyncio.sleep(0.5)
            up = await self.pbx.channels()
        window = min(15.0, opts.media_hold_s - ramp_s - 4.0)
        if window >= 1.0 and not task.done():
            pids = self.pids(sipp_pid[0] if sipp_pid else None)
            first = await self.pbx.channel_stats()
            before = cpu_mark(pids, postgres=self.postgres)
            await asyncio.sleep(window)
            after = cpu_mark(pids, postgres=self.postgres)
            second = await self.pbx.channel_stats()
            row.cpu = cpu_between(before, after)
            row.media = media_figures(first, second)
        else:
            row.note = "hold too short for a measuring window"
        result = await task
        self._sipp_figures(row, result)
        row.achieved = float(up)
        if self.app.pid is not None:
            await self.app_stats(row)
            row.table = await self.table_after(prefix, result.created)
        row.hung_up = await self.pbx.settle(15)
        real_time = path == "1022" or row.media.get("tx_realtime_pct", 0) >= 100 * REAL_TIME
        row.clean = (
            result.clean and up >= level and real_time and row.hung_up == 0 and app_kept_up(row)
        )
        return row

    # ------------------------------------------------------------ c. INVITE -> ringing

    async def ringing_phase(self) -> None:
        agents = list(self.pbx.settings.agents)[:5]
        phones = [
            AgentPhone(
                extension=ext,
                password=self.pbx.settings.agents[ext],
                server_port=self.pbx.settings.sip_port,
                rtp_range=PHONE_RTP,
                answer="manual",
            )
            for ext in agents
        ]
        started: list[AgentPhone] = []
        try:
            for phone in phones:
                await phone.astart()
                started.append(phone)
            await self.use_app(True)
            await self.app.request("login", extensions=agents)
            await asyncio.sleep(1.0)  # members' device states settle
            for path in ("114", "bare"):
                row = await self.ringing_step(path, phones)
                self.run.rows.append(row)
                logger.info("ringing %s: %s", path, row.ringing)
        finally:
            for phone in started:
                with contextlib.suppress(Exception):
                    await phone.astop()

    async def ringing_step(self, path: str, phones: list[AgentPhone]) -> Row:
        opts = self.opts
        await self.use_app(path != "bare")
        prefix = self._next()
        count = opts.latency_calls
        callers = self.folder / f"callers-{prefix:02d}.csv"
        sipp.write_callers(callers, prefix=prefix, count=count)
        period_ms = opts.latency_hold_ms + 300
        scenario = sipp.caller_scenario(hold_ms=opts.latency_hold_ms, audio=self.talk)
        if self.app.pid is not None:
            await self.app.request("stats")
        before = cpu_mark(self.pids(), postgres=self.postgres)
        result = await sipp.run(
            name=f"ringing-{path}", folder=self.folder / f"run-{prefix:02d}-ringing-{path}",
            target=self.target, service=PATHS[path], scenario=scenario, callers=callers,
            rate=1, rate_period_ms=period_ms, calls=count, limit=1, media_port=MEDIA_PORT,
            timeout_s=count * period_ms / 1000 + 40,
        )  # fmt: skip
        after = cpu_mark(self.pids(), postgres=self.postgres)
        await asyncio.sleep(0.5)  # the last CANCEL reaches the phone
        rang: dict[str, float] = {}  # caller number -> when the first phone rang
        for phone in phones:
            for call in phone.calls:
                at = call.ringing_wall.timestamp()
                rang[call.from_user] = min(at, rang.get(call.from_user, at))
        # Call n of the run is line n of the SEQUENTIAL injection file.
        sent = {sipp.caller_number(prefix, n - 1): at for n, at in result.invites.items()}
        delays = [(rang[number] - at) * 1000 for number, at in sent.items() if number in rang]
        row = Row(phase="ringing", path=path, level=count)
        self._sipp_figures(row, result)
        row.cpu = cpu_between(before, after, sipp_s=result.cpu_s)
        row.ringing = {
            "invites": len(sent),
            "rang": len(delays),
            "p50_ms": round(_q(delays, 50), 1),
            "p95_ms": round(_q(delays, 95), 1),
            "max_ms": round(max(delays), 1) if delays else math.nan,
            "min_ms": round(min(delays), 1) if delays else math.nan,
        }
        if self.app.pid is not None:
            await self.app_stats(row)
            row.table = await self.table_after(prefix, result.created)
        row.hung_up = await self.pbx.settle(15)
        row.clean = result.clean and len(delays) == count and app_kept_up(row)
        return row


# ---------------------------------------------------------------- output


def _f(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(app: float, bare: float) -> str:
    if not bare or math.isnan(bare) or math.isnan(app):
        return "-"
    return f"{app / bare:.2f}x"


def _rows(run: Run, phase: str, path: str | None = None) -> list[Row]:
    return [r for r in run.rows if r.phase == phase and (path is None or r.path == path)]


def capacity(run: Run, phase: str, path: str) -> float:
    """The highest level run clean (NaN when none was, 0 when the first was not)."""
    rows = sorted(_rows(run, phase, path), key=lambda r: r.level)
    if not rows:
        return math.nan
    best = 0.0
    for r in rows:
        if not r.clean:
            break
        best = r.level
    return best


def _top(run: Run, phase: str, path: str) -> float:
    return max((r.level for r in _rows(run, phase, path)), default=math.nan)


def compared(run: Run, phase: str, path: str) -> tuple[float, float, str]:
    """(app capacity, the bare capacity it is compared with, a caveat). For a path clean at
    the highest level it was tried at (1022's media runs at fewer levels), bare is capped at
    that level; a capacity equal to the highest level tried is only a lower bound."""
    app, bare = capacity(run, phase, path), capacity(run, phase, "bare")
    if math.isnan(app) or math.isnan(bare):
        return app, bare, ""
    app_top, bare_top = _top(run, phase, path), _top(run, phase, "bare")
    # Only a path that was clean at its highest level is compared at that level: one that
    # stopped climbing because it failed is compared with the whole bare capacity.
    base = min(bare, app_top) if app >= app_top else bare
    notes = []
    if base < bare:
        notes.append(f"{path} was tried up to {app_top:g} only")
    if app >= app_top or bare >= bare_top:
        which = (
            "both" if app >= app_top and bare >= bare_top else path if app >= app_top else "bare"
        )
        notes.append(f"{which}: clean at the highest level tried, a lower bound")
    return app, base, "; ".join(notes)


def _lag(r: Row) -> str:
    return f"{_f(r.lag.get('p99_ms'), 1)}/{_f(r.lag.get('max_ms'), 0)}" if r.lag else "-"


def _table(r: Row) -> str:
    if not r.table:
        return "-"
    t = r.table
    state = "ok" if t["kept_up"] else f"{t['live']} live"
    return f"{t['recorded']}/{t['expected']} {state} {t['settled_s']:.1f}s"


def _warned(r: Row) -> str:
    return "-" if r.path == "bare" else str(sum(r.app_warnings.values()))


def _cpu(r: Row) -> str:
    c = r.cpu
    return " / ".join(_f(c.get(k)) for k in ("asterisk", "app", "sipp")) + (
        f" / pg {_f(c.get('postgres'))}" if "postgres" in c else ""
    )


def summary(run: Run) -> list[str]:
    out = ["| measure | bare | app 114 | 114/bare | app 1022 | 1022/bare | target |"]
    out.append("|---|---|---|---|---|---|---|")
    for phase, label, unit in (
        ("setup", "setup rate, highest clean (calls/s)", ""),
        ("media", "concurrent media calls, highest clean", ""),
    ):
        if not _rows(run, phase):
            continue
        bare = capacity(run, phase, "bare")
        a114, b114, _ = compared(run, phase, "114")
        a1022, b1022, _ = compared(run, phase, "1022")
        out.append(
            f"| {label} | {_f(bare)}{unit} | {_f(a114)} | {_ratio(a114, b114)} | {_f(a1022)} | "
            f"{_ratio(a1022, b1022)} | >= {TARGET_RATIO}x |"
        )
    ring = {r.path: r for r in _rows(run, "ringing")}
    if "bare" in ring and "114" in ring:
        b, a = ring["bare"].ringing, ring["114"].ringing
        added50 = a.get("p50_ms", math.nan) - b.get("p50_ms", math.nan)
        added95 = a.get("p95_ms", math.nan) - b.get("p95_ms", math.nan)
        out.append(
            f"| INVITE -> agent ringing p50 / p95 (ms) | {_f(b.get('p50_ms'), 1)} / "
            f"{_f(b.get('p95_ms'), 1)} | {_f(a.get('p50_ms'), 1)} / {_f(a.get('p95_ms'), 1)} | "
            f"added {_f(added50, 1)} / {_f(added95, 1)} ms | - | - | added p95 <= "
            f"{TARGET_ADDED_P95_MS:.0f} ms |"
        )
    return out


def verdicts(run: Run) -> list[str]:
    lines = []
    for phase, label in (("setup", "setup rate"), ("media", "media calls")):
        for path in ("114", "1022"):
            app, bare, caveat = compared(run, phase, path)
            if math.isnan(app) or math.isnan(bare) or not bare:
                continue
            ok = app >= TARGET_RATIO * bare
            lines.append(
                f"{label}, {path}: {app:g} vs bare {bare:g} = {app / bare:.2f}x -> "
                f"{'MET' if ok else 'MISSED'} (target >= {TARGET_RATIO}x)"
                + (f" ({caveat})" if caveat else "")
            )
    ring = {r.path: r for r in _rows(run, "ringing")}
    if "bare" in ring and "114" in ring:
        added = ring["114"].ringing.get("p95_ms", math.nan) - ring["bare"].ringing.get(
            "p95_ms", math.nan
        )
        if not math.isnan(added):
            ok = added <= TARGET_ADDED_P95_MS
            lines.append(
                f"added delay INVITE -> ringing, p95: {added:.1f} ms -> "
                f"{'MET' if ok else 'MISSED'} (target <= {TARGET_ADDED_P95_MS:.0f} ms)"
            )
    return lines


def render_run(run: Run) -> str:
    m = run.meta
    out = [
        "# Switchboard benchmark: the app against bare Asterisk",
        "",
        "  " + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()),
        f"  CPUs: {m.get('cpu_count')}; store: {m.get('database')}; chroot: {m.get('chroot')};"
        f" SIP port {m.get('sip_port')}; load average before: {m.get('loadavg_before')}",
        "",
        "## Summary",
        "",
        *summary(run),
        "",
    ]
    setup = _rows(run, "setup")
    if setup:
        out += [
            "## a. Setup rate",
            "",
            "| calls/s | path | calls | failed | retrans | 200 OK p50 / p95 ms | achieved/s "
            "| CPU % asterisk / app / sipp | CPU ms/call asterisk / app | busy % | other % "
            "| app loop lag p99/max ms | calls table | app warnings | clean |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(setup, key=lambda r: (r.level, list(PATHS).index(r.path))):
            out.append(
                f"| {r.level:g} | {r.path} | {r.calls} | {r.failed} | {r.retrans} | "
                f"{_f(r.rtd_p50)} / {_f(r.rtd_p95)} | {_f(r.achieved)} | {_cpu(r)} | "
                f"{_f(r.cpu.get('asterisk_ms_per_call'), 2)} / "
                f"{_f(r.cpu.get('app_ms_per_call') if r.path != 'bare' else None, 1)} | "
                f"{_f(r.cpu.get('busy'))} | {_f(r.cpu.get('other'))} | {_lag(r)} | {_table(r)} | "
                f"{_warned(r)} | {'yes' if r.clean else 'no'} |"
            )
        out.append("")
    media = _rows(run, "media")
    if media:
        out += [
            "## b. Concurrent media calls",
            "",
            "| calls | path | failed | retrans | up | Asterisk sends % of real time (min) "
            "| receives % (min) | CPU % asterisk / app / sipp | busy % "
            "| other % | app loop lag p99/max ms | calls table | app warnings | clean |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(media, key=lambda r: (r.path == "1022", r.level, r.path != "bare")):
            md = r.media
            out.append(
                f"| {r.level:g} | {r.path} | {r.failed} | {r.retrans} | {_f(r.achieved)} | "
                f"{_f(md.get('tx_realtime_pct'), 1)} ({_f(md.get('tx_min_pct'), 0)}) | "
                f"{_f(md.get('rx_realtime_pct'), 1)} ({_f(md.get('rx_min_pct'), 0)}) | "
                f"{_cpu(r)} | {_f(r.cpu.get('busy'))} | "
                f"{_f(r.cpu.get('other'))} | {_lag(r)} | {_table(r)} | {_warned(r)} | "
                f"{'yes' if r.clean else 'no'} |"
            )
        out.append("")
    ring = _rows(run, "ringing")
    if ring:
        out += [
            "## c. INVITE -> agent ringing (sequential calls, 5 agents)",
            "",
            "| path | calls | rang | p50 ms | p95 ms | min / max ms | 200 OK p50 / p95 ms "
            "| app loop lag p99/max ms | calls table | app warnings |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ring:
            g = r.ringing
            out.append(
                f"| {r.path} | {r.calls} | {_f(g.get('rang'))} | {_f(g.get('p50_ms'), 1)} | "
                f"{_f(g.get('p95_ms'), 1)} | {_f(g.get('min_ms'), 1)} / {_f(g.get('max_ms'), 1)} "
                f"| {_f(r.rtd_p50)} / {_f(r.rtd_p95)} | {_lag(r)} | {_table(r)} | {_warned(r)} |"
            )
        out.append("")
    out += [
        "Columns: CPU in % of one core over the run (setup, ringing) or the measuring window "
        "(media); busy % and other % of all CPUs (other: processes not named, e.g. other jobs). "
        "calls table: calls recorded / placed, and when all had ended (after SIPp finished). "
        "app warnings: WARNING records the app logged during the run (kinds below). "
        "clean: no failed call, no retransmission, nothing left over, table caught up, "
        "no app warning "
        f"(media: all up and Asterisk sending >= {100 * REAL_TIME:.0f}% of real time, "
        "not judged for 1022's IVR).",
        "",
        "## Targets",
        "",
        *(f"- {line}" for line in verdicts(run)),
        "",
        *(f"Note: {n}" for n in run.notes),
        *(f"Note: {r.phase} {r.path} {r.level:g}: {r.note}" for r in run.rows if r.note),
        *_warning_notes(run),
        f"Total run time: {m.get('total_seconds', '?')} s",
    ]
    return "\n".join(out)


def _warning_notes(run: Run) -> list[str]:
    lines = []
    for r in run.rows:
        if r.app_warnings:
            top = sorted(r.app_warnings.items(), key=lambda kv: -kv[1])[:3]
            kinds = "; ".join(f"{n} x {text!r}" for text, n in top)
            lines.append(f"Note: app warnings, {r.phase} {r.path} {r.level:g}: {kinds}")
    return lines


_LOG_NOISE = re.compile(r"^\[[^]]*\] |\[\d+\](\[C-[0-9a-f]+\])?|\d{10}\.\d+|0\d{9}")


def log_kinds(lines: Sequence[str], limit: int = 3) -> str:
    """Asterisk's warning lines grouped by what they say (ids, numbers and times removed)."""
    counts: dict[str, int] = {}
    for line in lines:
        key = _LOG_NOISE.sub("", line).strip()[:140]
        counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return "; ".join(f"{n} x {text!r}" for text, n in top)


def write_json(run: Run, path: Path) -> None:
    data = {
        "meta": run.meta,
        "rows": [asdict(r) for r in run.rows],
        "capacity": {
            phase: {p: capacity(run, phase, p) for p in PATHS} for phase in ("setup", "media")
        },
        "targets": {
            "ratio": TARGET_RATIO,
            "added_p95_ms": TARGET_ADDED_P95_MS,
            "verdicts": verdicts(run),
        },
        "notes": run.notes,
    }
    path.write_text(json.dumps(finite(data), indent=2, default=str, allow_nan=False) + "\n")


# ---------------------------------------------------------------- entry point


@contextlib.asynccontextmanager
async def _database(kind: str, data_dir: Path) -> AsyncIterator[str]:
    if kind == "postgres":
        async with pgdb.fresh_database() as name:
            yield pgdb.sqlalchemy_url(name)
    else:
        yield f"sqlite+aiosqlite:///{data_dir / 'ioc.sqlite3'}"


@contextlib.contextmanager
def _workdir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="ioc-bench-sb-") as tmp:
        yield Path(tmp)


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "sipp": sipp.version()}


async def _start(pbx: Pbx) -> int:
    """Pbx.start in a thread; cancelled meanwhile, the Asterisk it started is stopped."""
    starting = asyncio.ensure_future(asyncio.to_thread(pbx.start))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        done = await asyncio.gather(starting, return_exceptions=True)
        if not isinstance(done[0], BaseException):  # it started: stop it (never otherwise:
            await asyncio.to_thread(pbx.stop)  # the chroot may be another Asterisk's)
        raise


async def run_all(opts: Options) -> Run:
    started = time.monotonic()
    root = opts.chroot or ensure_chroot(ArtifactCache(Settings.from_env().cache_dir))
    # The Asterisk settings of both sides (this process renders, the app connects).
    ports = {
        **BENCH_PORTS,
        **{
            k: v
            for k, v in os.environ.items()
            if k in ASTERISK_ENV or k.startswith("IOC_ASTERISK_")
        },
    }
    with _workdir(opts.workdir) as folder:
        data_dir = folder / "data"
        state_dir = folder / "pbx"
        async with _database(opts.database, data_dir) as url:
            ioc = {
                "IOC_DATA_DIR": str(data_dir),
                "IOC_DATABASE_URL": url,
                "IOC_REDIS_URL": "",
                "IOC_LOG_LEVEL": "WARNING",
                **ports,
            }
            await prepare_database(Settings.from_env(ioc))
            pbx = Pbx(root, state_dir, {**os.environ, **ports})
            app = App(server_env(ioc), state_dir, folder / "app.log")
            bench = Bench(opts, folder, pbx, app, postgres=opts.database == "postgres")
            run = bench.run
            run.meta = {
                "versions": _versions(),
                "cpu_count": os.cpu_count(),
                "database": opts.database,
                "chroot": str(root),
                "sip_port": pbx.settings.sip_port,
                "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                "options": {k: str(v) for k, v in asdict(opts).items()},
            }
            pid = await _start(pbx)
            logger.info("asterisk %d from %s; work folder %s", pid, root, folder)
            try:
                run.meta["versions"]["asterisk"] = (await pbx.cli("core show version")).split(
                    " built"
                )[0]
                if "a" in opts.phases:
                    await bench.setup_phase()
                if "b" in opts.phases:
                    await bench.media_phase()
                if "c" in opts.phases:
                    await bench.ringing_phase()
            finally:
                await app.stop()
                problems = await asyncio.to_thread(pbx.proc.log_problems)
                left = await asyncio.to_thread(pbx.stop)
                if left:
                    run.notes.append(f"mounts left under the chroot: {left}")
                if problems:
                    run.notes.append(
                        f"Asterisk logged {len(problems)} warnings/errors: {log_kinds(problems)}"
                    )
            run.meta["app_starts"] = app.starts
            run.meta["app_start_s"] = round(_q(app.start_s, 50), 2) if app.start_s else None
    run.meta["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    run.meta["total_seconds"] = round(time.monotonic() - started, 1)
    return run


async def _main(opts: Options) -> Run:
    return await cancellable_by_sigterm(lambda: run_all(opts))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)
    opts = parse_args(argv)
    if not sipp.available():
        print("SIPp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("the Asterisk chroot needs root (mount, chroot)", file=sys.stderr)
        return 2
    try:
        run = asyncio.run(_main(opts))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: Asterisk and the app stopped", file=sys.stderr)
        return 130
    print(render_run(run), flush=True)
    if opts.out:
        write_json(run, opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
