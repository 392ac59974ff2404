"""The service layer alone: `report_incident` called by N concurrent tasks in this process.

The core is the one `ioc run` builds (same engine and pool, same bus and outbox relay), without
what the HTTP endpoint adds: aiohttp, the token check, JSON in and out.
"""

from __future__ import annotations

import logging
import random

from bench.closed_loop import in_process_result, measure
from bench.guard import Stuck, bounded
from bench.payload import report_body
from bench.probe import Probe
from bench.stats import Result
from ioc_core.access.roles import Principal, Role
from ioc_core.config import Settings
from ioc_core.incidents.reporting import report_incident
from ioc_core.incidents.schemas import ReportIn
from ioc_core.runtime import Core, start_core

logger = logging.getLogger(__name__)

PRINCIPAL = Principal(role=Role.SERVICE, name="bench")
CLOSE_TIMEOUT_S = 15.0


async def _close(core: Core) -> str:
    """Closing stops the outbox relay and the bus; if it hangs, say so and go on (the figures
    are measured by then) rather than hang the benchmark."""
    try:
        await bounded(core.close(), CLOSE_TIMEOUT_S, "Core.close()")
    except Stuck as exc:
        logger.warning("%s", exc)
        return f"Core.close() hung for {CLOSE_TIMEOUT_S:.0f} s (stacks in the log)"
    return ""


async def run_service(
    settings: Settings, dsn: str, *, concurrency: int, seconds: float, warmup_s: float
) -> Result:
    core = await start_core(settings, migrate=False)
    rng = random.Random(11)
    try:

        async def op() -> None:
            # Validation is part of every channel's path, so it is timed too (~30 µs).
            data = ReportIn.model_validate(report_body(rng))
            await report_incident(core, data, principal=PRINCIPAL)

        samples, used, sessions = await measure(
            op, Probe.in_process(dsn), concurrency=concurrency, seconds=seconds, warmup_s=warmup_s
        )
    finally:
        note = await _close(core)
    return in_process_result(
        "service: report_incident()",
        f"{concurrency} tasks",
        samples,
        used,
        sessions,
        "; ".join(n for n in (samples.first_error, note) if n),
    )
