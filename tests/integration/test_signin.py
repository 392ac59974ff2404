"""Staff accounts and sign-in (ADR 0028) on SQLite and PostgreSQL: the `ioc user` commands,
/auth/*, the session cookie and its CSRF token through the existing API, the throttle."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from ioc_core.access.sessions import CACHE_S, COOKIE
from ioc_core.access.staff import Passwords, check_new_user, create_user
from ioc_core.db import transaction
from ioc_core.errors import Unauthorized
from ioc_core.runtime import Core
from tests.helpers import auth, make_token, report, wait_until

IOC = [sys.executable, "-m", "ioc_core.cli"]
PASSWORD = "mật khẩu đủ dài"
# Cheap argon2 parameters for accounts the tests make themselves (behaviour, not cost).
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
async def fast(core: Core) -> Core:
    core.passwords = Passwords(hasher=FAST)
    return core


def configure(core: Core, **settings: Any) -> None:
    core.settings = dataclasses.replace(core.settings, **settings)


async def add_user(core: Core, username: str, role: str, **fields: Any) -> None:
    new = check_new_user(username=username, role=role, **fields)
    hashed = await core.passwords.hash(PASSWORD)
    async with transaction(core.sessions) as s:
        await create_user(s, new, password_hash=hashed, now=core.clock())


@dataclasses.dataclass
class Browser:
    """One signed-in browser: its cookie and CSRF token, sent by hand (the test client's
    own cookie jar is emptied so that no request carries a cookie it did not ask for)."""

    client: Any
    cookie: str
    csrf: str
    body: dict[str, Any]

    def headers(self, *, csrf: bool = True, **extra: str) -> dict[str, str]:
        h = {"Cookie": f"{COOKIE}={self.cookie}", **extra}
        if csrf:
            h["X-CSRF-Token"] = self.csrf
        return h

    async def get(self, path: str, **kw: Any) -> Any:
        return await self.client.get(path, headers=self.headers(csrf=False), **kw)

    async def post(self, path: str, *, csrf: bool = True, **kw: Any) -> Any:
        return await self.client.post(path, headers=self.headers(csrf=csrf), **kw)


async def login(client: Any, username: str, password: str = PASSWORD, **kw: Any) -> Any:
    r = await client.post("/auth/login", json={"username": username, "password": password}, **kw)
    client.session.cookie_jar.clear()
    return r


async def sign_in(client: Any, username: str, password: str = PASSWORD) -> Browser:
    r = await login(client, username, password)
    assert r.status == 200, await r.text()
    body = await r.json()
    return Browser(client, r.cookies[COOKIE].value, body["csrf"], body)


async def error_of(r: Any, status: int) -> str:
    assert r.status == status, await r.text()
    return str((await r.json())["error_id"])


# ------------------------------------------------------------------ the command line


async def ioc(url: str, tmp: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The real `ioc` command on the test's database. In a thread: the hub under test runs
    on this event loop and must go on serving (and finish its own writes) meanwhile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env |= {"IOC_DATABASE_URL": url, "IOC_DATA_DIR": str(tmp), "IOC_LOG_LEVEL": "WARNING"}
    return await asyncio.to_thread(
        subprocess.run,
        [*IOC, *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_accounts_from_the_command_line(
    core: Core, client: Any, database_url: str, tmp_path: Path
) -> None:
    async def run(*args: str, stdin: str = PASSWORD + "\n") -> subprocess.CompletedProcess[str]:
        return await ioc(database_url, tmp_path, *args, stdin=stdin)

    made = await run("user", "add", "An", "--role", "calltaker", "--extension", "2001",
                     "--display-name", "Nguyễn Văn An", "--password-stdin")  # fmt: skip
    assert made.returncode == 0, made.stderr
    refusals = [
        (["add", "binh", "--role", "boss"], "unknown role 'boss'"),
        (["add", "binh", "--role", "agency"], "role agency needs --agency"),
        (["add", "an", "--role", "admin"], "user 'an' exists already"),
        (["add", "binh", "--role", "calltaker", "--extension", "2001"], "belongs to 'an'"),
    ]
    for args, message in refusals:
        out = await run("user", *args, "--password-stdin")
        assert (out.returncode, message in out.stderr) == (2, True), (args, out.stderr)
    short = await run("user", "add", "binh", "--role", "admin", "--password-stdin", stdin="ngắn\n")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    listed = await run("user", "list")
    assert listed.returncode == 0 and "Nguyễn Văn An" in listed.stdout
    assert "argon2" not in listed.stdout and listed.stdout.count("\n") == 1

    browser = await sign_in(client, "an")  # the hub's default argon2 parameters
    assert browser.body["user"] == {
        "username": "an",
        "display_name": "Nguyễn Văn An",
        "role": "calltaker",
        "agency": None,
        "extension": "2001",
    }
    assert (await browser.get("/auth/session")).status == 200

    # Disabling ends the sign-in; another process (this command) reaches the hub's cached
    # sessions within the cache's few seconds.
    assert (await run("user", "disable", "an")).returncode == 0

    async def ended() -> bool:
        return bool((await browser.get("/auth/session")).status == 401)

    await wait_until(ended, within=CACHE_S + 3, what="the disabled user's session to end")
    assert await error_of(await browser.get("/auth/session"), 401) == "session-expired"
    assert await error_of(await login(client, "an"), 401) == "bad-credentials"
    assert (await run("user", "enable", "an")).returncode == 0
    browser = await sign_in(client, "an")

    changed = await run("user", "passwd", "an", "--password-stdin", stdin="một mật khẩu mới\n")
    assert changed.returncode == 0, changed.stderr
    await wait_until(ended, within=CACHE_S + 3, what="sign-ins to end with a new password")
    assert await error_of(await login(client, "an"), 401) == "bad-credentials"
    await sign_in(client, "an", "một mật khẩu mới")
    missing = await run("user", "passwd", "nobody", "--password-stdin")
    assert missing.returncode == 2 and "no user 'nobody'" in missing.stderr


# ------------------------------------------------------------------ signing in


async def test_one_answer_for_unknown_user_wrong_password_and_disabled(
    fast: Core, client: Any
) -> None:
    await add_user(fast, "an", "calltaker")
    await add_user(fast, "cu", "leader")
    ok = await login(client, "AN")  # usernames are lower-case; what people type may not be
    assert ok.status == 200, await ok.text()
    body = await ok.json()
    assert set(body) == {"user", "csrf", "expires_at"} and body["user"]["role"] == "calltaker"
    assert ok.headers["Cache-Control"] == "no-store"

    async with transaction(fast.sessions) as s:
        from ioc_core.access.staff import set_disabled

        await set_disabled(s, "cu", disabled=True, now=fast.clock())
    answers = []
    for username, password in (
        ("an", "sai mật khẩu rồi"),
        ("khong-co", PASSWORD),
        ("cu", PASSWORD),
    ):
        r = await login(client, username, password)
        assert r.status == 401 and COOKIE not in r.cookies
        answers.append(await r.json())
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["error_id"] == "bad-credentials"


async def test_the_cookie_and_what_the_sign_in_accepts(fast: Core, client: Any) -> None:
    await add_user(fast, "an", "calltaker")
    r = await login(client, "an")
    raw = r.headers["Set-Cookie"]
    morsel = r.cookies[COOKIE]
    assert len(morsel.value) >= 43  # 256 random bits, url-safe base64
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert morsel["max-age"] == str(12 * 3600) and not morsel["secure"], raw
    configure(fast, public_url="https://ioc.example.gov.vn")  # TLS at a proxy in front
    assert (await login(client, "an")).cookies[COOKIE]["secure"]
    configure(fast, public_url="")

    r = await client.post(
        "/auth/login", data=f'{{"username": "an", "password": "{PASSWORD}"}}'.encode(),
        headers={"Content-Type": "text/plain"},
    )  # fmt: skip
    assert await error_of(r, 415) == "unsupported-media-type"
    evil = await login(client, "an", headers={"Origin": "https://evil.example"})
    assert await error_of(evil, 403) == "origin-not-allowed"
    own = await login(client, "an", headers={"Origin": str(client.make_url("")).rstrip("/")})
    assert own.status == 200
    extra = await client.post("/auth/login", json={"username": "an", "password": PASSWORD, "x": 1})
    assert await error_of(extra, 422) == "validation-failed"


async def test_throttled_then_allowed_after_the_window(fast: Core, client: Any) -> None:
    configure(fast, login_max_failures=3, login_window_s=2)
    await add_user(fast, "an", "calltaker")
    for _ in range(3):
        assert await error_of(await login(client, "an", "sai mật khẩu"), 401) == "bad-credentials"
    r = await login(client, "an")  # the right password, too late
    assert await error_of(r, 429) == "login-throttled"
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    assert (await r.json())["details"]["retry_after_s"] == int(r.headers["Retry-After"])

    async def allowed() -> bool:
        return bool((await login(client, "an")).status == 200)

    await wait_until(allowed, within=6, interval=0.25, what="the window to pass")
    # A success forgets the username's failures: three more are needed again.
    for _ in range(2):
        await login(client, "an", "sai mật khẩu")
    assert (await login(client, "an")).status == 200


async def test_one_address_guessing_many_usernames_is_throttled(fast: Core, client: Any) -> None:
    await add_user(fast, "an", "calltaker")
    for i in range(20):
        assert (await login(client, f"doan-{i}", "sai mật khẩu")).status == 401
    r = await login(client, "an")
    assert await error_of(r, 429) == "login-throttled"


# ------------------------------------------------------------------ the session at work


async def test_csrf_on_changes_made_with_the_cookie(fast: Core, client: Any) -> None:
    await add_user(fast, "an", "calltaker")
    b = await sign_in(client, "an")
    r = await b.post("/api/v1/incidents", json=report(), csrf=False)
    assert await error_of(r, 403) == "csrf-failed"
    r = await client.post(
        "/api/v1/incidents", json=report(), headers=b.headers(csrf=False, **{"X-CSRF-Token": "x"})
    )
    assert await error_of(r, 403) == "csrf-failed"
    r = await b.post("/api/v1/incidents", json=report())
    assert r.status == 201, await r.text()
    created = await r.json()
    # The timeline names the signed-in person as the actor.
    timeline = await (await b.get(f"/api/v1/incidents/{created['id']}/timeline")).json()
    assert any("calltaker:an" in str(row) for row in timeline["items"]), timeline
    # A token wins over a cookie, and needs no CSRF token.
    token = await make_token(fast, "calltaker")
    r = await client.post(
        "/api/v1/incidents", json=report(), headers=b.headers(csrf=False) | auth(token)
    )
    assert r.status == 201, await r.text()
    # Feature routes behind require_staff serve the browser too.
    assert (await b.get("/api/v1/agents")).status == 200
    assert (await b.get("/api/v1/chats/handoffs")).status == 200


async def test_expiry_logout_and_unknown_cookies(fast: Core, client: Any) -> None:
    await add_user(fast, "an", "calltaker")
    nobody = await client.get("/auth/session")
    assert await error_of(nobody, 401) == "not-signed-in"
    forged = await client.get("/auth/session", headers={"Cookie": f"{COOKIE}=forged"})
    assert await error_of(forged, 401) == "not-signed-in"
    assert (await client.get("/api/v1/incidents")).status == 200  # no cookie: the public

    configure(fast, session_hours=2 / 3600)
    short = await sign_in(client, "an")
    assert (await short.get("/auth/session")).status == 200

    async def expired() -> bool:
        return bool((await short.get("/api/v1/incidents")).status == 401)

    await wait_until(expired, within=5, interval=0.2, what="the session to expire")
    assert await error_of(await short.get("/auth/session"), 401) == "session-expired"

    configure(fast, session_hours=12)
    b = await sign_in(client, "an")
    assert await error_of(await b.post("/auth/logout", csrf=False), 403) == "csrf-failed"
    out = await b.post("/auth/logout")
    assert out.status == 204
    assert out.cookies[COOKIE].value == "" and out.cookies[COOKIE]["max-age"] == "0"
    # Revoked at once in this process (no cache delay).
    assert await error_of(await b.get("/auth/session"), 401) == "session-expired"
    assert await error_of(await b.get("/api/v1/incidents"), 401) == "session-expired"


async def test_staff_and_agency_views_for_signed_in_people(fast: Core, client: Any) -> None:
    await add_user(fast, "an", "calltaker")
    await add_user(fast, "snnmt", "agency", agency_code="SNNMT")
    await add_user(fast, "sxd", "agency", agency_code="SXD")
    an = await sign_in(client, "an")
    draft = await (await an.post("/api/v1/incidents", json=report(draft=True))).json()
    r = await an.post("/api/v1/incidents", json=report())
    assigned = await r.json()
    for action in ({"action": "verify"}, {"action": "assign", "agency": "SNNMT"}):
        r = await an.post(f"/api/v1/incidents/{assigned['id']}/transitions", json=action)
        assert r.status == 200, await r.text()
    seen = await (await an.get("/api/v1/incidents?state=draft")).json()
    assert [i["id"] for i in seen["items"]] == [draft["id"]]

    agency = await sign_in(client, "snnmt")
    assert agency.body["user"]["agency"] == "SNNMT"
    listed = await (await agency.get("/api/v1/incidents")).json()
    assert [i["id"] for i in listed["items"]] == [assigned["id"]]
    assert (await agency.get(f"/api/v1/incidents/{draft['id']}")).status == 404
    other = await sign_in(client, "sxd")
    assert (await (await other.get("/api/v1/incidents")).json())["items"] == []
    r = await agency.post("/api/v1/incidents", json=report())
    assert r.status == 403  # an agency files no reports, signed in or not


async def test_a_new_password_ends_the_other_sessions(fast: Core, client: Any) -> None:
    await add_user(fast, "an", "supervisor")
    here, there = await sign_in(client, "an"), await sign_in(client, "an")
    wrong = await here.post("/auth/password", json={"current": "đoán sai rồi", "new": "x" * 12})
    assert await error_of(wrong, 403) == "bad-credentials"
    short = await here.post("/auth/password", json={"current": PASSWORD, "new": "ngắn"})
    assert await error_of(short, 422) == "password-too-short"
    no_csrf = await here.post("/auth/password", csrf=False, json={"current": PASSWORD, "new": "x"})
    assert await error_of(no_csrf, 403) == "csrf-failed"
    changed = await here.post("/auth/password", json={"current": PASSWORD, "new": "mới và dài hơn"})
    assert changed.status == 204, await changed.text()
    assert (await here.get("/auth/session")).status == 200
    assert await error_of(await there.get("/auth/session"), 401) == "session-expired"
    assert await error_of(await login(client, "an"), 401) == "bad-credentials"
    await sign_in(client, "an", "mới và dài hơn")
    token = await make_token(fast, "supervisor")
    r = await client.post("/auth/password", json={"current": "a", "new": "b"}, headers=auth(token))
    assert await error_of(r, 401) == "not-signed-in"  # a token has no password to change


async def test_last_seen_is_written_at_most_once_a_minute(fast: Core, client: Any) -> None:
    from sqlalchemy import select

    from ioc_core.access.models import StaffSession
    from ioc_core.access.sessions import SessionVerifier, session_id

    await add_user(fast, "an", "calltaker")
    b = await sign_in(client, "an")
    now = [fast.clock()]
    # No cache: every lookup reads the database, as a worker does after CACHE_S.
    verifier = SessionVerifier(sessions=fast.sessions, cache_s=0, clock=lambda: now[0])

    async def last_seen() -> Any:
        async with fast.sessions() as s:
            return await s.scalar(
                select(StaffSession.last_seen_at).where(StaffSession.id == session_id(b.cookie))
            )

    first = await last_seen()
    for seconds in (10, 30, 59):
        now[0] = first + timedelta(seconds=seconds)
        await verifier.lookup(b.cookie)
        assert await last_seen() == first
    now[0] = first + timedelta(seconds=61)
    await verifier.lookup(b.cookie)
    assert await last_seen() == now[0]
    now[0] = first + timedelta(hours=12, seconds=1)
    with pytest.raises(Unauthorized) as err:
        await verifier.lookup(b.cookie)
    assert err.value.error_id == "session-expired"
