"""Open-loop load at a fixed rate: `python -m bench.openloop --url URL --rate R --duration S`.

Request i is due at start + i/R and is sent then whether or not earlier ones have answered
(each in its own task, on a pool of keep-alive connections; a request that waits for a free
connection is still timed from when it was due). Latency is measured from the due time, so a
slow server cannot hide its queue by slowing the generator down (no coordinated omission).
Prints one JSON object on stdout. The token comes from IOC_BENCH_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.payload import report_json
from bench.stats import Latency


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # every answered request, seconds
    ok: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # non-2xx and exceptions
    lags: list[float] = field(default_factory=list)  # how late each send was (generator health)
    last_done: float = 0.0


async def _send(
    http: aiohttp.ClientSession, url: str, body: bytes, due: float, tally: Tally
) -> None:
    outcome = ""
    try:
        async with http.post(url, data=body) as r:
            await r.read()
            if not 200 <= r.status < 300:
                outcome = str(r.status)
    except Exception as exc:
        outcome = type(exc).__name__
    done = time.perf_counter()
    tally.last_done = max(tally.last_done, done)
    tally.latencies.append(done - due)  # errors too: a timeout is a (very) slow answer
    if outcome:
        tally.statuses[outcome] += 1
    else:
        tally.ok += 1


async def _preconnect(http: aiohttp.ClientSession, url: str, n: int) -> None:
    """Open `n` keep-alive connections before the clock starts, as wrk does: otherwise the
    first second measures the generator opening hundreds of connections at once (and the
    server accepting them), not the server's steady state."""
    health = url.split("/api/", 1)[0] + "/health"

    async def one() -> None:
        async with http.get(health) as r:
            await r.read()

    await asyncio.gather(*(one() for _ in range(n)))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    total = int(args.rate * args.duration)
    bodies = [report_json(rng) for _ in range(total)]
    headers = {
        "Authorization": f"Bearer {os.environ.get('IOC_BENCH_TOKEN', '')}",
        "Content-Type": "application/json",
    }
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    tally, tasks = Tally(), set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:
        await _preconnect(http, args.url, args.preconnect)
        start = time.perf_counter() + 0.05
        for i, body in enumerate(bodies):
            due = start + i / args.rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            tally.lags.append(time.perf_counter() - due)
            task = asyncio.create_task(_send(http, args.url, body, due, tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks), timeout=args.timeout + 1)
    unanswered = len(tasks)
    latency = Latency.of_seconds(tally.latencies)
    lag = Latency.of_seconds(tally.lags)
    return {
        "offered_rate": args.rate,
        "sent": total,
        "ok": tally.ok,
        "errors": sum(tally.statuses.values()) + unanswered,
        "error_kinds": dict(tally.statuses) | ({"unanswered": unanswered} if unanswered else {}),
        "seconds": (tally.last_done - start) if tally.last_done else 0.0,
        "latency_ms": {"p50": latency.p50, "p99": latency.p99, "max": latency.max},
        "send_lag_ms": {"p99": lag.p99, "max": lag.max},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=500.0, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    p.add_argument("--connections", type=int, default=256, help="keep-alive connections, max")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="seconds per request, queueing included"
    )
    p.add_argument(
        "--preconnect", type=int, default=64, help="connections opened before the clock starts"
    )
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
