"""Human tracking codes: PREFIX-YEAR-NNNNNN (e.g. PA-2026-000123), numbered per year.

A process reserves a block of numbers in one short transaction of its own and hands them out
from memory, so concurrent reports never queue on one counter row (see docs/adr/0004).
Numbers are unique; a restart may leave a gap, which citizens never notice.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core.db import transaction
from ioc_core.incidents.models import TrackingCounter


def format_tracking_code(prefix: str, year: int, number: int) -> str:
    """The one spelling of a tracking code. Features (the switchboard's keyed codes, the bots'
    typed ones) use it through `ioc_core.api`."""
    return f"{prefix}-{year:04d}-{number:06d}"


class TrackingAllocator:
    def __init__(
        self, *, sessions: async_sessionmaker[AsyncSession], prefix: str, block: int
    ) -> None:
        self._sessions = sessions
        self._prefix = prefix
        self._block = block
        self._lock = asyncio.Lock()
        self._year = 0
        self._next = 0
        self._end = 0  # exclusive

    async def next_code(self, year: int) -> str:
        async with self._lock:
            if year != self._year or self._next >= self._end:
                self._end = await self._reserve(year) + 1
                self._next = self._end - self._block
                self._year = year
            number = self._next
            self._next += 1
        return format_tracking_code(self._prefix, year, number)

    async def _reserve(self, year: int) -> int:
        """Returns the last number of a freshly reserved block."""
        for _ in range(3):
            async with transaction(self._sessions) as session:
                row = await session.execute(
                    update(TrackingCounter)
                    .where(TrackingCounter.prefix == self._prefix, TrackingCounter.year == year)
                    .values(value=TrackingCounter.value + self._block)
                    .returning(TrackingCounter.value)
                )
                value = row.scalar_one_or_none()
                if value is not None:
                    return int(value)
            try:
                async with transaction(self._sessions) as session:
                    session.add(TrackingCounter(prefix=self._prefix, year=year, value=self._block))
                return self._block
            except IntegrityError:
                continue  # another process created the row first: update it instead
        raise RuntimeError("could not reserve tracking numbers")
