"""An answered call's draft incident, made from the bus once (ADR 0023).

The call's own transaction stages `call.answered` in the outbox; this consumer makes the draft:

1. claim the call's draft slot (one transaction on the calls table);
2. ask the core for the draft, as the agent who answered;
3. link the draft to the call and mark the event consumed (one transaction; the link is
   unique: one call, one draft).

A process that dies anywhere before 3 leaves the event unconsumed: it is delivered again
after the restart and the draft is made then; and at every start the switchboard catches up
with the calls answered in the last day that have no draft (`catch_up`), for an event its
consumer was not subscribed yet to receive. A redelivery after 3 finds the mark and makes
nothing. The claim tells a maker that another was interrupted after 1 (logged). The report
asked in 2 is kept with the claim and sent with the call's own idempotency key, so a death
between the core's commit and 3 is answered, on the next delivery, with the draft the core
already made.

The caller's recorded description (1022 "say what happened") goes into the draft when it is
transcribed in time; otherwise it becomes a note on the draft when its transcript is kept
(`call.transcript.final`), whichever of the two happens last writes it, once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ioc_core import events as ev
from ioc_core.api import CoreApi
from ioc_core.bus import Bus, Event
from ioc_core.db import utcnow
from nlu.keywords import emergency_service, suggest_category
from telephony.calls.service import CallStore
from telephony.i18n import t
from telephony.settings import Service, SwitchboardSettings

logger = logging.getLogger(__name__)

DRAFTS = "switchboard-drafts"  # bus group and consumer mark of `call.answered`
DESCRIPTIONS = "switchboard-descriptions"  # bus group of `call.transcript.final`
# How long a draft waits for the transcript of the caller's description before it is opened
# without it; a later transcript becomes a note on the draft.
DESCRIPTION_WAIT_S = 5.0
CATCH_UP = timedelta(days=1)  # how far back a start looks for calls answered without a draft
PHONE = re.compile(r"^\+?[0-9]{3,15}$")


@dataclass(frozen=True)
class Description:
    """What the caller said after the tone, and what it suggests."""

    text: str
    emergency: str | None  # 113/114/115 when emergency words were heard
    category: str | None  # the catalogue category its words match best


def description_lines(desc: Description) -> list[str]:
    lines = [t("draft.said", text=desc.text)]
    if desc.emergency:
        lines.append(t("draft.emergency", number=desc.emergency))
    if desc.category:
        lines.append(t("draft.suggested", category=desc.category))
    return lines


class Drafts:
    """Makes each answered citizen's call's draft incident, once, from the bus."""

    def __init__(
        self,
        *,
        store: CallStore,
        api: CoreApi,
        settings: SwitchboardSettings,
        pending: dict[str, asyncio.Task[Description | None]] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`pending`: call id -> the description being transcribed in this process (the
        switchboard's); a draft waits a moment for it rather than add a note soon after."""
        self._store = store
        self._api = api
        self._settings = settings
        self.pending: dict[str, asyncio.Task[Description | None]] = (
            {} if pending is None else pending
        )
        self._keywords: dict[str, list[str]] | None = None  # the catalogue's, fetched once
        self._bus: Bus | None = None
        self._clock = clock
        # One maker per call at a time in this process (the bus and the start-up's catch-up).
        self._making: dict[str, tuple[asyncio.Lock, int]] = {}

    def subscribe(self, bus: Bus) -> None:
        if self._bus is None:
            bus.subscribe(group=DRAFTS, handler=self._answered, names={ev.CALL_ANSWERED})
            bus.subscribe(
                group=DESCRIPTIONS, handler=self._transcribed, names={ev.CALL_TRANSCRIPT_FINAL}
            )
            self._bus = bus

    async def unsubscribe(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            await bus.unsubscribe(DRAFTS)
            await bus.unsubscribe(DESCRIPTIONS)

    async def _answered(self, event: Event) -> None:
        uid = str(event.payload["call_id"])
        if event.payload.get("direction") != "in":
            return  # a call-back the citizen picked up: its call already has its draft
        if not event.payload.get("agent"):
            # Known answered only from Asterisk's call records (the hub was away): it was
            # handled without a draft, and there is nobody to open one as.
            return
        if self._settings.service(str(event.payload.get("service", ""))) is None:
            self.pending.pop(uid, None)
            return
        await self.make(uid, key=event.event_id)

    async def _transcribed(self, event: Event) -> None:
        if event.payload.get("kind") == "ivr":
            await self.note_description(str(event.payload["call_id"]))

    async def catch_up(self) -> None:
        """Make the drafts of calls answered lately that have none: their `call.answered` may
        have been published before this consumer subscribed (the in-process bus keeps no
        history for a group that is not there yet)."""
        for uid in await self._store.answered_without_draft(self._clock() - CATCH_UP):
            call = await self._store.get_call(uid)
            if call is not None and self._settings.service(call["service"]) is not None:
                await self.make(uid, key=None)

    async def make(self, uid: str, *, key: str | None) -> str | None:
        """Open call `uid`'s draft as the agent who answered, prefilled from the call (the
        call-taker completes it through the API); `key` is the `call.answered` event's id
        (None: the catch-up at start). Returns the draft's code, or None when there was
        nothing to make."""
        lock, users = self._making.get(uid) or (asyncio.Lock(), 0)
        self._making[uid] = (lock, users + 1)
        try:
            async with lock:
                return await self._make(uid, key)
        finally:
            lock, users = self._making[uid]
            if users == 1:
                del self._making[uid]
            else:
                self._making[uid] = (lock, users - 1)

    async def _make(self, uid: str, key: str | None) -> str | None:
        claim = await self._store.claim_draft(uid, consumer=DRAFTS, key=key)
        if claim.verdict == "done" or claim.call is None:
            self.pending.pop(uid, None)
            return None
        if claim.verdict == "again":
            logger.warning("the draft of call %s was interrupted before; making it now", uid)
        call = claim.call
        staff = self._api.calltaker(self._agent_name(call))
        asked = claim.request
        if asked is None:
            service = self._settings.service(call["service"])
            if service is None:
                return None
            asked = await self._request(uid, call, service, staff)
            await self._store.keep_draft_request(uid, asked)
        # The call's own key: a maker that died after the core's commit resends the same
        # request and gets the draft it made, never a second one.
        created = await staff.report_incident(asked["report"], idempotency_key=f"call:{uid}")
        code = str(created["code"])
        described = bool(asked["described"])
        await self._store.link_draft(uid, code, consumer=DRAFTS, key=key, described=described)
        if not described:
            # Its transcript may have been kept while the draft was being made: the
            # transcript's own event found no draft to note it on then.
            await self.note_description(uid)
        return code

    async def _request(
        self, uid: str, call: Mapping[str, Any], service: Service, staff: CoreApi
    ) -> dict[str, Any]:
        """The draft's report, prefilled from the call (the call-taker completes it through
        the API), and whether it carries the caller's description."""
        ani = call.get("ani") or ""
        lines = [
            t("draft.call", service=service.name_vi, number=service.number, ani=ani or "?"),
            t("draft.history", calls=call.get("caller_calls", 0)),
        ]
        if PHONE.match(ani):
            # The caller's other open reports: the call-taker may be hearing about one again.
            found = await staff.caller_incidents(ani)
            if found["open"]:
                lines.append(t("draft.open", count=found["open"], latest=found["latest"]))
        if call.get("ivr_choices"):
            lines.append(
                t("draft.ivr", choices=", ".join(f"{n}={d}" for n, d in call["ivr_choices"]))
            )
        desc = await self._description(uid)
        if desc is not None:
            lines += description_lines(desc)
        # What the call tells about the caller (number, earlier calls, other reports, their
        # words) is staff-only: an internal note. The public title is the category's name
        # (the core's default for an empty title) and the description stays for the
        # call-taker to write, so a draft verified as it came shows nobody's number.
        report: dict[str, Any] = {
            "category": desc.category if desc and desc.category else service.category,
            "channel": "phone",
            "priority": "urgent" if desc and desc.emergency else service.priority,
            "language": call.get("language") or "vi",
            "title": "",
            "description": "",
            "internal_note": "\n".join(lines),
            "external_ref": f"call:{uid}",
            "draft": True,
        }
        if PHONE.match(ani):
            report["reporter"] = {"phone": ani}
        return {"report": report, "described": desc is not None}

    async def note_description(self, uid: str) -> None:
        """The caller's description as a note on the call's draft, when the draft exists and
        lacks it; nothing otherwise (the draft, made later, takes it in itself)."""
        text = await self._store.description(uid)
        if not text:
            return
        code = await self._store.describe_draft(uid)
        if code is None:
            return
        try:
            call = await self._store.get_call(uid) or {}
            staff = self._api.calltaker(self._agent_name(call))
            await staff.add_note(code, "\n".join(description_lines(await self.describe(text))))
        except BaseException:
            # Not written: the duty goes back, and the event is delivered again.
            await self._store.describe_draft(uid, described=False)
            raise

    async def describe(self, text: str) -> Description:
        """The caller's words, the emergency number they point to, the category they suggest."""
        if self._keywords is None:
            self._keywords = await self._api.category_keywords()
        return Description(
            text=text,
            emergency=emergency_service(text),
            category=suggest_category(text, self._keywords),
        )

    async def _description(self, uid: str) -> Description | None:
        """The caller's description if it is ready within DESCRIPTION_WAIT_S."""
        task = self.pending.pop(uid, None)
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=DESCRIPTION_WAIT_S)
            if done and not task.cancelled() and task.exception() is None:
                found = task.result()
                if found is not None:
                    return found
        # Transcribed by a process that died since, or kept before this one looked.
        text = await self._store.description(uid)
        return await self.describe(text) if text else None

    def _agent_name(self, call: Mapping[str, Any]) -> str:
        agent = call.get("agent") or ""
        return (self._settings.agent_names or {}).get(agent) or t("agent.default_name", ext=agent)
