"""Closed-loop driver: N asyncio tasks in this process each run one operation after another."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.guard import bounded
from bench.probe import Probe
from bench.stats import Cpu, Latency, Result

logger = logging.getLogger(__name__)

Operation = Callable[[], Awaitable[object]]
STRAGGLER_S = 60.0  # how long the last calls may take after the deadline


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)  # seconds, successful calls only
    errors: int = 0
    seconds: float = 0.0
    first_error: str = ""


async def _worker(op: Operation, deadline: float, out: Samples) -> None:
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            await op()
        except Exception as exc:
            out.errors += 1
            out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"
            continue
        out.latencies.append(time.perf_counter() - started)


async def closed_loop(op: Operation, *, concurrency: int, seconds: float) -> Samples:
    """Calls for `seconds`; the measured time ends when the last in-flight call returns, so
    successes / seconds is not inflated by calls that started before the deadline."""
    out = Samples()
    started = time.perf_counter()
    deadline = started + seconds
    workers = asyncio.gather(*(_worker(op, deadline, out) for _ in range(concurrency)))
    await bounded(workers, seconds + STRAGGLER_S, f"{concurrency} workers of a {seconds:g} s loop")
    out.seconds = time.perf_counter() - started
    return out


async def measure(
    op: Operation, probe: Probe, *, concurrency: int, seconds: float, warmup_s: float
) -> tuple[Samples, Cpu, int]:
    """A warm-up (discarded), then `seconds` of calls, with what `probe` saw of them."""
    if warmup_s > 0:
        await closed_loop(op, concurrency=concurrency, seconds=warmup_s)
    await probe.start()
    samples = await closed_loop(op, concurrency=concurrency, seconds=seconds)
    used, sessions = await probe.stop()
    if samples.first_error:
        logger.warning("%d calls failed; first: %s", samples.errors, samples.first_error)
    return samples, used, sessions


def in_process_result(
    phase: str, concurrency: str, samples: Samples, used: Cpu, sessions: int, note: str
) -> Result:
    """The result row of a phase measured in this process (raw driver or service layer)."""
    return Result(
        phase=phase,
        workers=None,
        concurrency=concurrency,
        ok=len(samples.latencies),
        errors=samples.errors,
        seconds=samples.seconds,
        latency=Latency.of_seconds(samples.latencies),
        cpu=used,
        pg_sessions=sessions,
        note=note,
    )
