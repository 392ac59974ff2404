"""Every table's model imported once, so Alembic and tests see the whole schema."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from sqlalchemy import MetaData

from ioc_core import outbox as _outbox  # noqa: F401
from ioc_core.access import models as _access  # noqa: F401
from ioc_core.catalogue import models as _catalogue  # noqa: F401
from ioc_core.db import Base
from ioc_core.incidents import models as _incidents  # noqa: F401

metadata = Base.metadata


def feature_schemas() -> list[tuple[MetaData, Path]]:
    """Tables that feature packages own (telephony's calls, ...): each registers its metadata
    and its Alembic versions folder under the `ioc.schema` entry point group (ADR 0011), so
    the core migrates them without importing the packages by name."""
    found = []
    for ep in sorted(entry_points(group="ioc.schema"), key=lambda e: e.name):
        module = ep.load()
        found.append((module.metadata, Path(module.VERSIONS)))
    return found


def all_metadata() -> list[MetaData]:
    return [metadata, *(m for m, _ in feature_schemas())]
