"""What the call-taker console and the supervisor ask of Asterisk besides queue membership:
a three-way call, listen / whisper / barge, and a call-back placed from the agent's own phone
(ADR 0030). Each is a ring of someone's phone into a dialplan context of extensions.conf
(ioc-conference, ioc-monitor, agents): the dialplan does the telephony, this module only
starts it, so a switchboard restart never cuts a call that is already up."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Collection, Mapping
from typing import Any, Literal

from telephony.ami.client import AmiClient, AmiError
from telephony.ari.client import AriClient, AriError
from telephony.i18n import t

logger = logging.getLogger(__name__)

MonitorMode = Literal["listen", "whisper", "barge"]
# ChanSpy options: q = no beep or name announcement; w = the supervisor speaks to the agent
# only; B = to both sides (the caller hears the supervisor too).
SPY_OPTIONS: dict[str, str] = {"listen": "q", "whisper": "qw", "barge": "qB"}
RING_S = 30

# What may reach a dial string or a channel variable: digits only (the [agents] context then
# decides what the number may be: an extension, an agency, a national number, else 404).
NUMBER = re.compile(r"^[0-9]{2,15}$")


class ConsoleError(Exception):
    """The action cannot be done as asked; `error_id` says why (the API answers 409)."""

    def __init__(self, error_id: str, message: str) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message


class ConsoleCalls:
    def __init__(self, *, ari: AriClient, ami: AmiClient, agents: Collection[str]) -> None:
        self._ari, self._ami = ari, ami
        self._agents = frozenset(agents)

    async def _channels(self) -> list[dict[str, Any]]:
        channels: list[dict[str, Any]] = await self._ari.request("GET", "/channels")
        return channels

    async def agent_channel(self, extension: str) -> str | None:
        """The agent's phone's channel now (PJSIP/<ext>-<seq>), if it has one."""
        for channel in await self._channels():
            if str(channel.get("name", "")).startswith(f"PJSIP/{extension}-"):
                return str(channel["name"])
        return None

    async def _originate(
        self,
        *,
        endpoint: str,
        context: str,
        caller_id: str,
        variables: Mapping[str, str],
        kind: str,
        extension: str = "s",
    ) -> str:
        """Ring `endpoint`; once answered its channel runs `context`,`extension`,1."""
        channel_id = f"{kind}-{uuid.uuid4().hex[:12]}"
        try:
            await self._ari.request_with_body(
                "POST",
                "/channels",
                {"variables": dict(variables)},
                endpoint=endpoint,
                context=context,
                extension=extension,
                priority=1,
                callerId=caller_id,
                timeout=RING_S,
                channelId=channel_id,
            )
        except AriError as exc:
            raise ConsoleError("dial-failed", f"{endpoint}: {exc}") from None
        return channel_id

    async def monitor(self, *, agent: str, supervisor: str, mode: MonitorMode) -> str:
        """Ring the supervisor's phone; answered, it listens to (whispers to, barges in on)
        the agent's call. Returns the supervisor's channel id."""
        if await self.agent_channel(agent) is None:
            raise ConsoleError("agent-not-on-a-call", f"agent {agent} is not on a call")
        return await self._originate(
            endpoint=f"PJSIP/{supervisor}",
            context="ioc-monitor",
            caller_id=f"{t('phone.monitor', 'vi', ext=agent)} <{agent}>",
            variables={"IOC_SPY": agent, "IOC_SPY_MODE": SPY_OPTIONS[mode]},
            kind="monitor",
        )

    async def conference(self, call: Mapping[str, Any], target: str) -> str:
        """Caller + agent of `call` into a ConfBridge room, and `target` dialled into it (an
        extension or a number, within the [agents] context's limits). Returns the room."""
        if not NUMBER.match(target):
            raise ConsoleError("bad-target", f"not a number: {target!r}")
        caller = str(call.get("channel") or "")
        if call.get("status") != "connected" or not caller:
            raise ConsoleError("call-not-connected", f"call {call.get('id')} is not connected")
        try:
            peer = await self._ami.action("Getvar", Channel=caller, Variable="BRIDGEPEER")
            agent_channel = peer.get("Value", "")
            if not agent_channel or agent_channel == "(null)":
                raise ConsoleError("call-not-connected", f"{caller} is not bridged")
            room = "ioc-" + re.sub(r"[^0-9A-Za-z-]", "-", str(call["id"]))
            for channel in (caller, agent_channel):
                await self._ami.action("Setvar", Channel=channel, Variable="IOC_ROOM", Value=room)
            # Both leave the queue's bridge together and meet again in the room.
            await self._ami.action(
                "Redirect",
                Channel=caller,
                ExtraChannel=agent_channel,
                Context="ioc-conference",
                Exten="s",
                Priority="1",
                ExtraContext="ioc-conference",
                ExtraExten="s",
                ExtraPriority="1",
            )
        except AmiError as exc:
            raise ConsoleError("call-not-connected", exc.message) from None
        service = str(call.get("service") or "")
        await self._originate(
            endpoint=f"Local/{target}@agents",
            context="ioc-conference",
            caller_id=f"{service} <{service}>" if service else "",
            variables={"IOC_ROOM": room, "__IOC_CALL": str(call["id"]), "__IOC_SERVICE": service},
            kind="conference",
        )
        return room

    async def dial_callback(self, item: Mapping[str, Any], agent: str) -> str:
        """Ring the agent's phone; answered, the [agents] context dials the citizen through
        the trunk showing the service's number. Returns the agent's channel id."""
        number = str(item.get("ani") or "")
        if not NUMBER.match(number):
            raise ConsoleError("bad-number", f"call-back {item.get('id')}: cannot dial {number!r}")
        service = str(item.get("service") or "")
        return await self._originate(
            endpoint=f"PJSIP/{agent}",
            context="agents",
            extension=number,
            caller_id=f"{t('phone.callback', 'vi', number=number)} <{number}>",
            variables={"IOC_SERVICE": service, "IOC_CALLBACK": str(item["id"])},
            kind="dial",
        )
