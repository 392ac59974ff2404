"""What an ARI event says, read the same way by the router, the IVR and the call-backs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def channel_of(event: Mapping[str, Any]) -> str | None:
    """The channel an ARI event concerns: `channel.id`, or the `channel:<id>` of
    `playback.target_uri` / `recording.target_uri`. ARI quirk: Playback* and Recording*
    events carry no channel object, so a router keyed on `event["channel"]["id"]` never
    delivers them."""
    channel = event.get("channel")
    if isinstance(channel, Mapping) and isinstance(channel.get("id"), str):
        return str(channel["id"])
    for key in ("playback", "recording"):
        media = event.get(key)
        if isinstance(media, Mapping):
            uri = str(media.get("target_uri", ""))
            if uri.startswith("channel:"):
                return uri.removeprefix("channel:")
    return None


def caller_number(channel: Mapping[str, Any]) -> str:
    """The caller's number on an ARI channel; "" when withheld."""
    number = str((channel.get("caller") or {}).get("number", ""))
    return "" if number in ("<unknown>", "anonymous") else number


def channel_cause(event: Mapping[str, Any]) -> int:
    """The Q.850 cause of a ChannelDestroyed event (0 when it gives none)."""
    try:
        return int(event.get("cause", 0))
    except (TypeError, ValueError):
        return 0
