"""`python -m bench.reports`: how many incident reports per second the hub takes, and how fast.

One run (about 90 s with the defaults) on a fresh PostgreSQL database, dropped at the end:

1. the floor: the same rows written with raw asyncpg (one transaction per report);
2. the service layer: `report_incident()` called by concurrent tasks in this process;
3. the real server (`ioc run`, one and then two worker processes): maximum throughput with
   wrk, then latency at a fixed offered rate with an open-loop generator.

Every phase starts from empty incident tables. Prints one table (and writes JSON with
--json); compares with the targets: >= 1,000 reports/s, p99 <= 200 ms at 500 reports/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench import http_load, pgdb, raw, server
from bench.guard import cancellable_by_sigterm
from bench.payload import CATEGORY
from bench.service import run_service
from bench.stats import Result, finite
from ioc_core.config import Settings
from ioc_core.runtime import prepare_database

logger = logging.getLogger("bench")

TARGET_RATE = 1000.0  # reports/s over HTTP
TARGET_P99_MS = 200.0  # at the fixed rate below
DEFAULT_RATE = 500.0
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
NOISY_PCT = 10.0  # other% above this: something else ran during the phase
SLOW_STOP_S = 3.0
LAGGING_MS = 10.0  # open-loop sends later than this (p99): the generator itself was starved
SIGNIFICANT = 0.10  # throughput differences below this are noise on a shared 2-core box


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    concurrency: int
    connections: int
    rate: float
    rate_duration: float
    rate_connections: int
    preload: int
    workers: tuple[int, ...]
    redis_url: str
    json_path: Path | None


@dataclass
class Run:
    meta: dict[str, Any] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- options


def _workers(text: str) -> tuple[int, ...]:
    values = tuple(int(x) for x in text.split(",") if x.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("worker counts are positive integers, e.g. 2 or 1,2")
    return values


def parse_args(argv: Sequence[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per measured phase")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per phase")
    p.add_argument("--concurrency", type=int, default=32, help="tasks (raw, service)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, help="fixed rate, reports/s")
    p.add_argument("--rate-duration", type=float, default=10.0, help="seconds at that rate")
    p.add_argument("--rate-connections", type=int, default=256, help="open-loop conns, max")
    p.add_argument(
        "--preload",
        type=int,
        default=0,
        help="open incidents (same category group, last 100 min) put in the empty tables "
        "before each phase: what duplicate look-ups meet in steady state (e.g. 100000)",
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=(1, 2),
        help="server worker processes to try: N or a list like 1,2 (default 1,2)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("IOC_BENCH_REDIS_URL", DEFAULT_REDIS),
        help="event bus (a stream of its own, deleted at the end); '' = in-process bus",
    )
    p.add_argument("--json", type=Path, dest="json_path", help="also write the results here")
    a = p.parse_args(argv)
    return Options(
        duration=a.duration,
        warmup=a.warmup,
        concurrency=a.concurrency,
        connections=a.connections,
        rate=a.rate,
        rate_duration=a.rate_duration,
        rate_connections=a.rate_connections,
        preload=a.preload,
        workers=a.workers,
        redis_url=a.redis_url,
        json_path=a.json_path,
    )


# ---------------------------------------------------------------- environment


async def _redis_usable(url: str) -> str:
    """The Redis server's version, or '' when it does not answer."""
    if not url:
        return ""
    client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        info = await client.info("server")
        return str(info.get("redis_version", "?"))
    except Exception:
        return ""
    finally:
        await client.aclose()


async def _drop_streams(url: str, stream: str) -> None:
    client = Redis.from_url(url, socket_timeout=5)
    try:
        await client.delete(stream, f"{stream}:dead")
    finally:
        await client.aclose()


def ioc_env(db_name: str, data_dir: Path, redis_url: str, stream: str) -> dict[str, str]:
    """The IOC_* settings of every hub process of the run (this one and the servers)."""
    return {
        "IOC_DATABASE_URL": pgdb.sqlalchemy_url(db_name),
        "IOC_DATA_DIR": str(data_dir),
        "IOC_REDIS_URL": redis_url,
        "IOC_BUS_STREAM": stream,
        "IOC_HTTP_HOST": server.HOST,
        "IOC_LOG_LEVEL": "WARNING",
    }


def _versions(pg_version: str, redis_version: str) -> dict[str, str]:
    out = {"python": platform.python_version(), "postgresql": pg_version}
    for dist in ("sqlalchemy", "asyncpg", "aiohttp", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "?"
    out["redis"] = redis_version or "not used"
    wrk = server.tool_version(["wrk", "-v"]).split()
    out["wrk"] = wrk[1] if len(wrk) > 1 else "?"
    return out


def _cpus() -> dict[str, int]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    return {"cpu_count": os.cpu_count() or 0, "usable_cpus": usable or os.cpu_count() or 0}


# ---------------------------------------------------------------- phases


async def fresh_tables(opts: Options, dsn: str) -> None:
    await pgdb.empty_report_tables(dsn)
    await pgdb.preload_open_incidents(dsn, opts.preload, category=CATEGORY)


async def in_process_phases(opts: Options, db_name: str, settings: Settings) -> list[Result]:
    dsn = pgdb.dsn_for(db_name)
    out: list[Result] = []
    for shape in raw.SHAPES:
        await fresh_tables(opts, dsn)
        out.append(
            await raw.run_raw(
                dsn, shape, concurrency=opts.concurrency, seconds=opts.duration,
                warmup_s=opts.warmup,
            )
        )  # fmt: skip
        logger.info("%s: %.0f reports/s", out[-1].phase, out[-1].rate)
    await fresh_tables(opts, dsn)
    out.append(
        await run_service(
            settings, dsn, concurrency=opts.concurrency, seconds=opts.duration,
            warmup_s=opts.warmup,
        )
    )  # fmt: skip
    logger.info("%s: %.0f reports/s", out[-1].phase, out[-1].rate)
    return out


async def http_phases(
    opts: Options, db_name: str, env: dict[str, str], token: str, workers: int, logs: Path
) -> list[Result]:
    dsn = pgdb.dsn_for(db_name)
    with server.running(env, workers=workers, log=logs / f"server-{workers}w.log") as srv:
        await server.wait_healthy(srv)
        if opts.warmup > 0:
            await http_load.run_wrk(srv, token, connections=opts.connections, seconds=opts.warmup)
        await fresh_tables(opts, dsn)
        top = await http_load.max_throughput(
            srv, dsn, token, connections=opts.connections, seconds=opts.duration
        )
        logger.info("%d worker(s): %.0f reports/s max", workers, top.rate)
        await fresh_tables(opts, dsn)
        fixed = await http_load.fixed_rate(
            srv, dsn, token, rate=opts.rate, seconds=opts.rate_duration,
            connections=opts.rate_connections,
        )  # fmt: skip
        logger.info("%d worker(s): p99 %.0f ms at %g/s", workers, fixed.latency.p99, opts.rate)
        if srv.proc.poll() is not None:
            raise RuntimeError(f"server died during the run:\n{srv.log_tail()}")
    fixed.extra["server_stop_s"] = round(srv.stop_seconds, 1)
    return [top, fixed]


async def run_all(opts: Options) -> Run:
    run = Run()
    started = time.monotonic()
    redis_version = await _redis_usable(opts.redis_url)
    redis_url = opts.redis_url if redis_version else ""
    if opts.redis_url and not redis_version:
        run.notes.append(f"Redis at {opts.redis_url} did not answer: in-process bus used.")
    stream = f"ioc:bench:{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="ioc-bench-") as tmp:
        try:
            async with pgdb.fresh_database() as db_name:
                env_vars = ioc_env(db_name, Path(tmp) / "data", redis_url, stream)
                settings = Settings.from_env(env_vars)
                await prepare_database(settings)
                pg_version = await pgdb.server_version(pgdb.dsn_for(db_name))
                run.meta = {
                    "versions": _versions(pg_version, redis_version),
                    **_cpus(),
                    "database": db_name,
                    "bus": f"Redis Streams ({redis_url}, stream {stream})" if redis_url
                    else "in-process",
                    "options": {k: str(v) for k, v in vars(opts).items()},
                }  # fmt: skip
                run.results += await in_process_phases(opts, db_name, settings)
                env = server.server_env(env_vars)
                token = await asyncio.to_thread(server.create_token, env)
                for workers in opts.workers:
                    run.results += await http_phases(opts, db_name, env, token, workers, Path(tmp))
        finally:
            if redis_url:
                try:
                    await _drop_streams(redis_url, stream)
                except Exception as exc:
                    logger.warning("could not delete Redis stream %s: %s", stream, exc)
    run.meta["total_seconds"] = round(time.monotonic() - started, 1)
    return run


# ---------------------------------------------------------------- output


def _f(value: float, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _per_report(r: Result, seconds: float) -> str:
    return _f(r.cpu_ms_per_report(seconds), 2)


COLUMNS = (
    ("phase", 37, "<"), ("srv", 3, ">"), ("load", 26, "<"), ("reports/s", 9, ">"),
    ("p50 ms", 8, ">"), ("p99 ms", 8, ">"), ("max ms", 8, ">"), ("errors", 6, ">"),
    ("vs raw", 6, ">"), ("app", 6, ">"), ("pg", 6, ">"), ("gen", 6, ">"), ("busy%", 5, ">"),
    ("other%", 6, ">"), ("conns+", 6, ">"),
)  # fmt: skip


def _row(cells: Sequence[str]) -> str:
    return "  ".join(
        f"{c:{align}{width}}" for c, (_n, width, align) in zip(cells, COLUMNS, strict=True)
    )


def _cells(r: Result, baseline: float) -> list[str]:
    return [
        r.phase, "-" if r.workers is None else str(r.workers), r.concurrency, _f(r.rate),
        _f(r.latency.p50, 1), _f(r.latency.p99, 1), _f(r.latency.max, 1), str(r.errors),
        f"{r.rate / baseline:.2f}x" if baseline else "-", _per_report(r, r.cpu.app_s),
        _per_report(r, r.cpu.postgres_s), _per_report(r, r.cpu.loadgen_s),
        _f(r.cpu.machine_busy_pct), _f(r.cpu.other_pct),
        "-" if r.pg_sessions is None else str(r.pg_sessions),
    ]  # fmt: skip


def _http(run: Run, prefix: str) -> list[Result]:
    return [r for r in run.results if r.workers is not None and r.phase.startswith(prefix)]


def _better_workers(tops: list[Result], fixed: list[Result]) -> str:
    ranked = sorted(tops, key=lambda r: r.rate, reverse=True)
    best, runner_up = ranked[0], ranked[1]
    if best.rate < runner_up.rate * (1 + SIGNIFICANT):
        text = (
            f"server workers: {best.workers} and {runner_up.workers} within "
            f"{100 * SIGNIFICANT:.0f}% on throughput ({best.rate:,.0f} vs {runner_up.rate:,.0f}/s)"
        )
    else:
        text = f"server workers: {best.workers} is better on throughput"
    if fixed:
        by_p99 = min(fixed, key=lambda r: (r.errors, r.latency.p99))
        text += f"; {by_p99.workers} has the fewer errors / lower p99 at the fixed rate"
    return text


def _cpu_budget(r: Result, cpus: int) -> str:
    """What the measured CPU per report allows on this machine, whatever the tuning."""
    per = [r.cpu_ms_per_report(s) for s in (r.cpu.app_s, r.cpu.postgres_s, r.cpu.loadgen_s)]
    total = sum(per)
    if not cpus or math.isnan(total) or total <= 0:
        return "CPU budget: not measured"
    return (
        f"CPU budget at {r.rate:,.0f}/s ({r.workers}w): hub {per[0]:.2f} + PostgreSQL "
        f"{per[1]:.2f} + generator {per[2]:.2f} = {total:.2f} ms per report; {cpus} CPUs allow "
        f"at most ~{cpus * 1000 / total:,.0f}/s; {TARGET_RATE:,.0f}/s needs <= "
        f"{cpus * 1000 / TARGET_RATE:.2f} ms, all included"
    )


def _errors(r: Result) -> str:
    kinds = r.extra.get("error_kinds") or {}
    detail = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
    return f"{r.errors} errors" + (f" ({detail})" if detail else "")


def verdicts(run: Run) -> list[str]:
    lines = []
    tops, fixed = _http(run, "HTTP max"), _http(run, "HTTP fixed")
    if tops:
        best = max(tops, key=lambda r: r.rate)
        ok = best.rate >= TARGET_RATE
        lines.append(
            f"throughput >= {TARGET_RATE:,.0f} reports/s: best {best.rate:,.0f}/s with "
            f"{best.workers} worker(s) -> {'MET' if ok else 'MISSED'} "
            f"({100 * best.rate / TARGET_RATE:.0f}% of target)"
        )
    for r in fixed:
        offered = float(r.extra.get("offered_rate", 0))
        ok = r.latency.p99 <= TARGET_P99_MS and r.errors == 0 and r.rate >= 0.95 * offered
        lag = float((r.extra.get("send_lag_ms") or {}).get("p99", math.nan))
        lines.append(
            f"p99 <= {TARGET_P99_MS:.0f} ms at {offered:g}/s, {r.workers} worker(s): p99 "
            f"{_f(r.latency.p99)} ms, achieved {r.rate:,.0f}/s, {_errors(r)} -> "
            f"{'MET' if ok else 'MISSED'} (generator send lag p99 {_f(lag, 1)} ms"
            + ("; it was short of CPU)" if lag > LAGGING_MS else ")")
        )
    if len(tops) > 1:
        lines.append(_better_workers(tops, fixed))
    if tops:
        lines.append(_cpu_budget(max(tops, key=lambda r: r.rate), run.meta.get("cpu_count", 0)))
    return lines


def _load_share(run: Run) -> str:
    parts = []
    for r in _http(run, "HTTP"):
        if r.seconds > 0 and not math.isnan(r.cpu.loadgen_s):
            kind = "wrk" if r.phase.startswith("HTTP max") else "open-loop generator"
            share = 100 * r.cpu.loadgen_s / r.seconds
            parts.append(f"{kind} ({r.workers}w) {share:.0f}%")
    return ", ".join(parts)


def _phase_notes(run: Run) -> list[str]:
    return [f"{r.phase}: {r.note}" for r in run.results if r.note]


def _slow_stops(run: Run) -> list[str]:
    return [
        f"stopping the {r.workers}-worker server (SIGTERM to exit) took {stop:.1f} s: it "
        "finishes every request it accepted, those the clients gave up on included."
        for r in _http(run, "HTTP fixed")
        if (stop := float(r.extra.get("server_stop_s", 0))) > SLOW_STOP_S
    ]


def _noise(run: Run) -> list[str]:
    noisy = [r for r in run.results if r.cpu.other_pct > NOISY_PCT]
    if not noisy:
        return []
    lines = [
        f"other processes used more than {NOISY_PCT:.0f}% of the CPUs in {len(noisy)} phase(s):"
        " the machine was not quiet and those figures are pessimistic. Biggest (% of one CPU):"
    ]
    for r in noisy:
        who = f"{r.phase} ({r.workers}w)" if r.workers else r.phase
        lines.append(f"  {who}: {r.cpu.top_other or '?'}")
    return lines


def render(run: Run) -> str:
    m, v = run.meta, run.meta.get("versions", {})
    baseline = run.results[0].rate if run.results else 0.0
    out = [
        "IOC Hub report intake benchmark",
        "  " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"  CPUs: {m.get('cpu_count')} (usable {m.get('usable_cpus')}); bus: {m.get('bus')}; "
        f"database: {m.get('database')} (dropped)",
        "",
        _row([n for n, _w, _a in COLUMNS]),
        _row(["-" * w for _n, w, _a in COLUMNS]),
        *(_row(_cells(r, baseline)) for r in run.results),
        "",
        "  srv: server worker processes (- = in this process, one event loop, one core at most).",
        "  vs raw: reports/s relative to the first row (raw asyncpg, one transaction a report).",
        "  app / pg / gen: CPU ms per report of the hub (this process or the server's processes),",
        "  of all PostgreSQL processes, of the load generator; busy%: whole machine, all CPUs;",
        "  other%: CPUs used by anything else (kernel, other jobs): high values skew the run.",
        "  conns+: PostgreSQL connections opened during the phase (pool churn when > 0).",
        f"  The load generator runs on the same {m.get('cpu_count')} CPUs as the server and"
        f" PostgreSQL; it used (of one core): {_load_share(run) or '-'}.",
        "  wrk latencies are closed-loop (from send); fixed-rate ones are from the scheduled"
        " send time.",
        "",
        "Targets:",
        *(f"  {line}" for line in verdicts(run)),
        *(f"Note: {n}" for n in [*run.notes, *_phase_notes(run), *_slow_stops(run), *_noise(run)]),
        f"Total run time: {m.get('total_seconds', '?')} s",
    ]
    return "\n".join(out)


def write_json(run: Run, path: Path) -> None:
    data = {
        "meta": run.meta,
        "results": [r.as_dict() for r in run.results],
        "targets": {"rate": TARGET_RATE, "p99_ms": TARGET_P99_MS, "verdicts": verdicts(run)},
        "notes": run.notes,
    }
    path.write_text(json.dumps(finite(data), indent=2, default=str, allow_nan=False) + "\n")


# ---------------------------------------------------------------- entry point


async def _main(opts: Options) -> Run:
    return await cancellable_by_sigterm(lambda: run_all(opts))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)
    opts = parse_args(argv)
    if not http_load.available():
        print(
            "wrk is not installed (apt-get install wrk); it drives the HTTP phase", file=sys.stderr
        )
        return 2
    try:
        run = asyncio.run(_main(opts))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: servers stopped, database dropped", file=sys.stderr)
        return 130
    print(render(run), flush=True)
    if opts.json_path:
        write_json(run, opts.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
