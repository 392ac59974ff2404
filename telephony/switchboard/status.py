"""The status line of the 1022 menu: a caller keys in a tracking code and hears the state of
that report (and its deadline), read out from the core."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ioc_core.api import CoreApi, CoreApiError, format_tracking_code
from telephony.ari.client import AriError, ChannelGone
from telephony.calls.lifecycle import Fact
from telephony.calls.service import CallStore
from telephony.i18n import t
from telephony.switchboard.voice import Voice

logger = logging.getLogger(__name__)


class StatusLine:
    def __init__(
        self, *, voice: Voice, store: CallStore, api: CoreApi, tracking_prefix: str, zone: ZoneInfo
    ) -> None:
        self._voice = voice
        self._store = store
        self._api = api
        self._prefix = tracking_prefix
        self._zone = zone

    async def read_out(self, cid: str, entered: str, language: str) -> None:
        """Read out the state of the report whose code was keyed in, then say goodbye; a code
        that names nothing (or any failure) leads to an operator instead."""
        events = self._voice.events(cid)
        found = False
        try:
            code = tracking_code(self._prefix, entered)
            incident = await self._lookup(code) if code else None
            found = incident is not None
            text = status_text(language, incident, self._zone)
            await self._voice.announce(cid, text, language, events)
            if found:
                await self._voice.say(cid, "goodbye", language, events)
        except ChannelGone:
            return  # the caller hung up meanwhile; the observer ends the call
        except Exception:
            logger.exception("status read-out failed on %s; the caller goes to the queue", cid)
            found = False
        finally:
            self._voice.release(cid)
        if not found:
            await self._voice.continue_in_dialplan(cid)
            return
        await self._store.record(cid, Fact.SELF_SERVED)
        with contextlib.suppress(ChannelGone, AriError):
            await self._voice.ari.hang_up(cid)

    async def _lookup(self, code: str) -> dict[str, Any] | None:
        try:
            return await self._api.get_incident(code)
        except CoreApiError as exc:
            if exc.status == 404:
                return None
            raise


def tracking_code(prefix: str, entered: str) -> str | None:
    """Keys to a tracking code: the year's four digits, then the number (PA-2026-000123 is
    keyed 2026123); None when that cannot be a code."""
    if not entered.isdigit() or len(entered) < 5 or not entered.startswith("20"):
        return None
    number = int(entered[4:])
    return format_tracking_code(prefix, int(entered[:4]), number) if 0 < number < 10**9 else None


def status_text(language: str, incident: Mapping[str, Any] | None, zone: ZoneInfo) -> str:
    """What the caller hears about their report: its state, and its deadline when it has one."""
    if incident is None:
        return t("status.not_found", language)
    prefix, year, number = str(incident["code"]).split("-")
    label = incident.get("state_label") or {}
    text = t(
        "status.found",
        language,
        prefix=" ".join(prefix),  # "P A": letters, not a word
        year=year,
        number=int(number),
        state=label.get(language) or label.get("vi") or incident.get("state", ""),
    )
    if incident.get("due_at"):
        due = datetime.fromisoformat(str(incident["due_at"])).astimezone(zone)
        text += " " + t("status.due", language, date=due.strftime("%d/%m/%Y"))
    return text
