"""API tokens: created by `ioc token create`, stored hashed, verified with a short cache."""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core.access.models import ApiToken
from ioc_core.access.roles import Principal, Role
from ioc_core.catalogue.service import agency_exists
from ioc_core.db import utcnow
from ioc_core.errors import Unauthorized, ValidationFailed

PREFIX = "ioc_"


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is safe here; a slow KDF would only cost
    # latency on every request (docs/adr/0005).
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    session: AsyncSession,
    *,
    role: str,
    name: str,
    agency_code: str | None = None,
    subject: str = "",
) -> tuple[str, ApiToken]:
    try:
        r = Role(role)
    except ValueError:
        raise ValidationFailed(
            f"unknown role {role!r}", details={"roles": [x.value for x in Role]}
        ) from None
    if r is Role.PUBLIC:
        raise ValidationFailed("the public role needs no token")
    if (r is Role.AGENCY) != bool(agency_code):
        raise ValidationFailed("an agency token needs --agency, and only agency tokens take it")
    if agency_code and not await agency_exists(session, agency_code):
        raise ValidationFailed(f"unknown agency {agency_code!r}")
    if r is Role.CITIZEN and not subject:
        subject = f"citizen:{name}"
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        role=r.value,
        agency_code=agency_code,
        subject=subject,
        token_hash=hash_token(token),
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return token, row


class TokenVerifier:
    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], cache_s: float) -> None:
        self._sessions = sessions
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def principal(self, token: str) -> Principal:
        digest = hash_token(token)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit and now - hit[0] < self._cache_s:
            return hit[1]
        async with self._sessions() as s:
            row = (await s.scalars(select(ApiToken).where(ApiToken.token_hash == digest))).first()
        if row is None or row.revoked_at is not None:
            self._cache.pop(digest, None)
            raise Unauthorized("the access token is unknown or revoked", error_id="invalid-token")
        p = Principal(
            role=Role(row.role),
            name=row.name,
            token_id=row.id,
            agency_code=row.agency_code,
            subject=row.subject,
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, p)
        return p


async def list_tokens(sessions: async_sessionmaker[AsyncSession]) -> list[ApiToken]:
    async with sessions() as s:
        return list((await s.scalars(select(ApiToken).order_by(ApiToken.created_at))).all())


async def revoke_token(session: AsyncSession, token_id: str) -> bool:
    row = await session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True
