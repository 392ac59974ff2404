"""Staff accounts (ADR 0028): who may sign in to the screens, with which role, and their
password, hashed with argon2id (argon2-cffi's PasswordHasher and its RFC 9106 defaults)."""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ioc_core.access.models import StaffSession, StaffUser
from ioc_core.access.roles import Role
from ioc_core.catalogue.service import agency_exists
from ioc_core.errors import Conflict, NotFound, ValidationFailed

USERNAME = re.compile(r"[a-z0-9._-]{2,64}")
EXTENSION = re.compile(r"[0-9]{2,8}")
STAFF_ROLES: tuple[Role, ...] = (
    Role.CALLTAKER,
    Role.SUPERVISOR,
    Role.AGENCY,
    Role.LEADER,
    Role.ADMIN,
)
MIN_PASSWORD = 10
# Hashing cost grows with the input; nobody types more than this, an attacker could.
MAX_PASSWORD = 1024


@dataclass(frozen=True, kw_only=True)
class NewUser:
    """A checked account, before its password is hashed."""

    username: str
    role: Role
    agency_code: str | None
    extension: str | None
    display_name: str


def check_new_user(
    *,
    username: str,
    role: str,
    agency_code: str | None = None,
    extension: str | None = None,
    display_name: str | None = None,
) -> NewUser:
    """The account's fields as stored, or ValidationFailed saying what is wrong (pure)."""
    name = username.strip().lower()
    if not USERNAME.fullmatch(name):
        raise ValidationFailed(
            f"username {username!r} must be 2-64 of a-z, 0-9, '.', '_', '-'",
            error_id="bad-username",
        )
    roles = [r.value for r in STAFF_ROLES]
    if role not in roles:
        raise ValidationFailed(
            f"unknown role {role!r}; one of {', '.join(roles)}",
            details={"roles": roles},
            error_id="unknown-role",
        )
    r = Role(role)
    agency = (agency_code or "").strip() or None
    if r is Role.AGENCY and not agency:
        raise ValidationFailed("role agency needs --agency CODE", error_id="agency-required")
    if r is not Role.AGENCY and agency:
        raise ValidationFailed("only role agency takes --agency", error_id="agency-not-allowed")
    ext = (extension or "").strip() or None
    if ext is not None and not EXTENSION.fullmatch(ext):
        raise ValidationFailed(
            f"extension {extension!r} must be 2-8 digits", error_id="bad-extension"
        )
    return NewUser(
        username=name,
        role=r,
        agency_code=agency,
        extension=ext,
        display_name=(display_name or "").strip() or name,
    )


def check_password(password: str) -> None:
    """ValidationFailed unless `password` is acceptable as a new password (pure)."""
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(
            f"the password must be at least {MIN_PASSWORD} characters",
            details={"min_length": MIN_PASSWORD},
            error_id="password-too-short",
        )
    if len(password) > MAX_PASSWORD:
        raise ValidationFailed(
            f"the password may be at most {MAX_PASSWORD} characters",
            details={"max_length": MAX_PASSWORD},
            error_id="password-too-long",
        )


class Passwords:
    """argon2id hashing off the event loop. A hash takes tens of milliseconds of CPU and
    64 MiB of memory (RFC 9106's low-memory profile): at most `parallel` run at once per
    process, so a burst of sign-ins queues instead of exhausting memory."""

    def __init__(self, *, hasher: PasswordHasher | None = None, parallel: int = 2) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(parallel)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> tuple[bool, bool]:
        """(matches, needs a new hash). `stored=None` (no such user) still verifies, against
        a dummy hash of the same parameters, so the answer takes the same time either way."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash(secrets.token_urlsafe(16))
            target = self._dummy
        else:
            target = stored
        async with self._slots:
            try:
                await asyncio.to_thread(self._hasher.verify, target, password)
            except (VerificationError, InvalidHashError):
                return False, False
        if stored is None:
            return False, False
        return True, self._hasher.check_needs_rehash(stored)


async def create_user(
    session: AsyncSession, new: NewUser, *, password_hash: str, now: datetime
) -> StaffUser:
    if new.agency_code and not await agency_exists(session, new.agency_code):
        raise ValidationFailed(f"unknown agency {new.agency_code!r}", error_id="unknown-agency")
    if await user_by_name(session, new.username) is not None:
        raise Conflict(f"user {new.username!r} exists already", error_id="duplicate-username")
    if new.extension is not None:
        taken = await session.scalar(
            select(StaffUser.username).where(StaffUser.extension == new.extension)
        )
        if taken is not None:
            raise Conflict(
                f"extension {new.extension} belongs to {taken!r} already",
                error_id="duplicate-extension",
            )
    row = StaffUser(
        username=new.username,
        display_name=new.display_name,
        role=new.role.value,
        agency_code=new.agency_code,
        extension=new.extension,
        password_hash=password_hash,
        created_at=now,
        password_changed_at=now,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:  # another process added the same name or extension just now
        raise Conflict(
            f"user {new.username!r} or extension {new.extension} exists already",
            error_id="duplicate-username",
        ) from None
    return row


async def user_by_name(session: AsyncSession, username: str) -> StaffUser | None:
    return (
        await session.scalars(select(StaffUser).where(StaffUser.username == username.lower()))
    ).first()


async def existing_user(session: AsyncSession, username: str) -> StaffUser:
    row = await user_by_name(session, username)
    if row is None:
        raise NotFound(f"no user {username!r}", error_id="unknown-user")
    return row


async def list_users(session: AsyncSession) -> list[StaffUser]:
    return list((await session.scalars(select(StaffUser).order_by(StaffUser.username))).all())


async def revoke_user_sessions(
    session: AsyncSession, user_id: str, *, now: datetime, keep: str | None = None
) -> int:
    """End every open session of the user (but `keep`, the one changing its password)."""
    stmt = update(StaffSession).where(
        StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None)
    )
    if keep is not None:
        stmt = stmt.where(StaffSession.id != keep)
    result = await session.execute(stmt.values(revoked_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


async def set_disabled(
    session: AsyncSession, username: str, *, disabled: bool, now: datetime
) -> StaffUser:
    row = await existing_user(session, username)
    if disabled:
        row.disabled_at = row.disabled_at or now
        await revoke_user_sessions(session, row.id, now=now)
    else:
        row.disabled_at = None
    return row


async def set_password(
    session: AsyncSession,
    row: StaffUser,
    *,
    password_hash: str,
    now: datetime,
    keep_session: str | None = None,
) -> None:
    """A new password ends the user's other sessions: whoever knew the old one is out."""
    row.password_hash = password_hash
    row.password_changed_at = now
    await revoke_user_sessions(session, row.id, now=now, keep=keep_session)
