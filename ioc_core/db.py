"""Database engine and session factory: SQLite (aiosqlite) embedded, PostgreSQL (asyncpg) scaled.

Infrastructure only: no domain words here. Models live with the feature that owns them and
share `Base.metadata`, which Alembic reads.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

logger = logging.getLogger(__name__)

# Stable constraint names so Alembic migrations are the same on both dialects.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both dialects (SQLite has no time zones; it stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")

# SQLite only autoincrements INTEGER PRIMARY KEY; BigInteger there would never get a value.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def make_engine(url: str, *, echo: bool = False, pool_size: int = 20) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    # A fixed pool: overflow connections opened and closed under bursts cost PostgreSQL more
    # CPU than the reports themselves (measured); no pre-ping round trip on every checkout:
    # connections are recycled instead, and a dropped one fails one request, not all.
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=0,
        pool_recycle=1800,
        pool_timeout=30,
        json_serializer=_json_text,
    )


def _json_text(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets readers run beside the single writer; foreign keys are off by default in
        # SQLite; busy_timeout turns "database is locked" into a short wait.
        # Hand transaction control to the "begin" hook below (SQLAlchemy's documented recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # pysqlite's deferred BEGIN lets two writers both read, then one fails on upgrading
        # to a write lock. Write transactions (see `transaction`) take the lock up front with
        # BEGIN IMMEDIATE; reads stay deferred so they never wait for a writer (WAL).
        write = conn.get_execution_options().get(WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


WRITE_OPTION = "ioc_write"


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work that writes: commit on success, roll back on any exception."""
    async with sessions() as session, session.begin():
        await session.connection(execution_options={WRITE_OPTION: True})
        yield session


async def ping(engine: AsyncEngine) -> dict[str, Any]:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "ok", "dialect": engine.dialect.name}
    except Exception as exc:  # health must report, never raise
        return {"status": "down", "dialect": engine.dialect.name, "error": str(exc)}


@dataclass(frozen=True)
class RawStatement:
    """A statement compiled once for asyncpg: `$n` placeholders and the names behind them.

    For the few hot statements where SQLAlchemy's per-execution work (parameter processing,
    result set-up) costs more than PostgreSQL's. Values go to asyncpg as they are, except JSON
    columns, which are serialised here (SQLAlchemy's asyncpg codec for json/jsonb takes text).
    """

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    json_names: frozenset[str]

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        out = []
        for name in self.names:
            value = params[name] if name in params else self.defaults[name]
            out.append(_json_text(value) if name in self.json_names else value)
        return out


def compile_raw(stmt: Any, json_names: frozenset[str] = frozenset()) -> RawStatement:
    compiled = stmt.compile(dialect=PGDialect(paramstyle="numeric_dollar"))  # type: ignore[no-untyped-call]
    return RawStatement(
        sql=str(compiled),
        names=tuple(compiled.positiontup or ()),
        defaults=dict(compiled.params),
        json_names=json_names,
    )


def dialect_name(executor: AsyncSession | AsyncConnection) -> str:
    bind = executor.get_bind() if isinstance(executor, AsyncSession) else executor
    return bind.dialect.name


async def driver_connection(executor: AsyncSession | AsyncConnection) -> Any:
    """The asyncpg connection under a session or connection, inside its transaction if any."""
    conn = await executor.connection() if isinstance(executor, AsyncSession) else executor
    raw = await conn.get_raw_connection()
    return raw.driver_connection
