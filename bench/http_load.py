"""Load on the real server over HTTP, each generator a separate process.

- maximum throughput: wrk (closed loop) posting reports on many connections. wrk times from
  when it sends and slows down with the server, so its percentiles understate queueing
  (coordinated omission): they are for throughput only;
- fixed rate: `bench.openloop` (open loop, timed from the scheduled send) for latency at a
  given offered rate.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from bench.probe import Probe
from bench.server import Server, run_child
from bench.stats import Latency, Result

SCRIPT = Path(__file__).with_name("post_report.lua")
REPO_ROOT = Path(__file__).resolve().parent.parent
PATH = "/api/v1/incidents"


def available() -> bool:
    return shutil.which("wrk") is not None


def _parse(stdout: str) -> dict[str, int]:
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return {k: int(v) for k, v in json.loads(line.removeprefix("BENCH_JSON ")).items()}
    raise RuntimeError(f"wrk printed no summary:\n{stdout[-2000:]}")


async def run_wrk(
    server: Server, token: str, *, connections: int, seconds: float, threads: int = 1
) -> tuple[dict[str, int], float]:
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(SCRIPT), server.base_url + PATH,
    ]  # fmt: skip
    env = {**os.environ, "IOC_BENCH_TOKEN": token}
    stats = _parse(await run_child(cmd, env=env, timeout_s=seconds + 60))
    return stats, stats["duration_us"] / 1e6


def server_probe(server: Server, dsn: str) -> Probe:
    return Probe(dsn=dsn, app_pid=server.pid, tree=True)


async def max_throughput(
    server: Server, dsn: str, token: str, *, connections: int, seconds: float
) -> Result:
    probe = server_probe(server, dsn)
    await probe.start()
    stats, elapsed = await run_wrk(server, token, connections=connections, seconds=seconds)
    used, sessions = await probe.stop()
    socket_errors = stats["connect"] + stats["read"] + stats["write"] + stats["timeout"]
    return Result(
        phase="HTTP max: wrk POST /api/v1/incidents",
        workers=server.workers,
        concurrency=f"wrk -t1 -c{connections}",
        ok=stats["requests"] - stats["status"],
        errors=stats["status"] + socket_errors,
        seconds=elapsed,
        latency=Latency(
            p50=stats["p50_us"] / 1000, p99=stats["p99_us"] / 1000, max=stats["max_us"] / 1000
        ),
        cpu=used,
        pg_sessions=sessions,
        extra={"non_2xx": stats["status"], "socket_errors": socket_errors, "wrk": stats},
    )


async def fixed_rate(
    server: Server, dsn: str, token: str, *, rate: float, seconds: float, connections: int
) -> Result:
    cmd = [
        sys.executable, "-m", "bench.openloop", "--url", server.base_url + PATH,
        "--rate", str(rate), "--duration", str(seconds), "--connections", str(connections),
    ]  # fmt: skip
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "IOC_BENCH_TOKEN": token, "PYTHONPATH": path}
    probe = server_probe(server, dsn)
    await probe.start()
    out = json.loads(await run_child(cmd, env=env, timeout_s=seconds + 30))
    used, sessions = await probe.stop()
    lat, lag = out["latency_ms"], out["send_lag_ms"]
    return Result(
        phase=f"HTTP fixed {rate:g}/s: open loop",
        workers=server.workers,
        concurrency=f"{rate:g}/s offered, <={connections} conns",
        ok=out["ok"],
        errors=out["errors"],
        seconds=out["seconds"],
        latency=Latency(p50=lat["p50"], p99=lat["p99"], max=lat["max"]),
        cpu=used,
        pg_sessions=sessions,
        extra={"offered_rate": rate, "sent": out["sent"], "error_kinds": out["error_kinds"],
               "send_lag_ms": lag},
    )  # fmt: skip
