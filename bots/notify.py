"""Telling citizens on the channel they used what became of their report (CH-3): state
changes, public replies, merges — from the bus, queued for the senders (rate limits, retries,
the channels' windows, dead letters live there).

Only the chats that reported the incident (or a duplicate merged into it) hear about it, and
a notice carries nothing about other reporters: confidential reporters stay hidden. Every
event is handled once (its id is recorded with the notices, in one transaction); events
older than MAX_AGE are not news any more (a new Redis group reads the stream's history)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from bots.messages import Reply
from bots.store.service import BotStore, Recipient
from ioc_core import events as ev
from ioc_core.api import CoreApi, CoreApiError
from ioc_core.bus import Event
from ioc_core.db import utcnow
from ioc_core.i18n import Translator

logger = logging.getLogger(__name__)

MAX_AGE = timedelta(hours=6)
NAMES = (ev.INCIDENT_STATE_CHANGED, ev.INCIDENT_REPLY_ADDED, ev.INCIDENT_MERGED)
# States a citizen is told about (drafts, cancellations and merges have their own path).
TOLD = frozenset({"verified", "assigned", "in_progress", "resolved", "closed", "rejected"})
NOTE_MAX = 1000


class Notifier:
    def __init__(self, *, store: BotStore, api: CoreApi, texts: Translator) -> None:
        self.store, self.api, self.texts = store, api, texts

    async def __call__(self, event: Event) -> None:
        if utcnow() - event.occurred_at > MAX_AGE:
            logger.info("notices: %s %s is too old to tell", event.name, event.event_id)
            return
        p = event.payload
        try:
            incident = await self.api.get_incident(p["incident_id"])
        except CoreApiError as exc:
            if exc.status == 404:
                return
            raise
        ids = [incident["id"], *(d["id"] for d in incident.get("duplicates", []))]
        recipients = await self.store.recipients(ids)
        if not recipients:
            return
        text = await self._text(event, incident)
        if text is None:
            return
        notices = {r: [Reply(text(r.language))] for r in recipients}
        await self.store.queue_notices(event.event_id, notices)

    async def _text(self, event: Event, incident: dict[str, Any]) -> Any:
        """A function language -> text, or None when the citizen is not told."""
        p, t = event.payload, self.texts.t
        code = incident["code"]
        if event.name == ev.INCIDENT_STATE_CHANGED:
            state = p["to_state"]
            if state not in TOLD:
                return None
            note = await self._note(code, p) if state in ("resolved", "rejected") else ""
            agency = incident.get("agency") or ""
            return lambda lang: t(f"notify.{state}", lang, code=code, agency=agency, note=note)
        if event.name == ev.INCIDENT_REPLY_ADDED:
            body = next(
                (r["body"] for r in incident.get("replies", []) if r["id"] == p["entry_id"]), ""
            )
            if not body:
                return None
            return lambda lang: t("notify.reply", lang, code=code, body=body[:NOTE_MAX])
        if event.name == ev.INCIDENT_MERGED:
            primary = p["primary_code"]
            return lambda lang: t("notify.merged", lang, code=p["code"], primary=primary)
        return None

    async def _note(self, code: str, p: Mapping[str, Any]) -> str:
        """The public reason given with a result or a refusal (the transition's note)."""
        rows = await self.api.timeline(code)
        for row in reversed(rows):
            if row.get("kind") == "transition" and row.get("to_state") == p["to_state"]:
                return str(row.get("note") or "")[:NOTE_MAX]
        return ""


__all__ = ["NAMES", "Notifier", "Recipient"]
