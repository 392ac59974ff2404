"""Signing in, out, and changing one's password (ADR 0028): the service behind /auth/*.

Each is recorded in the log at INFO with the username and the client address, never a
password (the sessions table keeps who signed in when, from where, and when it ended).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ioc_core.access.sessions import SignedIn, open_session, revoke_session
from ioc_core.access.staff import (
    MAX_PASSWORD,
    check_password,
    existing_user,
    set_password,
    user_by_name,
)
from ioc_core.access.throttle import (
    ADDRESS_FAILURES,
    address_key,
    clear_failures,
    recent_failures,
    record_failure,
    retry_after,
    throttled_for,
    user_key,
)
from ioc_core.db import transaction
from ioc_core.errors import Forbidden, IocError, Unauthorized

if TYPE_CHECKING:
    from ioc_core.runtime import Core

logger = logging.getLogger(__name__)


class LoginThrottled(IocError):
    status = 429
    error_id = "login-throttled"

    def __init__(self, wait_s: float) -> None:
        self.retry_after = retry_after(wait_s)
        super().__init__(
            f"too many failed sign-ins; try again in {self.retry_after} s",
            details={"retry_after_s": self.retry_after},
        )


def bad_credentials() -> Unauthorized:
    # One answer for an unknown user, a wrong password and a disabled account: the answer
    # must not tell which usernames exist.
    return Unauthorized("wrong username or password", error_id="bad-credentials")


async def _throttle(core: Core, limits: dict[str, int]) -> None:
    s, now = core.settings, core.clock()
    async with core.sessions() as db:
        failures = await recent_failures(db, limits, now=now, window_s=s.login_window_s)
    wait = throttled_for(failures, limits, window_s=s.login_window_s, now=now)
    if wait > 0:
        raise LoginThrottled(wait)


async def _failed(core: Core, keys: list[str]) -> None:
    async with transaction(core.sessions) as db:
        await record_failure(db, keys, now=core.clock(), window_s=core.settings.login_window_s)


async def sign_in(
    core: Core, *, username: str, password: str, client: str, user_agent: str
) -> tuple[str, SignedIn]:
    """(the new cookie's value, the session), or 401 `bad-credentials`, or 429
    `login-throttled` once the username or the address failed too often."""
    ukey, akey = user_key(username), address_key(client)
    await _throttle(core, {ukey: core.settings.login_max_failures, akey: ADDRESS_FAILURES})
    async with core.sessions() as db:
        user = await user_by_name(db, username.strip())
    if len(password) > MAX_PASSWORD:
        password = password[:MAX_PASSWORD]  # never matches a stored one; same work either way
    ok, rehash = await core.passwords.verify(
        user.password_hash if user is not None else None, password
    )
    if user is None or not ok or user.disabled_at is not None:
        await _failed(core, [ukey, akey])
        logger.info("sign-in failed for %r from %s", username[:64], client)
        raise bad_credentials()
    new_hash = await core.passwords.hash(password) if rehash else None
    async with transaction(core.sessions) as db:
        if new_hash is not None:  # the hasher's parameters changed since this hash was made
            (await existing_user(db, user.username)).password_hash = new_hash
        await clear_failures(db, ukey)
        cookie, signed = await open_session(
            db,
            user,
            hours=core.settings.session_hours,
            now=core.clock(),
            client=client,
            user_agent=user_agent,
        )
    logger.info("sign-in: %s (%s) from %s", user.username, user.role, client)
    return cookie, signed


async def sign_out(core: Core, signed: SignedIn) -> None:
    async with transaction(core.sessions) as db:
        await revoke_session(db, signed.id, now=core.clock())
    core.signins.forget(session=signed.id)
    logger.info("sign-out: %s", signed.principal.name)


async def change_password(core: Core, signed: SignedIn, *, current: str, new: str) -> None:
    """The signed-in user's new password; their other sessions end. A wrong `current` is
    403 `bad-credentials` and counts as a failed sign-in (it is the same guess)."""
    check_password(new)
    name = signed.principal.name
    ukey = user_key(name)
    await _throttle(core, {ukey: core.settings.login_max_failures})
    async with core.sessions() as db:
        user = await existing_user(db, name)
    ok, _ = await core.passwords.verify(user.password_hash, current[:MAX_PASSWORD])
    if not ok:
        await _failed(core, [ukey])
        logger.info("password change refused for %s: wrong current password", name)
        raise Forbidden("the current password is wrong", error_id="bad-credentials")
    new_hash = await core.passwords.hash(new)
    async with transaction(core.sessions) as db:
        row = await existing_user(db, name)
        await set_password(
            db, row, password_hash=new_hash, now=core.clock(), keep_session=signed.id
        )
    core.signins.forget(user_id=signed.user_id)
    logger.info("password changed: %s (other sessions ended)", name)
