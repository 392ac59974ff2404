"""Composition root of the telephony role: the calls store, and the switchboard (ARI Stasis app,
AMI observer, agents, call-backs) started with the web app in its primary worker.

`IOC_SWITCHBOARD`: `auto` (default) runs it when `ioc setup asterisk` has prepared Asterisk
for this data folder; `on` always (it reconnects until Asterisk answers); `off` never (the
API still serves the calls tables)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web

from ioc_core.api import CoreApi
from ioc_core.api.openapi import contribute
from ioc_core.api.web import HEALTH_CHECKS, PRIMARY, core_of, system_api
from ioc_core.bus import Bus
from ioc_core.config import ConfigError
from ioc_core.db import utcnow
from telephony.agi.fastagi import FastAgiServer
from telephony.agi.lookups import SCRIPT, make_caller_lookup
from telephony.ami.client import AmiClient
from telephony.ari.client import AriClient
from telephony.asterisk.cdr import configured_path
from telephony.asterisk.config import SECRETS, AsteriskSettings, ensure_secrets
from telephony.calls.reconcile import Reconciler, reconciling
from telephony.calls.service import CallStore
from telephony.ivr.menus import Menu, load_menu
from telephony.ivr.session import run_ivr
from telephony.keys import STORE, SWITCHBOARD, SWITCHBOARD_SETTINGS
from telephony.settings import SwitchboardSettings, variables
from telephony.speech.engine import SpeechEngine, SpeechError
from telephony.speech.factory import configured_engine
from telephony.switchboard.agents import AgentDesk
from telephony.switchboard.app import IvrRunner, Switchboard
from telephony.switchboard.blocked import BlockedNumbers
from telephony.switchboard.supervise import publish, read_published, supervise

logger = logging.getLogger(__name__)

WRAPUP_S = 5  # queues.conf `wrapuptime`
HEALTH_FILE = "switchboard-health.json"  # the primary worker's report, for the other workers
HEALTH_EVERY_S = 5.0


def attach(app: web.Application) -> None:
    """`ioc.web` entry point: the API routes, and the switchboard's lifetime."""
    from telephony.web import openapi, routes
    from telephony.web_console import routes as console_routes

    app.add_routes(routes)
    app.add_routes(console_routes)
    contribute(app, openapi())
    app.cleanup_ctx.append(_lifetime)


def build_switchboard(
    *,
    store: CallStore,
    settings: SwitchboardSettings,
    asterisk: AsteriskSettings,
    api: CoreApi,
    host: str = "127.0.0.1",
    menu: Menu | None = None,
    stt: SpeechEngine | None = None,
    spool: Path | None = None,
    sounds: Path | None = None,
    timezone: str = "Asia/Ho_Chi_Minh",
    tracking_prefix: str = "PA",
    live_max: int | None = None,
    announce_s: int | None = None,
    bus: Bus | None = None,
) -> Switchboard:
    """`menu`: the 1022 voice menu (None: 1022 callers go straight to the queue); `bus`:
    where the drafts of answered calls are made from (telephony.switchboard.draft)."""
    ari = AriClient(
        base_url=f"http://{host}:{asterisk.http_port}",
        user=asterisk.ari_user,
        password=asterisk.ari_password,
        app="ioc",
    )
    ami = AmiClient(
        host=host, port=asterisk.ami_port, user=asterisk.ami_user, secret=asterisk.ami_password
    )
    desk = AgentDesk(
        ami=ami,
        store=store,
        agents=asterisk.all_agents(),
        queues=[s.queue for s in settings.services.values()],
        wrapup_s=WRAPUP_S,
        names=dict(settings.agent_names or {}),
    )
    ivr: IvrRunner | None = partial(run_ivr, menu=menu) if menu is not None else None
    return Switchboard(
        ari=ari,
        ami=ami,
        store=store,
        desk=desk,
        api=api,
        settings=settings,
        ivr=ivr,
        record_calls=asterisk.record_calls,
        stt=stt,
        spool=spool,
        sounds=sounds,
        timezone=timezone,
        tracking_prefix=tracking_prefix,
        announce_s=asterisk.announce_s if announce_s is None else announce_s,
        live_max=asterisk.live_max if live_max is None else live_max,
        audiosocket_port=asterisk.audiosocket_port,
        bus=bus,
    )


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    core = core_of(app)
    settings = SwitchboardSettings.from_env()  # a wrong file stops the start, saying why
    store = CallStore(sessions=core.sessions, settings=settings, on_commit=core.relay.notify)
    app[STORE] = store
    app[SWITCHBOARD_SETTINGS] = settings
    env = variables()
    mode = env("IOC_SWITCHBOARD")
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"IOC_SWITCHBOARD must be auto, on or off, got {mode!r}")
    state_dir = core.settings.data_dir / "asterisk"
    prepared = (state_dir / SECRETS).exists()
    health_file = state_dir / HEALTH_FILE
    if mode == "off" or (mode == "auto" and not prepared):
        yield
        return
    if not app[PRIMARY]:
        # The switchboard runs in the primary worker; this one reports what it last wrote
        # (or that it stopped writing: a dead or hung primary).
        async def published() -> dict[str, Any]:
            return read_published(health_file, now=utcnow(), stale_s=3 * HEALTH_EVERY_S)

        app[HEALTH_CHECKS]["switchboard"] = published
        yield
        return
    # `on` runs it even where `ioc setup asterisk` has not: the passwords are made then.
    ensure_secrets(state_dir)
    asterisk = AsteriskSettings.from_env(state_dir)
    sb = build_switchboard(
        store=store,
        settings=settings,
        asterisk=asterisk,
        api=system_api(app, name="switchboard"),
        host=env("IOC_ASTERISK_HOST"),
        menu=load_menu(),
        stt=_stt(core.settings.cache_dir),
        spool=state_dir / "spool",
        sounds=state_dir / "sounds",
        timezone=core.settings.timezone,
        tracking_prefix=core.settings.tracking_prefix,
        bus=core.bus,
    )
    app[SWITCHBOARD] = sb
    agi = caller_lookup_server(
        store=store,
        api=system_api(app, name="switchboard"),
        blocked=BlockedNumbers(path=core.settings.data_dir / "blocked-numbers.txt"),
        port=asterisk.agi_port,
    )
    await agi.start()

    async def report() -> dict[str, Any]:
        return switchboard_report(sb, agi)

    app[HEALTH_CHECKS]["switchboard"] = report
    # Supervised: whatever escapes the switchboard's own supervision starts it again.
    task = asyncio.create_task(supervise("switchboard", sb.run, health=sb.health))
    publisher = asyncio.create_task(_publish_health(sb, agi, health_file))
    logger.info("switchboard started (FastAGI on 127.0.0.1:%d)", agi.port)
    # Calls Asterisk recorded while the hub was away get their records and call-backs.
    records = Reconciler(
        store=store, sessions=core.sessions, settings=settings, path=configured_path(state_dir)
    )
    try:
        async with reconciling(records):
            yield
    finally:
        for t in (task, publisher):
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await sb.close()
        await agi.close()
        health_file.unlink(missing_ok=True)


def switchboard_report(sb: Switchboard, agi: FastAgiServer) -> dict[str, Any]:
    """The switchboard's component of `/health`: ARI, AMI, FastAGI, Asterisk, the last error."""
    return sb.health.report(
        {
            "ari": sb.ari.connected.is_set(),
            "ami": sb.ami.connected.is_set(),
            "fastagi": agi.listening,
        }
    )


async def _publish_health(sb: Switchboard, agi: FastAgiServer, path: Path) -> None:
    """For the other HTTP workers' `/health`: the primary's report, every HEALTH_EVERY_S."""
    while True:
        try:
            await asyncio.to_thread(publish, path, switchboard_report(sb, agi))
        except OSError:
            logger.warning("cannot write %s", path, exc_info=True)
        await asyncio.sleep(HEALTH_EVERY_S)


def _stt(cache_dir: Path) -> SpeechEngine | None:
    """The speech engine for messages; without one the switchboard runs without it."""
    try:
        return configured_engine(cache_dir)
    except SpeechError as exc:
        logger.warning("messages will not be transcribed: %s", exc)
        return None


def caller_lookup_server(
    *, store: CallStore, api: CoreApi, blocked: BlockedNumbers, port: int
) -> FastAgiServer:
    """FastAGI `lookup`: the caller's history, open incidents and barring, for the dialplan."""

    # Who reported what is staff knowledge: the look-up asks as a call-taker.
    staff = api.calltaker("switchboard")

    async def open_incidents(number: str) -> tuple[int, str | None]:
        found = await staff.caller_incidents(number)
        return int(found["open"]), found["latest"]

    handler = make_caller_lookup(
        history=store.caller_history, open_incidents=open_incidents, blocked=blocked
    )
    return FastAgiServer(handlers={SCRIPT: handler}, host="127.0.0.1", port=port)
