"""What the bots role keeps for its handlers: the running bots (on the web application) and
the bots' texts.

Their own module, so the composition root (bots.role) that builds them stands above the
handlers (bots.web) that use them, and neither imports the other's module to meet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from bots.core.channel import Channel
from bots.core.handlers import Services
from bots.core.sender import Sender
from bots.core.service import BotService
from bots.rasa.actions import RasaActions
from bots.settings import BotSettings
from bots.store.service import BotStore
from ioc_core.i18n import Translator
from nlu.client import Nlu

TEXTS = Translator(Path(__file__).resolve().parent / "locales")


@dataclass
class Bots:
    service: BotService
    store: BotStore
    nlu: Nlu
    settings: BotSettings
    services: Callable[[Channel], Services]
    channels: dict[str, Channel] = field(default_factory=dict)
    senders: dict[str, Sender] = field(default_factory=dict)
    # Rasa's custom actions (POST /nlu/actions), where the hub has a Rasa server.
    actions: RasaActions | None = None

    waiters: list[Callable[[], None]] = field(default_factory=list)

    def wake(self) -> None:
        for sender in self.senders.values():
            sender.wake()
        for waiter in self.waiters:
            waiter()


BOTS: web.AppKey[Bots] = web.AppKey("bots", Bots)
