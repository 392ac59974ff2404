"""Staff accounts' pure rules: account fields, passwords, the sign-in throttle's arithmetic,
and argon2 verification (unknown users and stale parameters included)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from ioc_core.access.roles import Role
from ioc_core.access.sessions import session_id
from ioc_core.access.staff import Passwords, check_new_user, check_password
from ioc_core.access.throttle import retry_after, throttled_for, wait_s
from ioc_core.errors import ValidationFailed

T0 = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"username": "An.Nguyen", "role": "calltaker"},
            ("an.nguyen", Role.CALLTAKER, None, None, "an.nguyen"),
        ),
        (
            {"username": "sxd-1", "role": "agency", "agency_code": "SXD", "display_name": "Sở"},
            ("sxd-1", Role.AGENCY, "SXD", None, "Sở"),
        ),
        (
            {"username": "binh", "role": "supervisor", "extension": "2001"},
            ("binh", Role.SUPERVISOR, None, "2001", "binh"),
        ),
        (
            {"username": "x_y", "role": "admin", "extension": " "},
            ("x_y", Role.ADMIN, None, None, "x_y"),
        ),
    ],
)
def test_accounts_as_stored(fields: dict[str, str], expected: tuple[object, ...]) -> None:
    u = check_new_user(**fields)
    assert (u.username, u.role, u.agency_code, u.extension, u.display_name) == expected


@pytest.mark.parametrize(
    ("fields", "error_id"),
    [
        ({"username": "a", "role": "admin"}, "bad-username"),
        ({"username": "an nguyen", "role": "admin"}, "bad-username"),
        ({"username": "x" * 65, "role": "admin"}, "bad-username"),
        ({"username": "tên", "role": "admin"}, "bad-username"),
        ({"username": "an", "role": "boss"}, "unknown-role"),
        ({"username": "an", "role": "service"}, "unknown-role"),  # services use tokens
        ({"username": "an", "role": "citizen"}, "unknown-role"),
        ({"username": "an", "role": "agency"}, "agency-required"),
        ({"username": "an", "role": "calltaker", "agency_code": "SXD"}, "agency-not-allowed"),
        ({"username": "an", "role": "calltaker", "extension": "1"}, "bad-extension"),
        ({"username": "an", "role": "calltaker", "extension": "123456789"}, "bad-extension"),
        ({"username": "an", "role": "calltaker", "extension": "20a1"}, "bad-extension"),
    ],
)
def test_accounts_refused(fields: dict[str, str], error_id: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        check_new_user(**fields)
    assert err.value.error_id == error_id


@pytest.mark.parametrize(
    ("password", "error_id"),
    [
        ("123456789", "password-too-short"),
        ("", "password-too-short"),
        ("x" * 1025, "password-too-long"),
        ("1234567890", None),
        ("mật khẩu dài đủ", None),
        ("x" * 1024, None),
    ],
)
def test_new_passwords(password: str, error_id: str | None) -> None:
    if error_id is None:
        check_password(password)
        return
    with pytest.raises(ValidationFailed) as err:
        check_password(password)
    assert err.value.error_id == error_id


def _ago(*seconds: float) -> list[datetime]:
    return [T0 - timedelta(seconds=s) for s in seconds]


@pytest.mark.parametrize(
    ("failures", "limit", "window", "wait"),
    [
        ([], 5, 300, 0.0),
        (_ago(10, 20, 30, 40), 5, 300, 0.0),  # four: one more try allowed
        (_ago(10, 20, 30, 40, 50), 5, 300, 250.0),  # five: until the oldest ages out
        (_ago(10, 20, 30, 40, 50, 60), 5, 300, 250.0),  # six: until the 2nd oldest ages out
        (_ago(10, 20, 30, 40, 400), 5, 300, 0.0),  # one is older than the window
        (_ago(299.5, 1, 2, 3, 4), 5, 300, 0.5),
        (_ago(300, 1, 2, 3, 4), 5, 300, 0.0),  # exactly the window: aged out
        (_ago(1), 1, 60, 59.0),
    ],
)
def test_throttle_wait(failures: list[datetime], limit: int, window: float, wait: float) -> None:
    assert wait_s(failures, limit=limit, window_s=window, now=T0) == pytest.approx(wait)


def test_the_longest_wait_of_any_key_counts() -> None:
    failures = {"user:an": _ago(10, 20), "addr:1.2.3.4": _ago(*range(1, 21))}
    assert throttled_for(
        failures, {"user:an": 5, "addr:1.2.3.4": 20}, window_s=300, now=T0
    ) == pytest.approx(280)
    assert throttled_for(failures, {"user:an": 2}, window_s=300, now=T0) == pytest.approx(280)
    assert throttled_for(failures, {"user:binh": 5}, window_s=300, now=T0) == 0


@pytest.mark.parametrize(("seconds", "header"), [(0.1, 1), (0.0, 1), (1.0, 1), (250.2, 251)])
def test_retry_after_is_whole_seconds_never_zero(seconds: float, header: int) -> None:
    assert retry_after(seconds) == header


def test_the_session_id_is_the_cookies_sha256() -> None:
    assert session_id("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# Cheap parameters: these tests check behaviour, not cost.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


async def test_passwords_verify_and_ask_for_a_rehash_when_parameters_change() -> None:
    old = Passwords(hasher=FAST)
    stored = await old.hash("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct" not in stored
    assert await old.verify(stored, "correct horse battery") == (True, False)
    assert await old.verify(stored, "wrong horse battery") == (False, False)
    newer = Passwords(hasher=PasswordHasher(time_cost=2, memory_cost=16, parallelism=1))
    assert await newer.verify(stored, "correct horse battery") == (True, True)
    # No such user: verified against a dummy hash (same work), never a match.
    assert await old.verify(None, "correct horse battery") == (False, False)
    assert await old.verify("not a hash", "x") == (False, False)
