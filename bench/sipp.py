"""SIPp as the carrier for `bench.switchboard`: caller scenarios, one run, and what it reports.

A run is one `sipp` process (uac) placing calls to one number at a fixed rate, each from its
own caller number (`-inf`, a 10-digit Vietnamese mobile number, so the switchboard's caller
look-up really queries the database); the scenario is the tests' caller (`tests.sip.sipp`,
one builder for both). What comes back (`SippRun`) is read from SIPp's own
files: the final statistics line (`-trace_stat`: calls, failures, retransmissions), the
response times of INVITE -> 200 OK (`-trace_rtt`, whole milliseconds) and, when asked, the
send time of every INVITE (`-trace_msg`, microseconds, wall clock).

Every process is started and ended by its PID; a run is bounded by SIPp's own `-timeout` and
by a kill a little after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.sip.sipp import caller_scenario as shared_scenario
from tests.sip.sipp import free_udp_port

SIPP = "sipp"


def available() -> bool:
    return shutil.which(SIPP) is not None


def version() -> str:
    if not available():
        return "not installed"
    out = subprocess.run([SIPP, "-v"], capture_output=True, text=True, timeout=10, check=False)
    found = re.search(r"SIPp v[\w.\-]+", out.stdout + out.stderr)
    return found.group(0) if found else "?"


def caller_scenario(*, hold_ms: int, audio: Path, loops: int = -1) -> str:
    """The tests' caller (`tests.sip.sipp`), numbered from the injection file, sending `audio`
    `loops` times (-1: until it hangs up) as a phone does: the load is real calls with voice."""
    return shared_scenario(hold_ms=hold_ms, stream=audio, loops=loops)


def make_audio(target: Path, source: Path | None, seconds: float) -> Path:
    """`target`: `seconds` of raw mu-law speech (a prompt, repeated and cut by sox) or, if
    that fails, a quiet tone. The content does not matter for the load, only its rate."""
    out = ["-r", "8000", "-c", "1", "-e", "u-law", "-t", "ul", str(target)]
    if source is not None and source.exists():
        cmd = ["sox", str(source), *out, "repeat", "9", "trim", "0", f"{seconds:g}"]
    else:
        cmd = ["sox", "-n", *out, "synth", f"{seconds:g}", "sine", "440", "vol", "0.2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 or not target.exists() or target.stat().st_size < 160:
        # Silence in mu-law is 0xFF: still 50 packets a second.
        target.write_bytes(b"\xff" * int(8000 * seconds))
    return target


def write_callers(path: Path, *, prefix: int, count: int) -> None:
    """SIPp injection file: `count` distinct mobile numbers 09PPNNNNNN (PP: the run)."""
    if not 0 <= prefix < 100 or count > 1_000_000:
        raise ValueError("prefix is 0-99 and count at most 1,000,000")
    lines = ["SEQUENTIAL", *(f"09{prefix:02d}{i:06d};" for i in range(count))]
    path.write_text("\n".join(lines) + "\n")


def caller_number(prefix: int, index: int) -> str:
    return f"09{prefix:02d}{index:06d}"


@dataclass
class SippRun:
    name: str
    created: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # non-zero Failed* counters
    invites: dict[int, float] = field(default_factory=dict)  # call number -> epoch s, sent
    answers: dict[int, float] = field(default_factory=dict)  # call number -> 200 OK, epoch s

    @property
    def rtd_ms(self) -> list[float]:
        """INVITE (first send) -> 200 OK, per answered call."""
        return [(t - self.invites[n]) * 1000 for n, t in self.answers.items() if n in self.invites]

    def answer_rate(self) -> float:
        """200 OKs per second, first to last: how fast calls were really set up."""
        if len(self.answers) < 2:
            return math.nan
        span = max(self.answers.values()) - min(self.answers.values())
        return (len(self.answers) - 1) / span if span > 0 else math.nan

    elapsed_s: float = math.nan
    cpu_s: float = math.nan
    returncode: int | None = None
    output_tail: str = ""

    @property
    def clean(self) -> bool:
        return self.created > 0 and self.failed == 0 and self.retransmissions == 0


def _stat_row(path: Path) -> dict[str, str]:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    head, last = lines[0].split(";"), lines[-1].split(";")
    return dict(zip(head, last, strict=False))


def message_times(path: Path) -> tuple[dict[int, float], dict[int, float]]:
    """From SIPp's short message log: call number -> first INVITE sent, and -> first 200 OK
    to that INVITE received (epoch seconds, microseconds). The call number is the first part
    of SIPp's Call-ID (`<n>-<pid>@<ip>`); with a SEQUENTIAL injection file call n is line n."""
    invites: dict[int, float] = {}
    answers: dict[int, float] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return invites, answers
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 7 or parts[5] != "CSeq:1 INVITE":
            continue
        try:
            stamp, number = float(parts[2]), int(parts[4].split("-", 1)[0])
        except ValueError:
            continue
        if parts[3] == "S" and parts[6].startswith("INVITE "):
            invites.setdefault(number, stamp)
        elif parts[3] == "R" and parts[6].startswith("SIP/2.0 200"):
            answers.setdefault(number, stamp)
    return invites, answers


async def run(
    *,
    name: str,
    folder: Path,
    target: str,
    service: str,
    scenario: str,
    callers: Path,
    rate: float,
    calls: int,
    media_port: int,
    rate_period_ms: int = 1000,
    limit: int | None = None,
    timeout_s: float,
    on_start: Callable[[int], object] | None = None,
) -> SippRun:
    """One SIPp process placing `calls` calls at `rate` per `rate_period_ms`; its files go to
    `folder` (a fresh one per run)."""
    xml = await asyncio.to_thread(_prepare, folder, scenario)
    args = [
        SIPP, target, "-sf", str(xml), "-s", service, "-inf", str(callers),
        "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(media_port),
        "-r", f"{rate:g}", "-rp", str(rate_period_ms), "-m", str(calls),
        "-recv_timeout", "15000", "-timeout", f"{int(timeout_s)}s", "-timeout_error",
        "-trace_stat", "-stf", "stat.csv", "-fd", "1",
        "-trace_shortmsg", "-shortmessage_file", "messages.tsv", "-nostdin",
    ]  # fmt: skip
    # SIPp's own default limit is 3 x rate x call length, e.g. 150 calls at 50 calls/s of
    # 1 s: it would quietly cap the concurrent calls a run asks for.
    args += ["-l", str(limit if limit is not None else calls)]
    result = SippRun(name=name)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=str(folder),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    if on_start is not None:
        on_start(proc.pid)
    cpu = 0.0
    sampler = asyncio.create_task(_sample_cpu(proc.pid))
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s + 15)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        out, _ = await proc.communicate()
    except BaseException:  # cancelled (SIGTERM, Ctrl-C): SIPp must not outlive the bench
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        raise
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            cpu = await sampler
    result.elapsed_s = time.monotonic() - started
    result.cpu_s = cpu
    result.returncode = proc.returncode
    result.output_tail = out.decode(errors="replace")[-2000:]
    row = _stat_row(folder / "stat.csv")
    num = _int_of(row)
    result.created = num("OutgoingCall(C)")
    result.successful = num("SuccessfulCall(C)")
    result.failed = num("FailedCall(C)")
    result.retransmissions = num("Retransmissions(C)")
    result.failures = {
        k.removesuffix("(C)"): num(k)
        for k in row
        if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and num(k)
    }
    result.invites, result.answers = message_times(folder / "messages.tsv")
    return result


def _prepare(folder: Path, scenario: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / "scenario.xml"
    xml.write_text(scenario)
    return xml


def _int_of(row: dict[str, str]) -> Callable[[str], int]:
    def num(key: str) -> int:
        try:
            return int(float(row.get(key, "0") or 0))
        except ValueError:
            return 0

    return num


async def _sample_cpu(pid: int) -> float:
    """SIPp's CPU seconds, read from /proc until it exits (the last reading is returned when
    this task is cancelled)."""
    last = 0.0
    try:
        while True:
            last = proc_cpu_s(pid) or last
            await asyncio.sleep(0.25)
    except asyncio.CancelledError:
        return last


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int | None) -> float:
    """utime + stime of `pid` (all its threads), seconds; 0.0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    rest = text[text.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / _TICK
