"""Staff sign-in sessions (ADR 0028): a random cookie value whose SHA-256 is the row's id,
an absolute expiry, a CSRF token, and a short per-process cache of the lookup."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core.access.models import StaffSession, StaffUser
from ioc_core.access.roles import Principal, Role
from ioc_core.db import transaction, utcnow
from ioc_core.errors import Unauthorized

COOKIE = "ioc_session"
CSRF_HEADER = "X-CSRF-Token"
# How long a worker trusts a looked-up session before asking the database again: what a
# logout, a disabled account or a new password made in *another* process takes to reach it.
CACHE_S = 5.0
# last_seen_at is written at most this often per session (never on every request).
TOUCH_S = 60.0


def session_id(cookie: str) -> str:
    # The cookie carries 256 random bits: a fast hash is enough (as for API tokens).
    return hashlib.sha256(cookie.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class SignedIn:
    """A live session and the user behind it."""

    id: str
    user_id: str
    principal: Principal
    display_name: str
    csrf: str
    expires_at: datetime

    def user(self) -> dict[str, str | None]:
        p = self.principal
        return {
            "username": p.name,
            "display_name": self.display_name,
            "role": p.role.value,
            "agency": p.agency_code,
            "extension": p.extension,
        }

    def body(self) -> dict[str, object]:
        """The answer of POST /auth/login and GET /auth/session."""
        return {"user": self.user(), "csrf": self.csrf, "expires_at": self.expires_at}


def signed_in(row: StaffSession, user: StaffUser) -> SignedIn:
    return SignedIn(
        id=row.id,
        user_id=user.id,
        principal=Principal(
            role=Role(user.role),
            name=user.username,
            agency_code=user.agency_code,
            extension=user.extension,
            session=True,
        ),
        display_name=user.display_name,
        csrf=row.csrf_token,
        expires_at=row.expires_at,
    )


async def open_session(
    session: AsyncSession,
    user: StaffUser,
    *,
    hours: float,
    now: datetime,
    client: str,
    user_agent: str,
) -> tuple[str, SignedIn]:
    """A new session for `user`: (the cookie's value, shown once, and the session)."""
    cookie = secrets.token_urlsafe(32)
    row = StaffSession(
        id=session_id(cookie),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + timedelta(hours=hours),
        last_seen_at=now,
        client=client[:64],
        user_agent=user_agent[:300],
    )
    session.add(row)
    await session.flush()
    return cookie, signed_in(row, user)


def expired() -> Unauthorized:
    return Unauthorized("the sign-in has ended; sign in again", error_id="session-expired")


class SessionVerifier:
    """Cookie → SignedIn, cached `cache_s` per worker. What this process revokes (logout, a
    new password) it forgets at once; other processes' revocations reach it within
    `cache_s`. Expiry is checked on every request, cached or not."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        cache_s: float = CACHE_S,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._cache_s = cache_s
        self._clock = clock
        self._cache: dict[str, tuple[float, SignedIn]] = {}

    async def lookup(self, cookie: str) -> SignedIn:
        sid = session_id(cookie)
        now = self._clock()
        hit = self._cache.get(sid)
        mono = time.monotonic()
        if hit and mono - hit[0] < self._cache_s:
            if now >= hit[1].expires_at:
                self._cache.pop(sid, None)
                raise expired()
            return hit[1]
        async with self._sessions() as s:
            found = (
                await s.execute(
                    select(StaffSession, StaffUser)
                    .join(StaffUser, StaffUser.id == StaffSession.user_id)
                    .where(StaffSession.id == sid)
                )
            ).first()
        if found is None:
            self._cache.pop(sid, None)
            raise Unauthorized("not signed in", error_id="not-signed-in")
        row, user = found
        if row.revoked_at is not None or user.disabled_at is not None or now >= row.expires_at:
            self._cache.pop(sid, None)
            raise expired()
        if (now - row.last_seen_at).total_seconds() >= TOUCH_S:
            async with transaction(self._sessions) as s:
                await s.execute(
                    update(StaffSession)
                    .where(StaffSession.id == sid, StaffSession.last_seen_at == row.last_seen_at)
                    .values(last_seen_at=now)
                )
        info = signed_in(row, user)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[sid] = (mono, info)
        return info

    def forget(self, *, session: str | None = None, user_id: str | None = None) -> None:
        """Drop a revoked session, or every cached session of a user, from this process."""
        if session is not None:
            self._cache.pop(session, None)
        if user_id is not None:
            for sid in [k for k, (_, v) in self._cache.items() if v.user_id == user_id]:
                self._cache.pop(sid, None)


async def revoke_session(session: AsyncSession, sid: str, *, now: datetime) -> None:
    await session.execute(
        update(StaffSession)
        .where(StaffSession.id == sid, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
