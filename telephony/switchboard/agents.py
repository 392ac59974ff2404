"""Agents' log in/out, pause and wrap-up: commands go to app_queue over AMI (QueueAdd,
QueueRemove, QueuePause — ADR 0010), and the state the API shows is what app_queue reports
back (QueueMember* events), so Asterisk stays the one owner of queue membership."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from telephony.ami.client import AmiClient, AmiError
from telephony.calls.lifecycle import AgentState, agent_state
from telephony.calls.service import CallStore
from telephony.switchboard.observe import Member, member

logger = logging.getLogger(__name__)


class UnknownAgent(LookupError):
    pass


class AgentDesk:
    def __init__(
        self,
        *,
        ami: AmiClient,
        store: CallStore,
        agents: Iterable[str],
        queues: Sequence[str],
        wrapup_s: float,
        names: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ami = ami
        self._store = store
        self.extensions = frozenset(agents)
        self.queues = tuple(queues)
        self._wrapup = wrapup_s
        self._names = names or {}
        self._clock = clock
        self._members: dict[tuple[str, str], Member] = {}  # (extension, queue) -> member
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def _check(self, extension: str) -> str:
        if extension not in self.extensions:
            raise UnknownAgent(extension)
        return f"PJSIP/{extension}"

    # ------------------------------------------------------------------ commands

    async def login(self, extension: str, queues: Sequence[str] | None = None) -> None:
        interface = self._check(extension)
        wanted = list(queues or self.queues)
        unknown = set(wanted) - set(self.queues)
        if unknown:
            raise ValueError(f"unknown queue(s) {sorted(unknown)}")
        for queue in wanted:
            try:
                await self._ami.action(
                    "QueueAdd",
                    Queue=queue,
                    Interface=interface,
                    MemberName=extension,
                    StateInterface=interface,
                )
            except AmiError as exc:
                if "Already there" not in exc.message:
                    raise
        await self.refresh()

    async def logout(self, extension: str) -> None:
        interface = self._check(extension)
        for queue in self.queues:
            try:
                await self._ami.action("QueueRemove", Queue=queue, Interface=interface)
            except AmiError as exc:
                if "Not there" not in exc.message:
                    raise
        await self.refresh()

    async def pause(self, extension: str, reason: str = "") -> None:
        await self._pause(extension, paused=True, reason=reason)

    async def unpause(self, extension: str) -> None:
        await self._pause(extension, paused=False, reason="")

    async def _pause(self, extension: str, *, paused: bool, reason: str) -> None:
        interface = self._check(extension)
        if not any(m.extension == extension for m in self._members.values()):
            raise ValueError("the agent is not logged in")
        # No Queue field: app_queue pauses the interface in every queue it belongs to.
        await self._ami.action(
            "QueuePause", Interface=interface, Paused="true" if paused else "false", Reason=reason
        )
        await self.refresh()

    # ------------------------------------------------------------------ observation

    async def refresh(self) -> None:
        """Rebuild membership from app_queue itself (after a reconnect, after a command)."""
        entries = await self._ami.list_action("QueueStatus")
        members = {}
        for msg in entries:
            if msg.get("Event") == "QueueMember" and (m := member(msg)) is not None:
                members[(m.extension, m.queue)] = m
        self._members = members
        for extension in self.extensions:
            await self._publish(extension)

    async def on_event(self, msg: dict[str, str]) -> None:
        event = msg.get("Event", "")
        m = member(msg)
        if m is None or m.extension not in self.extensions:
            return
        if event == "QueueMemberRemoved":
            self._members.pop((m.extension, m.queue), None)
        else:
            self._members[(m.extension, m.queue)] = m
        await self._publish(m.extension)

    async def call_completed(self, extension: str) -> None:
        """AgentComplete: wrap-up starts now; no event marks its end, so look again then."""
        for key, m in list(self._members.items()):
            if m.extension == extension:
                self._members[key] = Member(**{**m.__dict__, "last_call": self._clock()})
        await self._publish(extension)
        if (old := self._timers.pop(extension, None)) is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[extension] = loop.call_later(
            self._wrapup + 0.1, lambda: loop.create_task(self._publish(extension))
        )

    def state_of(self, extension: str) -> AgentState:
        mine = [m for m in self._members.values() if m.extension == extension]
        return agent_state(
            logged_in=bool(mine),
            paused=any(m.paused for m in mine),
            device=mine[0].device if mine else "0",
            in_call=any(m.in_call for m in mine),
            last_call_end=max((m.last_call for m in mine), default=0.0),
            wrapup_s=self._wrapup,
            now=self._clock(),
        )

    async def _publish(self, extension: str) -> None:
        mine = [m for m in self._members.values() if m.extension == extension]
        state = self.state_of(extension)
        reason = next((m.reason for m in mine if m.paused), "")
        await self._store.agents.set_state(
            extension,
            state,
            reason=reason if state is AgentState.PAUSED else "",
            queues=sorted(m.queue for m in mine),
            name=self._names.get(extension),
        )

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
