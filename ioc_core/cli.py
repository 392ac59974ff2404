"""`ioc` command line: run, db upgrade, token create, user add, audit verify, catalogue load."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from ioc_core.access.roles import Role
from ioc_core.config import ConfigError, Settings
from ioc_core.errors import IocError
from ioc_core.i18n import t

logger = logging.getLogger("ioc")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "port", None) is not None:
        overrides["http_port"] = args.port
    if getattr(args, "workers", None) is not None:
        overrides["http_workers"] = args.workers
    return Settings.from_env(**overrides)


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )


# ----------------------------------------------------------------- run


async def _serve(settings: Settings, *, reuse_port: bool, announce: bool) -> None:
    from aiohttp import web

    from ioc_core.runtime import start_core
    from ioc_core.web.app import make_app

    core = await start_core(settings, migrate=False)
    runner = web.AppRunner(make_app(core, primary=announce), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.http_host, settings.http_port, reuse_port=reuse_port, backlog=1024
    )
    await site.start()
    # What start-up built (catalogue, area tree, mappers, compiled statements) lives as long as
    # the process: frozen, the collector stops re-scanning it in every full collection, which
    # otherwise paused each worker for ~100 ms at a time under load (measured, 150k objects).
    gc.collect()
    gc.freeze()
    if announce:
        _announce(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await core.close()


def _announce(settings: Settings) -> None:
    base = settings.base_url()
    db = (
        "SQLite " + settings.database_url.split("///", 1)[-1]
        if settings.embedded_database
        else "PostgreSQL"
    )
    bus = "Redis Streams" if settings.redis_url else "in-process"
    lines = [
        f"{t('server.started')} / {t('server.started', 'en')}  (database: {db}; bus: {bus})",
        f"  {t('server.api')}:            {base}/api/v1/incidents",
        f"  {t('server.openapi')} / OpenAPI: {base}/api/v1/openapi.json",
        f"  {t('server.open311')}:   {base}/open311/v2/services.json",
        f"  {t('server.health')} / Health: {base}/health",
        f"  {t('server.token_hint')}",
    ]
    print("\n".join(lines), flush=True)


def _event_loop_run(coro: Any) -> None:
    """uvloop where available: a cheaper event loop for the HTTP server."""
    try:
        import uvloop
    except ImportError:  # not on every platform; asyncio's own loop works the same
        asyncio.run(coro)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def _worker(settings: Settings, announce: bool) -> None:
    _logging(settings)
    _event_loop_run(_serve(settings, reuse_port=True, announce=announce))


def cmd_run(args: argparse.Namespace) -> int:
    from ioc_core.runtime import prepare_database

    settings = _settings(args)
    _logging(settings)
    counts = asyncio.run(prepare_database(settings))
    if counts:
        logger.info("empty database: default catalogue loaded %s", counts)
    workers = settings.http_workers or os.cpu_count() or 1
    if settings.embedded_database and workers > 1:
        logger.warning("SQLite serialises writers; running one worker instead of %d", workers)
        workers = 1
    if workers == 1:
        _event_loop_run(_serve(settings, reuse_port=False, announce=True))
        return 0
    # Several processes share the port (SO_REUSEPORT): the kernel spreads connections.
    return _supervise_workers(settings, workers)


WORKER_BACKOFF_S = (0.5, 30.0)  # first and longest pause before a dead worker starts again
WORKER_HEALTHY_S = 60.0  # a worker that ran this long starts again after the first pause


def _supervise_workers(settings: Settings, workers: int) -> int:
    """Run the HTTP workers until SIGTERM/SIGINT; one that dies (killed, out of memory, a
    crash) starts again after a growing pause. Worker 0 is the primary (it runs the feature
    roles that exist once, such as the switchboard): without this a dead primary left the hub
    answering HTTP with no switchboard, for good."""
    ctx = multiprocessing.get_context("spawn")
    first, longest = WORKER_BACKOFF_S

    def start(i: int) -> Any:
        p = ctx.Process(target=_worker, args=(settings, i == 0), daemon=False)
        p.start()
        return p

    procs = {i: start(i) for i in range(workers)}
    began = {i: time.monotonic() for i in procs}
    pause = dict.fromkeys(procs, first)
    due: dict[int, float] = {}  # worker -> when it starts again
    stopping = False

    def _stop(_sig: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs.values():
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while True:
        alive = [p for p in procs.values() if p.is_alive()]
        if stopping:
            if not alive:
                break
        elif due:
            now = time.monotonic()
            for i in [i for i, at in due.items() if at <= now]:
                del due[i]
                procs[i], began[i] = start(i), time.monotonic()
                logger.warning("HTTP worker %d started again (pid %s)", i, procs[i].pid)
        if alive:
            multiprocessing.connection.wait([p.sentinel for p in alive], timeout=0.5)
        else:
            time.sleep(0.1)
        if stopping:
            continue
        for i, p in procs.items():
            if i in due or p.is_alive():
                continue
            if time.monotonic() - began[i] >= WORKER_HEALTHY_S:
                pause[i] = first
            logger.error(
                "HTTP worker %d%s (pid %s) exited with %s; starting it again in %.1fs",
                i,
                " (primary)" if i == 0 else "",
                p.pid,
                p.exitcode,
                pause[i],
            )
            due[i] = time.monotonic() + pause[i]
            pause[i] = min(pause[i] * 2, longest)
    return max((p.exitcode or 0) for p in procs.values())


# ----------------------------------------------------------------- admin commands


def cmd_db_revision(args: argparse.Namespace) -> int:
    """For developers: autogenerate a migration from the models against an upgraded DB."""
    from ioc_core.migrate import revision, upgrade

    settings = _settings(args)
    asyncio.run(upgrade(settings.database_url))
    revision(settings.database_url, args.message)
    return 0


def cmd_setup(args: argparse.Namespace) -> int:
    """Prepare what `ioc run` needs. Heavy artefacts (added by the telephony, speech and NLU
    roles) are built into IOC_CACHE_DIR through `ioc_core.artifacts.ArtifactCache`."""
    from ioc_core.runtime import prepare_database

    settings = _settings(args)
    _logging(settings)
    steps = _plugins("ioc.setup")
    unknown = set(args.components) - set(steps) - {"core"}
    if unknown:
        print(
            f"ioc setup: unknown component(s) {sorted(unknown)}; known: core, "
            f"{', '.join(sorted(steps))}",
            file=sys.stderr,
        )
        return 2
    wanted = set(args.components) or {"core", *steps}
    report: dict[str, Any] = {}
    if "core" in wanted:
        settings.attachments_dir.mkdir(parents=True, exist_ok=True)
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
        report["core"] = {
            "data_dir": str(settings.data_dir),
            "cache_dir": str(settings.cache_dir),
            "database": "sqlite" if settings.embedded_database else "postgresql",
            "catalogue_loaded": asyncio.run(prepare_database(settings)),
        }
    for name, step in sorted(steps.items()):
        if name in wanted:
            report[name] = step(settings)
    print(json.dumps(report, ensure_ascii=False))
    return 0


def _plugins(group: str) -> dict[str, Any]:
    """Commands and setup steps that feature packages register as entry points."""
    from importlib.metadata import entry_points

    return {ep.name: ep.load() for ep in entry_points(group=group)}


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from ioc_core.runtime import prepare_database

    settings = _settings(args)
    _logging(settings)
    counts = asyncio.run(prepare_database(settings))
    print(json.dumps({"migrated": True, "catalogue_loaded": counts}, ensure_ascii=False))
    return 0


async def _with_sessions(settings: Settings, fn: Any) -> Any:
    from ioc_core import db

    engine = db.make_engine(settings.database_url)
    try:
        return await fn(db.make_sessionmaker(engine))
    finally:
        await engine.dispose()


def cmd_token_create(args: argparse.Namespace) -> int:
    from ioc_core.access.tokens import create_token
    from ioc_core.db import transaction
    from ioc_core.runtime import prepare_database

    settings = _settings(args)
    asyncio.run(prepare_database(settings))

    async def go(sessions: Any) -> tuple[str, Any]:
        async with transaction(sessions) as s:
            return await create_token(
                s,
                role=args.role,
                name=args.name,
                agency_code=args.agency,
                subject=args.subject or "",
            )

    token, row = asyncio.run(_with_sessions(settings, go))
    print(t("cli.token_created"), file=sys.stderr)
    print(token)
    print(
        json.dumps(
            {"id": row.id, "role": row.role, "agency": row.agency_code, "name": row.name},
            ensure_ascii=False,
        ),
        file=sys.stderr,
    )
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from ioc_core.access.tokens import list_tokens

    rows = asyncio.run(_with_sessions(_settings(args), list_tokens))
    for r in rows:
        print(
            json.dumps(
                {
                    "id": r.id,
                    "name": r.name,
                    "role": r.role,
                    "agency": r.agency_code,
                    "created_at": r.created_at.isoformat(),
                    "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                },
                ensure_ascii=False,
            )
        )
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from ioc_core.access.tokens import revoke_token
    from ioc_core.db import transaction

    async def go(sessions: Any) -> bool:
        async with transaction(sessions) as s:
            return await revoke_token(s, args.id)

    if not asyncio.run(_with_sessions(_settings(args), go)):
        print(f"ioc: no active token {args.id}", file=sys.stderr)
        return 1
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from ioc_core.incidents.verify import verify_all

    settings = _settings(args)
    report = asyncio.run(_with_sessions(settings, verify_all))
    if report.ok:
        print(t("cli.audit_ok", incidents=report.incidents, rows=report.rows))
        return 0
    print(t("cli.audit_bad", count=len(report.problems)))
    for p in report.problems:
        print(f"  {p.incident_id} seq {p.seq}: {p.problem}")
    return 1


def cmd_catalogue_load(args: argparse.Namespace) -> int:
    from ioc_core.catalogue.service import load_catalogue
    from ioc_core.db import transaction
    from ioc_core.migrate import upgrade

    settings = _settings(args)
    _logging(settings)
    asyncio.run(upgrade(settings.database_url))

    async def go(sessions: Any) -> dict[str, int]:
        async with transaction(sessions) as s:
            return await load_catalogue(s, settings)

    print(json.dumps(asyncio.run(_with_sessions(settings, go)), ensure_ascii=False))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ioc", description="IOC Hub")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the hub (migrates and seeds an empty database)")
    run.add_argument(
        "--role",
        choices=["all", "core"],
        default="all",
        help="which role to run (today both run the whole hub, feature packages included)",
    )
    run.add_argument("--port", type=int, help="HTTP port (default IOC_HTTP_PORT or 8080)")
    run.add_argument("--workers", type=int, help="HTTP worker processes (IOC_HTTP_WORKERS)")
    run.set_defaults(fn=cmd_run)

    setup = sub.add_parser("setup", help="prepare data, database and cached artefacts")
    setup.add_argument(
        "components", nargs="*", help="what to set up (default: everything, e.g. core asterisk)"
    )
    setup.set_defaults(fn=cmd_setup)

    dbp = sub.add_parser("db", help="database").add_subparsers(dest="db_cmd", required=True)
    rev = dbp.add_parser("revision", help="(developers) autogenerate a migration")
    rev.add_argument("-m", "--message", required=True)
    rev.set_defaults(fn=cmd_db_revision)
    dbp.add_parser("upgrade", help="migrate to the latest schema").set_defaults(fn=cmd_db_upgrade)

    tok = sub.add_parser("token", help="API tokens").add_subparsers(dest="tok_cmd", required=True)
    create = tok.add_parser("create", help="create a token and print it once")
    create.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in Role if r is not Role.PUBLIC],  # public is "no token"
    )
    create.add_argument("--agency", help="agency code (role agency only)")
    create.add_argument("--name", default="token", help="who or what uses the token")
    create.add_argument("--subject", help="citizen identity (role citizen)")
    create.set_defaults(fn=cmd_token_create)
    tok.add_parser("list", help="list tokens (never their values)").set_defaults(fn=cmd_token_list)
    revoke = tok.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    revoke.set_defaults(fn=cmd_token_revoke)

    from ioc_core.access import cli as users

    users.register(sub)

    audit = sub.add_parser("audit", help="audit trail").add_subparsers(
        dest="audit_cmd", required=True
    )
    audit.add_parser("verify", help="check every incident's hash chain").set_defaults(
        fn=cmd_audit_verify
    )

    cat = sub.add_parser("catalogue", help="categories, areas, agencies").add_subparsers(
        dest="cat_cmd", required=True
    )
    cat.add_parser("load", help="(re)load the catalogue data files").set_defaults(
        fn=cmd_catalogue_load
    )
    for register in _plugins("ioc.commands").values():
        register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (ConfigError, IocError) as exc:
        print(f"ioc: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
