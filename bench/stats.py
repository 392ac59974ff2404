"""Latency summaries and the result row every phase of the benchmark produces."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100); NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Latency:
    """Milliseconds."""

    p50: float
    p99: float
    max: float

    @classmethod
    def of_seconds(cls, samples: Iterable[float]) -> Latency:
        ordered = sorted(samples)
        return cls(
            p50=percentile(ordered, 50) * 1000,
            p99=percentile(ordered, 99) * 1000,
            max=(ordered[-1] * 1000) if ordered else math.nan,
        )


@dataclass(frozen=True)
class Cpu:
    """CPU seconds spent during a phase, by who spent them, and the machine's busy share."""

    app_s: float = math.nan  # the process(es) running the hub code (or the raw driver)
    postgres_s: float = math.nan  # every PostgreSQL process
    loadgen_s: float = math.nan  # wrk / the open-loop generator (0 when in-process)
    other_s: float = math.nan  # everything else on the machine (kernel, other jobs)
    machine_busy_pct: float = math.nan  # of all CPUs
    other_pct: float = math.nan  # other_s as a share of all CPUs
    top_other: str = ""  # the biggest other consumers, in % of one CPU


@dataclass(frozen=True)
class Result:
    phase: str
    workers: int | None  # server processes (None: in-process phases)
    concurrency: str  # tasks, connections or offered rate
    ok: int
    errors: int
    seconds: float
    latency: Latency
    cpu: Cpu = field(default_factory=Cpu)
    pg_sessions: int | None = None  # PostgreSQL connections opened during the phase
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def cpu_ms_per_report(self, seconds: float) -> float:
        return seconds * 1000 / self.ok if self.ok else math.nan

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reports_per_s"] = round(self.rate, 1)
        return out


def finite(value: Any) -> Any:
    """JSON has no NaN: missing figures become null (recursively)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
