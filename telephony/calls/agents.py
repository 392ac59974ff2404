"""The agents' states (logged in, paused, ...) as the switchboard learns them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core import events as ev
from ioc_core.bus import Event
from ioc_core.db import transaction
from ioc_core.outbox import add_events
from telephony.calls.lifecycle import AgentState
from telephony.calls.models import Agent
from telephony.calls.views import agent_view


class Agents:
    """The agents (a CallStore's `agents`)."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Callable[[], datetime],
        on_commit: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._on_commit = on_commit  # wakes the outbox relay

    async def set_state(
        self,
        extension: str,
        state: AgentState,
        *,
        reason: str = "",
        queues: Sequence[str] | None = None,
        name: str | None = None,
    ) -> dict[str, Any] | None:
        """Store an agent's state; returns the view when it changed (and stages the event)."""
        now = self._clock()
        async with transaction(self._sessions) as s:
            agent = await s.get(Agent, extension, with_for_update=True)
            if agent is None:
                agent = Agent(extension=extension, name=name or "", state="logged_out")
                agent.queues, agent.pause_reason, agent.state_since = [], "", now
                s.add(agent)
            previous = agent.state
            changed = previous != state.value or (
                state is AgentState.PAUSED and reason != agent.pause_reason
            )
            if queues is not None:
                agent.queues = list(queues)
            if name:
                agent.name = name
            if changed:
                agent.state, agent.pause_reason, agent.state_since = state.value, reason, now
                add_events(
                    s,
                    [
                        Event(
                            name=ev.AGENT_STATE_CHANGED,
                            payload={
                                "agent": extension,
                                "state": state.value,
                                "previous": previous,
                                "reason": reason,
                            },
                            correlation_id=f"agent:{extension}",
                        )
                    ],
                )
            view = agent_view(agent)
        if changed:
            self._on_commit()
        return view if changed else None

    async def items(self) -> list[dict[str, Any]]:
        async with self._sessions() as s:
            return [agent_view(a) for a in (await s.scalars(select(Agent))).all()]
