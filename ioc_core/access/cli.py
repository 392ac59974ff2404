"""`ioc user ...`: staff accounts from the command line (ADR 0028). The first account is
made here (`ioc user add admin --role admin`); there is no sign-up."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core.access.staff import (
    STAFF_ROLES,
    Passwords,
    check_new_user,
    check_password,
    create_user,
    existing_user,
    list_users,
    set_disabled,
    set_password,
)
from ioc_core.config import Settings
from ioc_core.db import make_engine, make_sessionmaker, transaction, utcnow
from ioc_core.errors import ValidationFailed
from ioc_core.i18n import t

T = TypeVar("T")


def _in_database(fn: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    from ioc_core.runtime import prepare_database

    settings = Settings.from_env()

    async def go() -> T:
        await prepare_database(settings)
        engine = make_engine(settings.database_url)
        try:
            return await fn(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def read_password(args: argparse.Namespace, username: str) -> str:
    """From stdin (one line) with --password-stdin, else asked twice on the terminal."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ValidationFailed(t("cli.password_empty"), error_id="password-too-short")
    else:
        password = getpass.getpass(t("cli.password_prompt", user=username))
        if getpass.getpass(t("cli.password_again")) != password:
            raise ValidationFailed(t("cli.password_mismatch"), error_id="password-mismatch")
    check_password(password)
    return password


def cmd_add(args: argparse.Namespace) -> int:
    new = check_new_user(
        username=args.name,
        role=args.role,
        agency_code=args.agency,
        extension=args.extension,
        display_name=args.display_name,
    )
    password = read_password(args, new.username)

    async def go(sessions: async_sessionmaker[AsyncSession]) -> None:
        hashed = await Passwords().hash(password)
        async with transaction(sessions) as s:
            await create_user(s, new, password_hash=hashed, now=utcnow())

    _in_database(go)
    print(t("cli.user_created", user=new.username, role=new.role.value), file=sys.stderr)
    return 0


def cmd_list(_args: argparse.Namespace) -> int:
    async def go(sessions: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
        async with sessions() as s:
            return [
                {
                    "username": u.username,
                    "display_name": u.display_name,
                    "role": u.role,
                    "agency": u.agency_code,
                    "extension": u.extension,
                    "disabled": u.disabled_at is not None,
                    "created_at": u.created_at.isoformat(),
                    "password_changed_at": u.password_changed_at.isoformat(),
                }
                for u in await list_users(s)
            ]

    for row in _in_database(go):
        print(json.dumps(row, ensure_ascii=False))
    return 0


def cmd_disable(args: argparse.Namespace, *, disabled: bool = True) -> int:
    async def go(sessions: async_sessionmaker[AsyncSession]) -> str:
        async with transaction(sessions) as s:
            row = await set_disabled(s, args.name, disabled=disabled, now=utcnow())
            return row.username

    name = _in_database(go)
    print(t("cli.user_disabled" if disabled else "cli.user_enabled", user=name), file=sys.stderr)
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    return cmd_disable(args, disabled=False)


def cmd_passwd(args: argparse.Namespace) -> int:
    name = args.name.strip().lower()

    async def exists(sessions: async_sessionmaker[AsyncSession]) -> None:
        async with sessions() as s:
            await existing_user(s, name)

    _in_database(exists)  # say "no such user" before asking for a password
    password = read_password(args, name)

    async def go(sessions: async_sessionmaker[AsyncSession]) -> None:
        hashed = await Passwords().hash(password)
        async with transaction(sessions) as s:
            row = await existing_user(s, name)
            await set_password(s, row, password_hash=hashed, now=utcnow())

    _in_database(go)
    print(t("cli.password_changed", user=name), file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """`ioc user add|list|disable|enable|passwd` on the `ioc` parser's subcommands."""
    users = sub.add_parser("user", help="staff accounts (sign-in to the screens)")
    cmds = users.add_subparsers(dest="user_cmd", required=True)
    add = cmds.add_parser("add", help="create a staff account")
    add.add_argument("name", help="username: 2-64 of a-z 0-9 . _ -")
    # Checked by check_new_user (not argparse choices) for one clear message in one place.
    add.add_argument("--role", required=True, help=", ".join(r.value for r in STAFF_ROLES))
    add.add_argument("--agency", help="agency code (role agency only, and required there)")
    add.add_argument("--extension", help="the person's phone extension (2-8 digits)")
    add.add_argument("--display-name", help="name shown on the screens (default: username)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(fn=cmd_add)
    cmds.add_parser("list", help="list accounts (never password hashes)").set_defaults(fn=cmd_list)
    for name, fn, what in (
        ("disable", cmd_disable, "disable an account, ending its sign-ins (a hub: within 5 s)"),
        ("enable", cmd_enable, "enable a disabled account"),
    ):
        p = cmds.add_parser(name, help=what)
        p.add_argument("name")
        p.set_defaults(fn=fn)
    pw = cmds.add_parser("passwd", help="set an account's password (ends its sign-ins)")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw.set_defaults(fn=cmd_passwd)
