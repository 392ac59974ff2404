"""The switchboard's REST API for the consoles: calls, call-backs, queues, agents.

Plugged into the hub's web application through the `ioc.web` entry point; the switchboard
itself (ARI + AMI) starts with the app in the primary worker (see telephony.role); what the
handlers read from the app is in telephony.keys."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ioc_core.api.openapi import (
    STAFF,
    Fragment,
    items,
    json_body,
    operation,
    path_param,
    query,
    response,
    schemas_of,
)
from ioc_core.api.web import core_of, require_staff
from ioc_core.errors import Conflict, NotFound, ServiceUnavailable
from ioc_core.http import json_response, parse_query, read_model
from telephony.ami.client import AmiError, AmiUnavailable
from telephony.calls.kpi import QueuedCall, queue_stats
from telephony.i18n import said
from telephony.keys import STORE, SWITCHBOARD, SWITCHBOARD_SETTINGS
from telephony.switchboard.agents import UnknownAgent
from telephony.web_console import ConferenceIn, MonitorIn, may_act_on, openapi_paths

routes = web.RouteTableDef()
API = "/api/v1"
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CallsQuery(_Strict):
    status: list[Literal["new", "ivr", "queued", "ringing", "connected", "ended"]] = Field(
        default_factory=list
    )
    service: str | None = Field(default=None, max_length=8, pattern=r"^[0-9]+$")
    # The caller's number: a console's screen pop lists the earlier calls of the number ringing.
    ani: str | None = Field(default=None, max_length=32, pattern=r"^\+?[0-9]+$")
    since: datetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class CallbacksQuery(_Strict):
    status: list[Literal["pending", "calling", "claimed", "done", "failed", "cancelled"]] = Field(
        default_factory=list
    )
    limit: int = Field(default=100, ge=1, le=1000)


class CallbackAction(_Strict):
    note: str = Field(default="", max_length=2000)
    agent: str = Field(default="", max_length=32)
    # How the call went (for `complete`, e.g. after a call-back dialled from the agent's
    # phone): kept as the item's last_outcome, the vocabulary of the automatic attempts.
    outcome: Literal["answered", "busy", "no_answer", "rejected", "failed"] | None = None


class LoginIn(_Strict):
    queues: list[str] = Field(default_factory=list, max_length=32)


class PauseIn(_Strict):
    reason: str = Field(default="", max_length=64, pattern=r"^[^\r\n]*$")


@routes.get(API + "/calls")
async def list_calls(request: web.Request) -> web.Response:
    await require_staff(request)
    q = parse_query(request, CallsQuery, multi=frozenset({"status"}))
    if q.since is not None and q.since.tzinfo is None:
        q.since = q.since.replace(tzinfo=LOCAL)
    items = await request.app[STORE].list_calls(
        status=q.status, service=q.service, ani=q.ani, since=q.since, limit=q.limit
    )
    return json_response({"items": items})


@routes.get(API + "/calls/{id}")
async def get_call(request: web.Request) -> web.Response:
    await require_staff(request)
    store = request.app[STORE]
    call = await store.get_call(request.match_info["id"])
    if call is None:
        raise NotFound(said("api.unknown_call", id=request.match_info["id"]))
    return json_response({**call, "transcripts": await store.transcripts.of_call(call["id"])})


@routes.get(API + "/calls/{id}/recording")
async def call_recording(request: web.Request) -> web.StreamResponse:
    """The answered call's recording (or the message left after the tone), as WAV."""
    await require_staff(request)
    call = await request.app[STORE].get_call(request.match_info["id"])
    if call is None:
        raise NotFound(said("api.unknown_call", id=request.match_info["id"]))
    spool = (core_of(request.app).settings.data_dir / "asterisk" / "spool").resolve()
    path = (spool / (call["recording_path"] or "-")).resolve()
    if not call["recording_path"] or not path.is_relative_to(spool) or not path.is_file():
        raise NotFound(said("api.no_recording", id=call["id"]), error_id="no-recording")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


@routes.get(API + "/callbacks")
async def list_callbacks(request: web.Request) -> web.Response:
    await require_staff(request)
    q = parse_query(request, CallbacksQuery, multi=frozenset({"status"}))
    return json_response(
        {"items": await request.app[STORE].callbacks.items(status=q.status, limit=q.limit)}
    )


CALLBACK_ACTIONS = ("claim", "complete", "cancel", "retry")
AGENT_ACTIONS = ("login", "logout", "pause", "unpause")


# At most 18 digits: a longer id overflows BIGINT on PostgreSQL (a 500 found by fuzzing).
@routes.post(API + "/callbacks/{id:[0-9]{1,18}}/{action:" + "|".join(CALLBACK_ACTIONS) + "}")
async def act_on_callback(request: web.Request) -> web.Response:
    who = await require_staff(request)
    body = await read_model(request, CallbackAction)
    callback_id = int(request.match_info["id"])
    try:
        view = await request.app[STORE].callbacks.act(
            callback_id,
            request.match_info["action"],
            agent=body.agent or who.name,
            note=body.note,
            outcome=body.outcome,
        )
    except ValueError as exc:
        raise Conflict(said("api.bad_action", reason=str(exc)), error_id="callback-state") from None
    if view is None:
        raise NotFound(said("api.unknown_callback", id=callback_id))
    if request.match_info["action"] == "retry" and (sb := request.app.get(SWITCHBOARD)):
        sb.wake_callbacks()
    return json_response(view)


@routes.get(API + "/queues")
async def queues(request: web.Request) -> web.Response:
    """Today's figures (since local midnight) plus whatever is still waiting."""
    await require_staff(request)
    store = request.app[STORE]
    settings = request.app[SWITCHBOARD_SETTINGS]
    now = datetime.now(LOCAL)
    midnight = datetime.combine(now.date(), time(0), LOCAL)
    calls = [
        QueuedCall(
            queue=c.queue or "",
            status=c.status,
            outcome=c.outcome,
            queued_at=c.queued_at,
            answered_at=c.answered_at,
            ended_at=c.ended_at,
        )
        for c in await store.calls_since(midnight)
    ]
    items = queue_stats(
        calls,
        queues=[s.queue for s in settings.services.values()],
        agents=await store.agents.items(),
        now=now,
    )
    since = midnight.isoformat()
    return json_response({"since": since, "items": items, "switchboard": _running(request)})


def _running(request: web.Request) -> bool:
    sb = request.app.get(SWITCHBOARD)
    return bool(sb and sb.ami.connected.is_set())


@routes.get(API + "/agents")
async def agents(request: web.Request) -> web.Response:
    await require_staff(request)
    return json_response({"items": await request.app[STORE].agents.items()})


@routes.post(API + "/agents/{ext}/{action:" + "|".join(AGENT_ACTIONS) + "}")
async def agent_action(request: web.Request) -> web.Response:
    who = await require_staff(request)
    sb = request.app.get(SWITCHBOARD)
    ext, action = request.match_info["ext"], request.match_info["action"]
    may_act_on(who, ext)
    body: Any = (
        await read_model(request, PauseIn if action == "pause" else LoginIn)
        if (request.can_read_body)
        else (PauseIn() if action == "pause" else LoginIn())
    )
    if sb is None or not sb.ami.connected.is_set():
        raise ServiceUnavailable(said("api.switchboard_down"), error_id="switchboard-down")
    try:
        if action == "login":
            await sb.desk.login(ext, body.queues or None)
        elif action == "logout":
            await sb.desk.logout(ext)
        elif action == "pause":
            await sb.desk.pause(ext, body.reason)
        else:
            await sb.desk.unpause(ext)
    except AmiUnavailable:
        raise ServiceUnavailable(
            said("api.switchboard_down"), error_id="switchboard-down"
        ) from None
    except AmiError as exc:
        raise Conflict(said("api.bad_action", reason=exc.message), error_id="agent-state") from None
    except UnknownAgent:
        raise NotFound(said("api.unknown_agent", ext=ext), error_id="unknown-agent") from None
    except ValueError as exc:
        raise Conflict(said("api.bad_action", reason=str(exc)), error_id="agent-state") from None
    state = sb.desk.state_of(ext)
    return json_response({"extension": ext, "state": state.value})


# ---------------------------------------------------------------------- the API's document


def openapi() -> Fragment:
    """The switchboard's routes for the hub's OpenAPI document (ADR 0022)."""
    call_id = path_param("id", "the call's id")
    callback_id = path_param("id", "the call-back's number", pattern=r"^[0-9]+$")
    ext = path_param("ext", "the agent's extension")
    call = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
    callback = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    to_call = {
        "operationId": "get_call",
        "parameters": {"id": "$response.body#/items/0/id"},
    }
    paths: dict[str, Any] = {
        API + "/calls": {
            "get": operation(
                "Calls, newest first",
                roles=STAFF,
                parameters=query(CallsQuery, explode=frozenset({"status"})),
                ok={"200": response("Calls", items(call), links={"get_call": to_call})},
            )
        },
        API + "/calls/{id}": {
            "get": operation(
                "One call with its transcripts",
                roles=STAFF,
                parameters=[call_id],
                ok={"200": response("The call", call)},
            )
            | {"operationId": "get_call"}
        },
        API + "/calls/{id}/recording": {
            "get": operation(
                "The answered call's recording, or the message left after the tone",
                roles=STAFF,
                parameters=[call_id],
                ok={"200": response("WAV audio", {"type": "string"}, media="audio/wav")},
            )
        },
        API + "/callbacks": {
            "get": operation(
                "Call-back work items",
                roles=STAFF,
                parameters=query(CallbacksQuery, explode=frozenset({"status"})),
                ok={"200": response("Call-backs", items(callback))},
            )
        },
        API + "/queues": {
            "get": operation(
                "Today's queue figures and who is still waiting",
                roles=STAFF,
                ok={"200": response("Queues", items())},
            )
        },
        API + "/agents": {
            "get": operation(
                "Agents and their states", roles=STAFF, ok={"200": response("Agents", items())}
            )
        },
    }
    for action in CALLBACK_ACTIONS:
        paths[f"{API}/callbacks/{{id}}/{action}"] = {
            "post": operation(
                f"Call-back: {action}",
                roles=STAFF,
                parameters=[callback_id],
                body=json_body(CallbackAction, required=False),
                ok={"200": response("The call-back after the action", callback)},
            )
        }
    for action in AGENT_ACTIONS:
        model = PauseIn if action == "pause" else LoginIn
        paths[f"{API}/agents/{{ext}}/{action}"] = {
            "post": operation(
                f"Agent: {action} (through the switchboard; 503 while it is down)",
                roles=STAFF,
                description="A call-taker on their own extension only (403 not-your-extension);"
                " a supervisor or admin on any.",
                parameters=[ext],
                body=json_body(model, required=False),
                ok={"200": response("The agent's state")},
            )
        }
    paths.update(openapi_paths())
    return Fragment(
        paths=paths,
        schemas=schemas_of(
            CallsQuery, CallbacksQuery, CallbackAction, LoginIn, PauseIn, MonitorIn, ConferenceIn
        ),
    )
