"""Rasa's custom actions, served by the hub at POST /nlu/actions over Rasa's JSON action
protocol (rasa-sdk is not used: ADR 0015). Rasa sends the action to run and the
conversation's tracker; the hub answers with the handlers and texts its own bots use
(bots/core/handlers.py, bots/locales) and returns Rasa events (slots, form control) and
responses.

This serves Rasa's *own* channels (REST, socket.io, ...) that a province may already run; the
hub's Telegram, Zalo and web chat converse in the hub's engine and never come here. A Rasa
conversation is the hub's chat ("rasa", sender_id): its reports, subscriptions and hand-off
are kept like any other chat's, and what the hub has to tell it later (notices, an agent's
words) is pushed back through Rasa (bots/rasa/channel.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bots.core.channel import Channel
from bots.core.engine import Ctx, Engine
from bots.core.handlers import (
    EMERGENCY_CATEGORY,
    Services,
    emergency_location,
    report_collected,
    start_emergency,
    subscribe_area,
)
from bots.messages import MAX_TEXT, Conversation, Inbound, Reply, cleaned
from bots.store.service import BotStore
from ioc_core.i18n import LANGUAGES
from nlu.client import ENTITIES, Understanding, understanding
from nlu.safety import NUMBER_OF, emergency_number

logger = logging.getLogger(__name__)

CHANNEL = "rasa"
MAX_SENDER = 64  # bot_chats.chat_id
# What the hub pushes into a Rasa conversation (bots/rasa/channel.py): an intent nobody says,
# carrying the reply as an entity, which action_relay_message says.
PUSHED = "EXTERNAL_hub_message"
RELAYED = "hub_message"
# Actions that are the start of one of the hub's flows; the citizen's answers to the flow's
# question come back through Rasa's understanding (a code, a score, a question).
FLOWS = {
    "action_check_status": "status",
    "action_rate_service": "rate",
    "action_answer_procedure": "procedure",
    "action_human_handoff": "handoff",
}


class ActionError(Exception):
    """Answered as Rasa's action client reads it: `{"error", "action_name"}` with `status`
    (400: a bad request; 404: no such action)."""

    def __init__(self, status: int, action: str, message: str) -> None:
        super().__init__(message)
        self.status, self.action, self.message = status, action, message

    def as_dict(self) -> dict[str, str]:
        return {"error": self.message, "action_name": self.action}


@dataclass(frozen=True)
class ActionCall:
    """What the hub needs of Rasa's request: the action, the conversation, the latest
    message as Rasa parsed it, and the slots."""

    action: str
    sender_id: str
    text: str = ""
    intent: dict[str, Any] = field(default_factory=dict)
    entities: list[dict[str, Any]] = field(default_factory=list)
    slots: dict[str, Any] = field(default_factory=dict)
    language: str = ""  # from the message's metadata; "" keeps the chat's own
    message_id: str = ""

    def slot(self, name: str) -> str:
        value = self.slots.get(name)
        return "" if value is None else str(value).strip()

    def entity(self, name: str) -> Any:
        return next((e.get("value") for e in self.entities if e.get("entity") == name), None)

    def understanding(self) -> Understanding:
        """Rasa's parse of the latest message through the same pre-check the hub's bots use;
        slots fill the entities the message itself did not name (a code given earlier)."""
        named = {e.get("entity") for e in self.entities}
        remembered = [
            {"entity": name, "value": value, "start": 0, "end": 0}
            for name in ENTITIES
            if name not in named and (value := self.slot(name))
        ]
        return understanding(
            self.text, {"intent": self.intent, "entities": [*self.entities, *remembered]}
        )


def _object(value: Any, action: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ActionError(400, action, f"{what} must be a JSON object")
    return value


def read_call(body: Any) -> ActionCall:
    """Rasa's request (next_action, sender_id, tracker), checked; ActionError says what is
    wrong. Pure."""
    if not isinstance(body, dict):
        raise ActionError(400, "", "the body must be a JSON object")
    action = body.get("next_action")
    if not isinstance(action, str) or not action.strip():
        raise ActionError(400, "", "next_action (the action to run) is missing")
    sender = body.get("sender_id")
    if not isinstance(sender, str) or not sender.strip():
        raise ActionError(400, action, "sender_id (the conversation) is missing")
    if len(sender) > MAX_SENDER:
        raise ActionError(400, action, f"sender_id is longer than {MAX_SENDER} characters")
    if not isinstance(body.get("tracker"), dict):
        raise ActionError(400, action, "tracker (the conversation's state) is missing")
    tracker = body["tracker"]
    latest = _object(tracker.get("latest_message"), action, "tracker.latest_message")
    slots = _object(tracker.get("slots"), action, "tracker.slots")
    metadata = _object(latest.get("metadata"), action, "tracker.latest_message.metadata")
    text = latest.get("text") or ""
    entities = latest.get("entities") or []
    if not isinstance(text, str) or not isinstance(entities, list):
        raise ActionError(400, action, "latest_message.text is text, its entities a list")
    language = metadata.get("language")
    return ActionCall(
        action=action,
        sender_id=sender,
        text=text[:MAX_TEXT],
        intent=_object(latest.get("intent"), action, "tracker.latest_message.intent"),
        entities=[e for e in entities if isinstance(e, dict)],
        slots=slots,
        language=language if language in LANGUAGES else "",
        message_id=str(latest.get("message_id") or "")[:64],
    )


# ---------------------------------------------------------------------- Rasa's vocabulary


def slot(name: str, value: Any = None) -> dict[str, Any]:
    return {"event": "slot", "name": name, "value": value}


def followup(action: str) -> dict[str, Any]:
    """Run `action` next: a form run again asks for the slot that was just emptied."""
    return {"event": "followup", "name": action}


def loop_ended() -> dict[str, Any]:
    return {"event": "active_loop", "name": None}


def rasa_response(reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"text": reply.text}
    if reply.buttons:
        # A pressed button sends its payload as the citizen's text, which Rasa parses like
        # typing; the hub's own payloads ("area:...", "flow:...") would mean nothing to it.
        out["buttons"] = [{"title": label, "payload": label} for label, _payload in reply.buttons]
    return out


def relayed_reply(value: Any) -> Reply | None:
    """The reply the hub pushed (a Reply as JSON); plain text is taken as it is."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return Reply(value[:MAX_TEXT])
    return Reply.from_json(data) if isinstance(data, dict) else Reply(value[:MAX_TEXT])


# ---------------------------------------------------------------------- the actions

Action = Callable[[Ctx, ActionCall], Awaitable[list[dict[str, Any]]]]


class RasaActions:
    def __init__(
        self,
        *,
        engine: Engine,
        store: BotStore,
        services: Callable[[Channel], Services],
        channel: Channel,
    ) -> None:
        self.engine, self.store, self.channel = engine, store, channel
        self._services = services
        self._actions: dict[str, Action] = {
            **{name: self._flow(flow) for name, flow in FLOWS.items()},
            "action_submit_report": self._report,
            "action_emergency": self._emergency,
            "action_submit_emergency": self._send_help,
            "action_subscribe_alerts": self._subscribe,
            "validate_handoff_form": self._to_agent,
            "action_ask_handoff_message": self._nothing,
            "action_relay_message": self._relay,
        }

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._actions)

    async def run(self, call: ActionCall) -> dict[str, Any]:
        """Rasa's answer: `{"events", "responses"}`."""
        act = self._actions.get(call.action)
        if act is None:
            raise ActionError(404, call.action, f"the hub serves no action {call.action!r}")
        msg = cleaned(
            Inbound(
                channel=CHANNEL,
                chat_id=call.sender_id,
                message_id=call.message_id,
                kind="text",
                user_id=call.sender_id,
                text=call.text,
                language=call.language or "vi",
            )
        )
        # The chat, made on first contact: the notices' recipient and its language.
        turn = await self.store.begin(msg)
        language = call.language or turn.conversation.language
        ctx = Ctx(self.engine, msg, Conversation(language=language), self._services(self.channel))
        ctx.understood = call.understanding()
        try:
            events = await act(ctx, call)
        except Exception:
            # As in the hub's own bots: never a citizen without an answer; it names the
            # emergency numbers. Rasa gets no events, so its conversation stays as it was.
            logger.exception("rasa action %s failed for %s", call.action, call.sender_id)
            ctx.replies = [Reply(ctx.t("error.try_later"))]
            events = []
        return {"events": events, "responses": [rasa_response(r) for r in ctx.replies]}

    def _flow(self, flow: str) -> Action:
        async def start(ctx: Ctx, call: ActionCall) -> list[dict[str, Any]]:
            await self.engine.start(ctx, flow, {})
            return []

        return start

    async def _report(self, ctx: Ctx, call: ActionCall) -> list[dict[str, Any]]:
        """After Rasa's reporting form: description and place in slots."""
        description = call.slot("description")
        ctx.data.update(description=description, photos=[])
        if call.slot("category"):
            ctx.data["category"] = call.slot("category")
        if number := emergency_number(f"{description}\n{call.slot('location')}"):
            # An emergency told as a report still gets the number to call first.
            ctx.say(f"emergency.{number}")
        if await report_collected(ctx) == "place":
            return [slot("location"), followup("report_form")]
        return [slot("description"), slot("location"), slot("category")]

    async def _emergency(self, ctx: Ctx, call: ActionCall) -> list[dict[str, Any]]:
        """The number to call and what to do now; the emergency form then asks where."""
        u = ctx.understood
        number = (u.emergency if u else None) or NUMBER_OF.get(str(call.intent.get("name")), "113")
        ctx.data["number"] = number
        await start_emergency(ctx, ctx.data)
        return [
            slot("emergency_number", number),
            slot("description", ctx.data["description"]),
            # Only a place said with the emergency itself, never one left from earlier.
            slot("location", call.entity("location")),
        ]

    async def _send_help(self, ctx: Ctx, call: ActionCall) -> list[dict[str, Any]]:
        """After the emergency form: an urgent incident at the place given ("không":
        declined)."""
        number = call.slot("emergency_number")
        number = number if number in EMERGENCY_CATEGORY else "113"
        ctx.data.update(
            number=number,
            category=EMERGENCY_CATEGORY[number],
            description=call.slot("description") or ctx.t("menu.emergency"),
            photos=[],
        )
        if await emergency_location(ctx) == "again":
            return [slot("location"), followup("emergency_form")]
        return [slot("location"), slot("description"), slot("emergency_number")]

    async def _subscribe(self, ctx: Ctx, call: ActionCall) -> list[dict[str, Any]]:
        if await subscribe_area(ctx) == "again":
            return [slot("location"), followup("subscribe_form")]
        return [slot("location")]

    async def _to_agent(self, ctx: Ctx, call: ActionCall) -> list[dict[str, Any]]:
        """Rasa's hand-off form validates every message while it is active: the hub puts it
        on the work item and keeps the form open (its slot never fills) until the agent
        closes the item; the message after that is answered as a new request."""
        if call.slot("requested_slot") != "handoff_message":
            return []  # the form's start: the request itself is on the item already
        if call.intent.get("name") == PUSHED:
            # The agent's own words pushed back (Rasa validates them like a message): said
            # here, as the form keeps the turn.
            return await self._relay(ctx, call) + [slot("handoff_message")]
        u = ctx.understood
        if await self.store.relay_to_agent(ctx.msg):
            if u is not None and u.emergency:
                ctx.say(f"emergency.{u.emergency}")  # the pre-check holds with a person on
            return [slot("handoff_message")]
        # Rasa's parse is already in hand; the engine takes an understanding to await.
        understood = asyncio.sleep(0, u) if u is not None else None
        ctx.replies += await self.engine.handle(ctx.msg, ctx.conv, ctx.services, understood)
        return [slot("handoff_message"), slot("requested_slot"), loop_ended()]

    async def _nothing(self, ctx: Ctx, call: ActionCall) -> list[dict[str, Any]]:
        """The hand-off form's question: none (the citizen is talking to a person)."""
        return []

    async def _relay(self, ctx: Ctx, call: ActionCall) -> list[dict[str, Any]]:
        if (reply := relayed_reply(call.entity(RELAYED))) is not None:
            ctx.replies.append(reply)
        return []
