"""The console's telephony routes (ADR 0030): the browser softphone's settings, who may act on
which agent, listen / whisper / barge, the three-way call and the call-back dialled from the
agent's own phone. The telephony itself is in telephony.switchboard.console."""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ioc_core.api.openapi import STAFF, json_body, operation, path_param, response
from ioc_core.api.web import Caller, core_of, require_staff
from ioc_core.errors import Conflict, Forbidden, NotFound, ServiceUnavailable
from ioc_core.http import json_response, read_model
from telephony.ami.client import AmiUnavailable
from telephony.asterisk.config import AsteriskSettings
from telephony.i18n import said
from telephony.keys import STORE, SWITCHBOARD
from telephony.switchboard.app import Switchboard
from telephony.switchboard.console import ConsoleError

routes = web.RouteTableDef()
API = "/api/v1"
SUPERVISORS = frozenset({"supervisor", "admin"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MonitorIn(_Strict):
    mode: Literal["listen", "whisper", "barge"] = "listen"


class ConferenceIn(_Strict):
    target: str = Field(min_length=2, max_length=15, pattern=r"^[0-9]+$")


# ------------------------------------------------------------------ who may do what


def may_act_on(who: Caller, extension: str) -> None:
    """A call-taker acts on their own extension only; supervisors and admins on any."""
    if who.role not in SUPERVISORS and who.extension != extension:
        raise Forbidden(
            said("api.not_your_extension", ext=extension), error_id="not-your-extension"
        )


def own_extension(who: Caller) -> str:
    if not who.extension:
        raise Forbidden(said("api.no_extension"), error_id="no-extension")
    return who.extension


def _switchboard(request: web.Request) -> Switchboard:
    sb = request.app.get(SWITCHBOARD)
    if sb is None or not sb.ami.connected.is_set() or not sb.ari.connected.is_set():
        raise ServiceUnavailable(said("api.switchboard_down"), error_id="switchboard-down")
    return sb


def _asterisk(request: web.Request) -> AsteriskSettings:
    return AsteriskSettings.from_env(core_of(request.app).settings.data_dir / "asterisk")


# ------------------------------------------------------------------ the browser softphone


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _page_host(request: web.Request) -> str:
    """The host name the page was loaded from (Host header, without its port)."""
    host = request.host
    if host.startswith("["):  # [::1]:8000
        return host[1 : host.index("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def softphone(who: Caller, asterisk: AsteriskSettings, page_host: str) -> dict[str, Any]:
    """JsSIP's settings for the signed-in agent's browser softphone. A page on loopback talks
    plain ws to Asterisk's HTTP port (127.0.0.1 is a secure context); any other page wss on
    the TLS port of the host it came from."""
    extension = who.extension or ""
    password = asterisk.browser_agents.get(extension) if who.session else None
    if not password:
        raise Forbidden(said("api.no_softphone"), error_id="no-softphone")
    if _is_loopback(page_host):
        host, ws_url = "127.0.0.1", f"ws://127.0.0.1:{asterisk.http_port}/ws"
    else:
        shown = f"[{page_host}]" if ":" in page_host else page_host
        host, ws_url = page_host, f"wss://{shown}:{asterisk.wss_port}/ws"
    return {
        "extension": extension,
        "password": password,
        "uri": f"sip:{extension}@{host if ':' not in host else f'[{host}]'}",
        "ws_url": ws_url,
        "display_name": who.name,
        "ice_servers": [],
    }


@routes.get(API + "/softphone")
async def get_softphone(request: web.Request) -> web.Response:
    who = await require_staff(request)
    body = softphone(who, _asterisk(request), _page_host(request))
    # A password: never cached, never logged (the access log has no bodies).
    answer = json_response(body)
    answer.headers["Cache-Control"] = "no-store"
    return answer


# ------------------------------------------------------------------ supervisor and agent actions


@routes.post(API + "/agents/{ext}/monitor")
async def monitor(request: web.Request) -> web.Response:
    who = await require_staff(request)
    if who.role not in SUPERVISORS:
        raise Forbidden(said("api.supervisors_only"), error_id="supervisors-only")
    supervisor = own_extension(who)
    body = await read_model(request, MonitorIn) if request.can_read_body else MonitorIn()
    ext = request.match_info["ext"]
    sb = _switchboard(request)
    if ext not in sb.desk.extensions:
        raise NotFound(said("api.unknown_agent", ext=ext), error_id="unknown-agent")
    channel = await _console(sb.console.monitor(agent=ext, supervisor=supervisor, mode=body.mode))
    return json_response(
        {"extension": ext, "mode": body.mode, "supervisor": supervisor, "channel": channel}
    )


@routes.post(API + "/calls/{id}/conference")
async def conference(request: web.Request) -> web.Response:
    who = await require_staff(request)
    body = await read_model(request, ConferenceIn)
    call = await request.app[STORE].get_call(request.match_info["id"])
    if call is None:
        raise NotFound(said("api.unknown_call", id=request.match_info["id"]))
    if who.role not in SUPERVISORS and (not who.extension or call.get("agent") != who.extension):
        raise Forbidden(said("api.not_your_call", id=call["id"]), error_id="not-your-call")
    sb = _switchboard(request)
    room = await _console(sb.console.conference(call, body.target))
    return json_response({"call_id": call["id"], "room": room, "target": body.target})


@routes.post(API + "/callbacks/{id:[0-9]{1,18}}/dial")
async def dial_callback(request: web.Request) -> web.Response:
    """Claim the call-back and ring the agent's own phone; once they answer, the citizen is
    dialled through the trunk with the service's number. The outcome is recorded with
    `complete` (note, outcome) like any call-back."""
    who = await require_staff(request)
    agent = own_extension(who)
    sb = _switchboard(request)
    if agent not in sb.desk.extensions:
        raise Forbidden(said("api.no_extension"), error_id="no-extension")
    store = request.app[STORE]
    callback_id = int(request.match_info["id"])
    item = await store.callbacks.get(callback_id)
    if item is None:
        raise NotFound(said("api.unknown_callback", id=callback_id))
    if not (item["status"] == "claimed" and item["assigned_to"] == who.name):
        try:
            item = await store.callbacks.act(callback_id, "claim", agent=who.name) or item
        except ValueError as exc:
            raise Conflict(
                said("api.bad_action", reason=str(exc)), error_id="callback-state"
            ) from None
    channel = await _console(sb.console.dial_callback(item, agent))
    return json_response({**item, "dialling": {"extension": agent, "channel": channel}})


async def _console(work: Any) -> str:
    try:
        result: str = await work
    except ConsoleError as exc:
        raise Conflict(
            said("api.console_refused", reason=exc.message), error_id=exc.error_id
        ) from None
    except AmiUnavailable:
        raise ServiceUnavailable(
            said("api.switchboard_down"), error_id="switchboard-down"
        ) from None
    return result


# ------------------------------------------------------------------ the API's document


def openapi_paths() -> dict[str, Any]:
    ext = path_param("ext", "the agent's extension")
    call_id = path_param("id", "the call's id")
    callback_id = path_param("id", "the call-back's number", pattern=r"^[0-9]+$")
    phone = {
        "type": "object",
        "required": ["extension", "password", "uri", "ws_url", "display_name", "ice_servers"],
        "properties": {
            k: {"type": "string"}
            for k in ("extension", "password", "uri", "ws_url", "display_name")
        }
        | {"ice_servers": {"type": "array", "items": {"type": "object"}}},
    }
    return {
        API + "/softphone": {
            "get": operation(
                "The signed-in agent's browser softphone (JsSIP settings, with its password)",
                roles=STAFF,
                description="Only for a staff session whose user has a browser agent extension"
                " (403 no-softphone otherwise). Cache-Control: no-store.",
                ok={"200": response("The softphone", phone)},
            )
        },
        API + "/agents/{ext}/monitor": {
            "post": operation(
                "Listen to, whisper to or barge in on an agent's call from the supervisor's phone",
                roles=("supervisor", "admin"),
                parameters=[ext],
                body=json_body(MonitorIn, required=False),
                ok={"200": response("The supervisor's phone is ringing")},
            )
        },
        API + "/calls/{id}/conference": {
            "post": operation(
                "Three-way call: caller and agent into a conference, the target dialled in",
                roles=STAFF,
                description="The agent on the call or a supervisor/admin.",
                parameters=[call_id],
                body=json_body(ConferenceIn),
                ok={"200": response("The conference room")},
            )
        },
        API + "/callbacks/{id}/dial": {
            "post": operation(
                "Call-back from the agent's own phone: claim it, ring the agent, dial the citizen",
                roles=STAFF,
                parameters=[callback_id],
                ok={"200": response("The call-back, claimed, and the agent's ringing channel")},
            )
        },
    }
