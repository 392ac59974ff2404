"""Composition root of the bots role: the conversation engine with its flows, the NLU, the
store, the channels whose secrets are configured, their senders, and the notifications.

Webhooks are served by every HTTP worker; the senders and the notification consumer run in
the primary worker only (one sender per channel keeps the cloud's rate limits)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from bots.core.channel import Channel
from bots.core.engine import Engine
from bots.core.flows import load_flows
from bots.core.handlers import HANDLERS, PROVIDERS, STARTERS, Faq, Services
from bots.core.sender import Sender
from bots.core.service import BotService
from bots.keys import BOTS, TEXTS, Bots
from bots.notify import NAMES, Notifier
from bots.rasa.actions import RasaActions
from bots.rasa.channel import RasaChannel
from bots.settings import BotSettings
from bots.store.service import BotStore
from bots.webchat.channel import WebChatChannel
from ioc_core.api.openapi import contribute
from ioc_core.api.web import PRIMARY, core_of, system_api
from ioc_core.config import Settings
from nlu.client import Nlu, configured_nlu
from nlu.settings import NluSettings

logger = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent
PROCEDURES = PACKAGE / "data" / "procedures.json"
NOTIFY_GROUP = "bots-notify"


def attach(app: web.Application) -> None:
    """`ioc.web` entry point: webhooks, the hand-off API, and the bots' lifetime."""
    from bots.web import openapi, routes

    app.add_routes(routes)
    contribute(app, openapi())
    app.cleanup_ctx.append(_lifetime)


def make_engine(nlu: Nlu, *, min_confidence: float = 0.45) -> Engine:
    """The engine with the shipped flows, handlers and texts."""
    return Engine(
        flows=load_flows(),
        handlers=HANDLERS,
        providers=PROVIDERS,
        starters=STARTERS,
        texts=TEXTS,
        nlu=nlu,
        min_confidence=min_confidence,
    )


def build_bots(
    app: web.Application, settings: BotSettings, nlu: Nlu, *, min_confidence: float
) -> Bots:
    core = core_of(app)
    api = system_api(app, name="bots")
    faq = Faq.load(PROCEDURES)
    holder: list[Bots] = []
    store = BotStore(
        sessions=core.sessions,
        uploads=core.settings.data_dir / "bots" / "uploads",
        ttl_s=settings.session_ttl_s,
        on_queued=lambda: holder[0].wake() if holder else None,
        on_event=core.relay.notify,
    )
    engine = make_engine(nlu, min_confidence=min_confidence)
    categories: list[dict[str, object]] = []

    def services(channel: Channel) -> Services:
        s = Services(
            api=api,
            public=api.public(),
            store=store,
            faq=faq,
            fetch_photo=channel.fetch_photo,
            timezone=core.settings.timezone,
            max_photos=core.settings.max_attachments,
        )
        s._categories = categories  # shared: the catalogue is read once
        return s

    bots = Bots(
        service=BotService(engine=engine, store=store, services=services),
        store=store,
        nlu=nlu,
        settings=settings,
        services=services,
    )
    holder.append(bots)
    return bots


def _zalo(settings: BotSettings, hub: Settings) -> Channel:
    import aiohttp

    from bots.zalo.adapter import TokenKeeper, ZaloChannel

    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    tokens = TokenKeeper(
        path=hub.data_dir / "bots" / "zalo-tokens.json",
        app_id=settings.zalo_app_id,
        app_secret=settings.zalo_app_secret,
        oauth_base=settings.zalo_oauth,
        access=settings.zalo_access_token,
        refresh=settings.zalo_refresh_token,
        http=http,
    )
    return ZaloChannel(
        app_id=settings.zalo_app_id,
        oa_secret=settings.zalo_oa_secret,
        api_base=settings.zalo_api,
        tokens=tokens,
        http=http,
        max_photo_bytes=hub.max_attachment_bytes,
    )


async def _lifetime(app: web.Application) -> AsyncIterator[None]:
    settings = BotSettings.from_env()  # a wrong value stops the start, saying which
    nlu_settings = NluSettings.from_env()
    nlu = configured_nlu(core_of(app).settings, nlu_settings)
    bots = build_bots(app, settings, nlu, min_confidence=nlu_settings.min_confidence)
    app[BOTS] = bots
    if settings.telegram:
        from bots.telegram.adapter import TelegramChannel

        telegram = TelegramChannel(token=settings.telegram_token, api_base=settings.telegram_api)
        await telegram.start()
        bots.channels["telegram"] = telegram
    if settings.zalo:
        bots.channels["zalo"] = _zalo(settings, core_of(app).settings)
    # The web chat needs no cloud: always on; its sockets deliver its replies.
    web_chat = WebChatChannel(
        store=bots.store, max_photo_bytes=core_of(app).settings.max_attachment_bytes
    )
    bots.channels["web"] = web_chat
    bots.waiters.append(web_chat.wake)
    if nlu.url:
        # Rasa's own channels: its custom actions are served here, and what the hub has to
        # tell those conversations later goes back through Rasa.
        rasa = RasaChannel(url=nlu.url, token=nlu.token)
        bots.channels["rasa"] = rasa
        bots.actions = RasaActions(
            engine=bots.service.engine, store=bots.store, services=bots.services, channel=rasa
        )
    tasks: list[asyncio.Task[None]] = []
    subscribed = False
    if app[PRIMARY]:
        for name, channel in bots.channels.items():
            if name == "web":
                continue  # delivered by the chat's own socket
            sender = Sender(
                channel=channel,
                store=bots.store,
                chat_rate=settings.chat_rate,
                global_rate=settings.global_rate,
                attempts=settings.send_attempts,
            )
            bots.senders[name] = sender
            tasks.append(asyncio.create_task(sender.run(), name=f"sender:{name}"))
        if bots.channels:  # the web chat is always there
            notifier = Notifier(store=bots.store, api=system_api(app, name="bots"), texts=TEXTS)
            core_of(app).bus.subscribe(group=NOTIFY_GROUP, handler=notifier, names=NAMES)
            subscribed = True
            logger.info("bots: %s", ", ".join(bots.channels))
    try:
        yield
    finally:
        if subscribed:
            await core_of(app).bus.unsubscribe(NOTIFY_GROUP)
        for sender in bots.senders.values():
            sender.stop()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sender in bots.senders.values():
            await sender.close()
        for channel in bots.channels.values():
            close = getattr(channel, "close", None)
            if close is not None:
                await close()
        await nlu.close()
