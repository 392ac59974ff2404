"""Fixtures: a migrated database per test on SQLite *and* on the machine's PostgreSQL.

Each backend is migrated and seeded once per session into a template; every test gets a fresh
copy (a file copy for SQLite, CREATE DATABASE ... TEMPLATE for PostgreSQL), so tests are
isolated and fast.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ioc_core.bus import InProcessBus
from ioc_core.config import Settings
from ioc_core.runtime import Core, prepare_database, start_core
from ioc_core.web.app import make_app

PG_ADMIN = os.environ.get("IOC_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("IOC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def pg_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{dbname}"


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def database_accepts(name: str, *, up: bool) -> None:
    """A real PostgreSQL outage for one test database: it refuses new connections, and the
    open ones are terminated (as a stopped server would drop them); `up=True` ends it."""
    await _pg(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if up else "false"}')
    if not up:
        await _pg(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )


def make_settings(data_dir: Path, url: str, **over: Any) -> Settings:
    return Settings.from_env(
        {"IOC_DATA_DIR": str(data_dir), "IOC_DATABASE_URL": url, "IOC_AREA_PROVINCES": "75"}, **over
    )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tpl")
    path = d / "template.sqlite3"
    asyncio.run(prepare_database(make_settings(d, f"sqlite+aiosqlite:///{path}")))
    return path


@pytest.fixture(scope="session")
def pg_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    name = f"ioc_tpl_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    asyncio.run(prepare_database(make_settings(tmp_path_factory.mktemp("pgtpl"), pg_url(name))))
    yield name
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path / "ioc.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"ioc_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield pg_url(name)
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", database_url)


@pytest.fixture
async def core(settings: Settings) -> AsyncIterator[Core]:
    c = await start_core(settings, bus=InProcessBus(), migrate=False)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def client(core: Core) -> AsyncIterator[TestClient[Any, Any]]:
    server = TestServer(make_app(core), host="127.0.0.1")
    async with TestClient(server) as c:
        yield c
