"""What the telephony role keeps on the web application for its handlers: the calls store,
the switchboard (absent when it does not run here) and its settings.

Their own module, so the composition root (telephony.role) that fills them stands above the
handlers (telephony.web) that read them, and neither imports the other's module to meet."""

from __future__ import annotations

from aiohttp import web

from telephony.calls.service import CallStore
from telephony.settings import SwitchboardSettings
from telephony.switchboard.app import Switchboard

STORE: web.AppKey[CallStore] = web.AppKey("calls_store", CallStore)
SWITCHBOARD: web.AppKey[Switchboard] = web.AppKey("switchboard", Switchboard)
SWITCHBOARD_SETTINGS: web.AppKey[SwitchboardSettings] = web.AppKey(
    "switchboard_settings", SwitchboardSettings
)
