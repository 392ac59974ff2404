"""The bots' HTTP side: the channels' webhooks, and the hand-off work items for the console
(CH-7: a citizen who asked for a person; the call-taker claims, writes, closes)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import html
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bots.keys import BOTS, TEXTS, Bots
from bots.messages import Reply, cleaned
from bots.rasa.actions import ActionError, read_call
from bots.store.models import Handoff
from ioc_core.api.openapi import (
    PUBLIC,
    STAFF,
    Fragment,
    items,
    json_body,
    operation,
    path_param,
    ref,
    response,
    schemas_of,
)
from ioc_core.api.web import require_staff
from ioc_core.errors import IocError, MalformedRequest, NotFound, Unauthorized
from ioc_core.http import (
    JsonTooDeep,
    json_response,
    loads_json,
    parse_model,
    read_model,
)
from ioc_core.i18n import LANGUAGES, pick_language
from ioc_core.sockets import CLOSE_POLICY, SOCKETS, Lease, long_lived

if TYPE_CHECKING:
    from bots.webchat.channel import WebChatChannel

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()
API = "/api/v1"
MAX_WEBHOOK_BYTES = 1 << 20  # updates are small; photos come by reference


class PayloadTooLarge(IocError):
    status = 413
    error_id = "payload-too-large"


class Malformed(MalformedRequest):
    status = 400
    error_id = "malformed-update"


async def read_body(request: web.Request) -> bytes:
    """The raw body, at most MAX_WEBHOOK_BYTES (413 beyond)."""
    if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLarge(f"updates are at most {MAX_WEBHOOK_BYTES} bytes")
    body = await request.content.read(MAX_WEBHOOK_BYTES + 1)
    if len(body) > MAX_WEBHOOK_BYTES:
        raise PayloadTooLarge(f"updates are at most {MAX_WEBHOOK_BYTES} bytes")
    return body


async def read_json(request: web.Request) -> dict[str, Any]:
    """The webhook's JSON object, read with a size limit; 400/413 saying what is wrong."""
    return parse_json(await read_body(request))


def parse_json(body: bytes) -> dict[str, Any]:
    """The core's JSON reading (ioc_core.http.loads_json): nesting depth checked before
    parsing (a 10,000-deep array hit Python's recursion limit, a 500). Control characters are
    not refused here: an update carries a citizen's words, which the channel cleans
    (bots.messages) so that the citizen is still answered."""
    try:
        data = loads_json(body, what="update", check_text=False)
    except JsonTooDeep:
        raise
    except MalformedRequest:
        raise Malformed("the body is not JSON") from None
    if not isinstance(data, dict):
        raise Malformed("the body is not a JSON object")
    return data


def bots_of(request: web.Request) -> Bots:
    return request.app[BOTS]


# ---------------------------------------------------------------------- Telegram


@routes.post("/bots/telegram/webhook")
async def telegram_webhook(request: web.Request) -> web.Response:
    bots = bots_of(request)
    channel = bots.channels.get("telegram")
    if channel is None:
        raise NotFound("Telegram is not configured here", error_id="channel-not-configured")
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(given.encode(), bots.settings.telegram_secret.encode()):
        raise Unauthorized("wrong or missing secret token", error_id="bad-webhook-secret")
    data = await read_json(request)
    if not isinstance(data.get("update_id"), int):
        raise Malformed("an update needs an integer update_id")
    from bots.telegram.adapter import TelegramChannel

    assert isinstance(channel, TelegramChannel)
    try:
        msg, query = channel.parse(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise Malformed(f"not a Telegram update: {exc}") from None
    if msg is not None:
        await bots.service.handle(cleaned(msg), channel)
    if query is not None:
        await channel.answer_callback(query)
    return json_response({"ok": True})


# ---------------------------------------------------------------------- Rasa's actions


@routes.post("/nlu/actions")
async def rasa_action(request: web.Request) -> web.Response:
    """Rasa's custom actions over its JSON action protocol (bots/rasa/actions.py). Rasa
    sends the hub's Rasa token as a bearer header (endpoints.yml); errors are answered in
    Rasa's shape, `{"error", "action_name"}`, which its action client reads."""
    bots = bots_of(request)
    if bots.actions is None:
        raise NotFound("Rasa is off here (IOC_RASA=off)", error_id="rasa-off")
    token = bots.nlu.token  # IOC_RASA_TOKEN, else the project's server's own
    given = request.headers.get("Authorization", "").encode()
    if not token or not hmac.compare_digest(given, f"Bearer {token}".encode()):
        raise Unauthorized(
            "Rasa's calls carry the hub's Rasa token (Authorization: Bearer)",
            error_id="bad-rasa-token",
        )
    try:
        call = read_call(parse_json(await read_body(request)))
        return json_response(await bots.actions.run(call))
    except MalformedRequest as exc:  # Malformed, ForbiddenCharacter, JsonTooDeep
        return json_response(ActionError(400, "", exc.message).as_dict(), 400)
    except ActionError as exc:
        return json_response(exc.as_dict(), exc.status)


# ---------------------------------------------------------------------- Zalo


@routes.post("/bots/zalo/webhook")
async def zalo_webhook(request: web.Request) -> web.Response:
    """Zalo OA events. The signature covers the body exactly as received, so it is read raw;
    anything unsigned, signed for another app, or malformed is refused before it is used."""
    from bots.zalo.adapter import ZaloChannel, signed

    bots = bots_of(request)
    channel = bots.channels.get("zalo")
    if channel is None:
        raise NotFound("Zalo is not configured here", error_id="channel-not-configured")
    assert isinstance(channel, ZaloChannel)
    header = request.headers.get("X-ZEvent-Signature", "")
    if not header:
        raise Unauthorized("missing X-ZEvent-Signature", error_id="bad-webhook-signature")
    body = await read_body(request)
    event = parse_json(body)
    app_id, stamp = str(event.get("app_id", "")), str(event.get("timestamp", ""))
    if app_id != channel.app_id or not signed(header, app_id, body, stamp, channel.oa_secret):
        raise Unauthorized("the signature does not match", error_id="bad-webhook-signature")
    try:
        msg = channel.parse(event)
    except (KeyError, TypeError, ValueError) as exc:
        raise Malformed(f"not a Zalo event: {exc}") from None
    if msg is not None:
        await bots.service.handle(cleaned(msg), channel)
    return json_response({"ok": True})


# ---------------------------------------------------------------------- web chat

PAGE = Path(__file__).resolve().parent / "webchat" / "static" / "chat.html"
PAGE_TEXTS = ("offline", "no_location")


@routes.get("/chat")
async def chat_page(request: web.Request) -> web.Response:
    """The widget's page (embed it in the province portal with an iframe)."""
    lang = request.query.get("lang") or pick_language(request.headers.get("Accept-Language"))
    lang = lang if lang in LANGUAGES else "vi"
    return web.Response(text=_page(lang), content_type="text/html", charset="utf-8")


@functools.cache
def _page(lang: str) -> str:
    """The page in `lang`, made once per language (the file and texts do not change)."""
    t = TEXTS.t
    page = PAGE.read_text("utf-8")
    texts = {k: t(f"web.{k}", lang) for k in PAGE_TEXTS}
    for key, value in {
        "__LANG__": lang,
        "__TITLE__": t("web.title", lang),
        "__EMERGENCY__": t("web.emergency", lang),
        "__PLACEHOLDER__": t("web.placeholder", lang),
        "__SEND__": t("web.send", lang),
        "__LOCATION__": t("web.location", lang),
        "__PHOTO__": t("web.photo", lang),
        "__TEXTS__": json.dumps(texts, ensure_ascii=False),
    }.items():
        page = page.replace(key, html.escape(value, quote=True) if key != "__TEXTS__" else value)
    return page


@routes.get("/bots/web/ws")
@long_lived
async def chat_socket(request: web.Request) -> web.WebSocketResponse:
    """One citizen's chat: their messages in, the bot's replies out (see webchat.channel).
    A long-lived connection: admitted by the sockets' own limits (origin, per address,
    overall), never holding a request slot; a socket that floods is closed."""
    from bots.webchat.channel import (
        WebChatChannel,
        max_message_bytes,
        new_chat_id,
        valid_chat_id,
    )

    bots = bots_of(request)
    channel = bots.channels["web"]
    assert isinstance(channel, WebChatChannel)
    lang = request.query.get("lang", "vi")
    lang = lang if lang in LANGUAGES else "vi"
    chat_id = request.query.get("chat", "")
    lease = request.app[SOCKETS].admit(request)  # 403/429/503 before the upgrade
    with lease:
        ws = web.WebSocketResponse(
            max_msg_size=max_message_bytes(channel.max_photo_bytes), heartbeat=30
        )
        await ws.prepare(request)
        if not valid_chat_id(chat_id):
            chat_id = new_chat_id()
            await ws.send_json({"chat": chat_id})
        pusher = asyncio.create_task(channel.deliver(chat_id, ws))
        try:
            await _converse(ws, lease, bots, channel, chat_id, lang)
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher
            await ws.close()
    return ws


async def _converse(
    ws: web.WebSocketResponse,
    lease: Lease,
    bots: Bots,
    channel: WebChatChannel,
    chat_id: str,
    lang: str,
) -> None:
    from bots.webchat.channel import NOT_JSON, receive

    while (data := await receive(ws)) is not None:
        if not lease.allow():
            # A flood: answered once, then the socket goes (the page reconnects calmly).
            await ws.send_json({"error": TEXTS.t("web.too_fast", lang)})
            await ws.close(code=CLOSE_POLICY, message=b"message rate exceeded")
            return
        if data is NOT_JSON:
            await ws.send_json({"error": TEXTS.t("web.bad_message", lang, reason="not JSON")})
            continue
        try:
            if not isinstance(data, dict):
                raise ValueError("a message is a JSON object")
            msg = cleaned(channel.parse(chat_id, data, lang))
        except (KeyError, TypeError, ValueError) as exc:
            await ws.send_json({"error": TEXTS.t("web.bad_message", lang, reason=str(exc))})
            continue
        try:
            await bots.service.handle(msg, channel)
        finally:
            channel.release(msg)  # a photo the turn did not take goes now


# ---------------------------------------------------------------------- hand-offs


HANDOFF_STATUSES = ("waiting", "active", "closed")
HANDOFF_ACTIONS = ("claim", "message", "close")


class HandoffQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: list[Literal["waiting", "active", "closed"]]


class AgentMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    text: str = Field(default="", max_length=4000)


def _item(h: Handoff) -> dict[str, Any]:
    return {
        "id": h.id,
        "channel": h.channel,
        "chat_id": h.chat_id,
        "name": h.name,
        "language": h.language,
        "status": h.status,
        "agent": h.agent,
        "urgent": h.urgent,
        "messages": h.messages,
        "created_at": h.created_at.isoformat(),
        "claimed_at": h.claimed_at.isoformat() if h.claimed_at else None,
        "closed_at": h.closed_at.isoformat() if h.closed_at else None,
    }


@routes.get(API + "/chats/handoffs")
async def list_handoffs(request: web.Request) -> web.Response:
    await require_staff(request)
    statuses = request.query.getall("status", []) or ["waiting", "active"]
    q = parse_model(HandoffQuery, {"status": statuses})  # a bad status is a 422, not a 500
    items = await bots_of(request).store.handoffs(q.status)
    return json_response({"items": [_item(h) for h in items]})


# At most 18 digits: a longer id overflows BIGINT on PostgreSQL (a 500 found by fuzzing).
@routes.post(API + "/chats/handoffs/{id:[0-9]{1,18}}/{action:" + "|".join(HANDOFF_ACTIONS) + "}")
async def act_on_handoff(request: web.Request) -> web.Response:
    who = await require_staff(request)
    body = await read_model(request, AgentMessage) if request.can_read_body else AgentMessage()
    action = request.match_info["action"]
    bots = bots_of(request)
    item = await bots.store.handoff(int(request.match_info["id"]))
    if item is None or item.status == "closed":
        raise NotFound("no open hand-off with that id", error_id="handoff-not-found")
    if action == "message" and not body.text:
        raise Malformed("a message needs text", error_id="text-missing")
    lang = item.language
    said = [Reply(TEXTS.t("handoff.agent", lang, agent=who.name, text=body.text))]
    replies = {
        "claim": [Reply(TEXTS.t("handoff.joined", lang, agent=who.name))],
        "message": said,
        "close": [*(said if body.text else []), Reply(TEXTS.t("handoff.closed", lang))],
    }[action]
    done = await bots.store.agent_acts(item.id, who.name, action, body.text, replies)
    if done is None:
        raise NotFound("no open hand-off with that id", error_id="handoff-not-found")
    return json_response(_item(done))


# ---------------------------------------------------------------------- the API's document


def openapi() -> Fragment:
    """The bots' routes for the hub's OpenAPI document (ADR 0022). The webhooks are called
    by the chat clouds and Rasa, each proving itself its own way (a secret header, a
    signature, the hub's Rasa token), not by a token role."""
    update = {"type": "object", "description": "the cloud's update, as its API documents it"}
    ok = {"200": response("Taken", {"type": "object", "properties": {"ok": {"type": "boolean"}}})}
    rasa_error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "action_name": {"type": "string"}},
    }
    handoff = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    handoff_id = path_param("id", "the hand-off's number", pattern=r"^[0-9]+$")
    status = {
        "name": "status",
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": "statuses to list (default: waiting and active)",
        "schema": {"type": "array", "items": {"type": "string", "enum": list(HANDOFF_STATUSES)}},
    }
    lang = {"name": "lang", "in": "query", "required": False, "schema": {"type": "string"}}

    def hook(summary: str, scheme: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return operation(
            summary,
            roles=(f"the caller holding the '{scheme}' secret",),
            body={"required": True, "content": {"application/json": {"schema": update}}},
            ok=ok if body is None else body,
        ) | {"security": [{scheme: []}], "tags": ["webhooks"]}

    paths: dict[str, Any] = {
        "/bots/telegram/webhook": {"post": hook("Telegram Bot API updates", "telegram")},
        "/bots/zalo/webhook": {"post": hook("Zalo OA events (signed body)", "zalo")},
        "/nlu/actions": {
            "post": hook(
                "Rasa's custom actions (Rasa's action server protocol)",
                "rasa",
                {
                    "200": response("Events and responses for Rasa"),
                    "4XX": response("Rasa's error shape", rasa_error),
                    "503": response("Busy", ref("Error")),
                },
            )
        },
        "/chat": {
            "get": operation(
                "The web chat widget's page (embed it with an iframe)",
                roles=PUBLIC,
                parameters=[lang],
                ok={"200": response("HTML page", {"type": "string"}, media="text/html")},
            )
        },
        "/bots/web/ws": {
            "get": operation(
                "The web chat's WebSocket (one citizen's chat: messages in, replies out)",
                roles=PUBLIC,
                parameters=[
                    lang,
                    {
                        "name": "chat",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                ok={"101": response("Switching to the WebSocket protocol", media="")},
            )
        },
        API + "/chats/handoffs": {
            "get": operation(
                "Chats handed to a person (CH-7)",
                roles=STAFF,
                parameters=[status],
                ok={"200": response("Hand-offs", items(handoff))},
            )
        },
    }
    for action in HANDOFF_ACTIONS:
        paths[f"{API}/chats/handoffs/{{id}}/{action}"] = {
            "post": operation(
                f"Hand-off: {action}",
                roles=STAFF,
                parameters=[handoff_id],
                body=json_body(AgentMessage, required=action == "message"),
                ok={"200": response("The hand-off after the action", handoff)},
            )
        }
    return Fragment(
        paths=paths,
        schemas=schemas_of(AgentMessage),
        security_schemes={
            "telegram": {
                "type": "apiKey",
                "in": "header",
                "name": "X-Telegram-Bot-Api-Secret-Token",
            },
            "zalo": {"type": "apiKey", "in": "header", "name": "X-ZEvent-Signature"},
            "rasa": {"type": "http", "scheme": "bearer", "description": "the hub's Rasa token"},
        },
    )
