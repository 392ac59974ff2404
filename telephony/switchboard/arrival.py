"""A caller's arrival in the Stasis app, recorded the same way by every route."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from telephony.ari.events import caller_number
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore


async def arrived(store: CallStore, channel: Mapping[str, Any], args: list[str]) -> None:
    """Stasis arguments after the route: service, then the caller look-up's count of earlier
    calls and its status (the dialplan's IOC_CALLER_CALLS, IOC_AGI_STATUS)."""
    service = args[0] if args else ""
    info: dict[str, Any] = {}
    if len(args) >= 3 and args[2] == "ok" and args[1].isdigit():
        info["caller_calls"] = int(args[1])  # no second count of the same rows
    await store.record(
        str(channel["id"]),
        Fact.ARRIVED,
        ani=caller_number(channel),
        service=service,
        channel=str(channel.get("name", "")),
        **info,
    )
