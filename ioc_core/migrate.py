"""Alembic, driven from code so `ioc db upgrade` and `ioc run` need no alembic.ini."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from ioc_core.models import feature_schemas

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # The core's history plus each feature package's own branch (ADR 0011).
    locations = [MIGRATIONS / "versions", *(path for _, path in feature_schemas())]
    cfg.set_main_option("version_locations", " ".join(str(p) for p in locations))
    cfg.set_main_option("path_separator", "space")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def upgrade(url: str, revision: str = "heads") -> None:
    # Alembic's env.py runs its own event loop (asyncio.run); keep it off ours.
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)


def revision(url: str, message: str, *, head: str = "0001@head") -> None:
    """Autogenerate on a branch: the core's by default, `telephony@head` for telephony's."""
    command.revision(alembic_config(url), message=message, autogenerate=True, head=head)
