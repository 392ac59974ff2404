"""The sign-in throttle (ADR 0028): failed sign-ins counted per username and per client
address in the database, so every worker and every machine counts the same failures."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ioc_core.access.models import LoginFailure

# Failures from one address (many usernames, one guesser) before it must wait; per username
# the limit is IOC_LOGIN_MAX_FAILURES.
ADDRESS_FAILURES = 20


def user_key(username: str) -> str:
    return "user:" + username.strip().lower()[:64]


def address_key(address: str) -> str:
    return "addr:" + address[:64]


def wait_s(failures: Sequence[datetime], *, limit: int, window_s: float, now: datetime) -> float:
    """Seconds until one more attempt is allowed under `limit` failures per `window_s`
    (0: allowed now). Pure. The attempt is allowed once fewer than `limit` failures are
    younger than the window: the wait ends when the one that makes the count too high ages
    out."""
    recent = sorted(at for at in failures if (now - at).total_seconds() < window_s)
    if len(recent) < limit:
        return 0.0
    oldest_that_counts = recent[len(recent) - limit]
    return max(0.0, window_s - (now - oldest_that_counts).total_seconds())


def retry_after(seconds: float) -> int:
    """A Retry-After value: whole seconds, never 0 for a refusal."""
    return max(1, math.ceil(seconds))


async def recent_failures(
    session: AsyncSession, keys: Iterable[str], *, now: datetime, window_s: float
) -> dict[str, list[datetime]]:
    keys = list(keys)
    since = now - timedelta(seconds=window_s)
    rows = await session.execute(
        select(LoginFailure.key, LoginFailure.at).where(
            LoginFailure.key.in_(keys), LoginFailure.at > since
        )
    )
    out: dict[str, list[datetime]] = {k: [] for k in keys}
    for key, at in rows:
        out[key].append(at)
    return out


def throttled_for(
    failures: Mapping[str, Sequence[datetime]],
    limits: Mapping[str, int],
    *,
    window_s: float,
    now: datetime,
) -> float:
    """The longest wait any key imposes (0: not throttled). Pure."""
    return max(
        (
            wait_s(failures.get(key, ()), limit=limit, window_s=window_s, now=now)
            for key, limit in limits.items()
        ),
        default=0.0,
    )


async def record_failure(
    session: AsyncSession, keys: Iterable[str], *, now: datetime, window_s: float
) -> None:
    session.add_all(LoginFailure(key=k, at=now) for k in keys)
    # What has aged out of the window counts for nothing: the table stays small.
    await session.execute(
        delete(LoginFailure).where(LoginFailure.at <= now - timedelta(seconds=window_s))
    )


async def clear_failures(session: AsyncSession, key: str) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.key == key))
