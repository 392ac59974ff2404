"""Every dialplan variable the Python side reads or sets, declared once (a test checks each
against dialplans/etc/extensions.conf)."""

from __future__ import annotations

from typing import Final

SERVICE: Final = "IOC_SERVICE"  # the hotline number dialled (inherited by the queue legs)
LANGUAGE: Final = "IOC_LANG"  # vi | en, chosen in the IVR (the overflow prompt uses it)
QUEUE_PRIO: Final = "QUEUE_PRIO"  # app_queue's priority inside a queue
STASIS_APP: Final = "ioc"  # the one Stasis application
# The CDR variable (Set(CDR(...))) naming a citizen's call's hotline number in Asterisk's own
# call records (cdr_custom.conf); only inbound hotline calls carry it (ADR 0018).
CDR_SERVICE: Final = "ioc_service"
# The console's telephony (telephony/switchboard/console.py, extensions.conf):
CALL: Final = "IOC_CALL"  # the call's id in the calls API (X-IOC-Call on the agent's leg)
ROOM: Final = "IOC_ROOM"  # the ConfBridge room of a three-way call ([ioc-conference])
SPY: Final = "IOC_SPY"  # the agent a supervisor listens to ([ioc-monitor])
SPY_MODE: Final = "IOC_SPY_MODE"  # ChanSpy's options: q, qw or qB

ALL: Final = (SERVICE, LANGUAGE, QUEUE_PRIO, CDR_SERVICE, CALL, ROOM, SPY, SPY_MODE)
