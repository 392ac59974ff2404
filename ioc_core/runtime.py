"""Composition root of the core role: builds and wires every long-lived object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ioc_core import db
from ioc_core.access.sessions import SessionVerifier
from ioc_core.access.staff import Passwords
from ioc_core.access.tokens import TokenVerifier
from ioc_core.bus import Bus, make_bus
from ioc_core.catalogue.service import Catalogue, load_catalogue
from ioc_core.config import Settings
from ioc_core.incidents.tracking import TrackingAllocator
from ioc_core.migrate import upgrade
from ioc_core.outbox import Relay

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Core:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: Bus
    relay: Relay
    catalogue: Catalogue
    tracking: TrackingAllocator
    tokens: TokenVerifier
    signins: SessionVerifier  # staff sessions (the ioc_session cookie)
    passwords: Passwords
    clock: Callable[[], datetime] = db.utcnow

    async def health(self) -> dict[str, Any]:
        database, bus = await asyncio.gather(db.ping(self.engine), self.bus.health())
        try:
            backlog = await self.relay.backlog()
            outbox = {"status": "ok" if backlog < 10_000 else "degraded", "backlog": backlog}
        except Exception as exc:
            outbox = {"status": "down", "error": str(exc)}
        components = {"database": database, "bus": dict(bus), "outbox": outbox}
        worst = "ok"
        for c in components.values():
            if c.get("status") == "down":
                worst = "down"
            elif c.get("status") != "ok" and worst == "ok":
                worst = "degraded"
        return {"status": worst, "components": components}

    async def close(self) -> None:
        await self.relay.close()
        await self.bus.close()
        # In embedded mode the bus has just run the last consumers: forget their events now
        # rather than deliver them again at the next start.
        try:
            await self.relay.delete_handled()
        except Exception:
            logger.warning("outbox: handled events not deleted; they are redelivered at start")
        await self.engine.dispose()


def build_core(settings: Settings, *, bus: Bus | None = None) -> Core:
    engine = db.make_engine(settings.database_url, pool_size=settings.db_pool_size)
    sessions = db.make_sessionmaker(engine)
    bus = bus or make_bus(settings)
    return Core(
        settings=settings,
        engine=engine,
        sessions=sessions,
        bus=bus,
        relay=Relay(sessions=sessions, bus=bus),
        catalogue=Catalogue(sessions=sessions),
        tracking=TrackingAllocator(
            sessions=sessions, prefix=settings.tracking_prefix, block=settings.tracking_block
        ),
        tokens=TokenVerifier(sessions=sessions, cache_s=settings.token_cache_s),
        signins=SessionVerifier(sessions=sessions),
        passwords=Passwords(),
    )


async def prepare_database(settings: Settings) -> dict[str, int]:
    """Migrate to head and load the default catalogue into an empty database."""
    await upgrade(settings.database_url)
    engine = db.make_engine(settings.database_url)
    try:
        async with db.transaction(db.make_sessionmaker(engine)) as s:
            return await load_catalogue(s, settings, only_if_empty=True)
    finally:
        await engine.dispose()


async def start_core(settings: Settings, *, bus: Bus | None = None, migrate: bool = True) -> Core:
    if migrate:
        await prepare_database(settings)
    settings.attachments_dir.mkdir(parents=True, exist_ok=True)
    core = build_core(settings, bus=bus)
    await core.catalogue.refresh()
    await core.bus.start()
    await core.relay.start()
    return core
