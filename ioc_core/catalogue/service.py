"""Catalogue service: loading the default catalogue, cached look-ups, listings."""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core.catalogue import loaders
from ioc_core.catalogue.models import Agency, Area, Category
from ioc_core.config import Settings
from ioc_core.errors import NotFound, ValidationFailed
from ioc_core.i18n import both

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CategoryInfo(loaders.CategoryRow):
    """A category as the rest of the core sees it: the loaded row plus whether it is active."""

    active: bool = True


def category_json(c: CategoryInfo) -> dict[str, Any]:
    """A category as the API shows it (REST and `CoreApi.categories`)."""
    return {
        "code": c.code,
        "parent": c.parent_code,
        "group": c.group_code,
        "name": {"vi": c.name_vi, "en": c.name_en},
        "track": c.track,
        "track_label": both(f"track.{c.track}"),
        "deadline_days": c.deadline_days,
        "priority": c.priority,
        "keywords": [w.strip() for w in c.keywords.split(",") if w.strip()],
    }


def category_info(c: Category) -> CategoryInfo:
    return CategoryInfo(**{f.name: getattr(c, f.name) for f in fields(CategoryInfo)})


async def load_catalogue(
    session: AsyncSession, settings: Settings, *, only_if_empty: bool = False
) -> dict[str, int]:
    """Upsert categories, areas and agencies from the data files and the area dataset.

    Idempotent: rows are matched on code; existing rows are updated, none deleted (incidents
    reference them). Returns counts of rows written per table.
    """
    if only_if_empty and await session.scalar(select(func.count()).select_from(Category)):
        return {}
    area_rows = (
        loaders.areas_from_file(settings.area_file)
        if settings.area_file
        else loaders.areas_from_vietnam_provinces(settings.area_provinces)
    )
    counts = {
        "categories": await _upsert(
            session, Category, [vars(r) | {"active": True} for r in loaders.default_categories()]
        ),
        # Parents first: the tree has a foreign key to itself.
        "areas": await _upsert(
            session, Area, [vars(r) for r in sorted(area_rows, key=lambda r: r.level)]
        ),
        "agencies": await _upsert(session, Agency, loaders.default_agencies()),
    }
    logger.info("catalogue loaded: %s", counts)
    return counts


async def _upsert(session: AsyncSession, model: Any, rows: Sequence[dict[str, Any]]) -> int:
    existing = {o.code: o for o in (await session.scalars(select(model))).all()}
    for row in rows:
        obj = existing.get(row["code"])
        if obj is None:
            session.add(model(**row))
        else:
            for k, v in row.items():
                setattr(obj, k, v)
    await session.flush()
    return len(rows)


class Catalogue:
    """In-memory look-ups for the hot path (every report checks its category and area).

    Refreshed after `ttl_s` so a catalogue change reaches every process without a restart.
    """

    def __init__(self, *, sessions: async_sessionmaker[AsyncSession], ttl_s: float = 60.0) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._loaded_at = 0.0
        self._categories: dict[str, CategoryInfo] = {}
        self._areas: set[str] = set()
        self._children: dict[str, list[str]] = {}
        self._agencies: dict[str, tuple[str, str]] = {}  # code -> (name_vi, name_en)

    async def refresh(self) -> None:
        async with self._sessions() as s:
            cats = (await s.scalars(select(Category))).all()
            areas = (await s.execute(select(Area.code, Area.parent_code))).all()
            agencies = (await s.execute(select(Agency.code, Agency.name_vi, Agency.name_en))).all()
        self._categories = {c.code: category_info(c) for c in cats}
        self._areas = {code for code, _ in areas}
        self._children = {}
        for code, parent in areas:
            if parent:
                self._children.setdefault(parent, []).append(code)
        self._agencies = {code: (vi, en) for code, vi, en in agencies}
        self._loaded_at = time.monotonic()

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at > self._ttl:
            await self.refresh()

    async def category(self, code: str) -> CategoryInfo:
        await self._fresh()
        info = self._categories.get(code)
        if info is None or not info.active:
            raise ValidationFailed(
                f"unknown category {code!r}",
                details={"field": "category", "value": code},
                error_id="unknown-category",
            )
        return info

    async def categories(self) -> list[CategoryInfo]:
        await self._fresh()
        return [c for c in self._categories.values() if c.active]

    async def check_area(self, code: str) -> None:
        await self._fresh()
        if code not in self._areas:
            raise ValidationFailed(
                f"unknown area_code {code!r}",
                details={"field": "location.area_code", "value": code},
                error_id="unknown-area",
            )

    async def area_subtree(self, code: str) -> list[str]:
        """The area and every area below it, whatever the depth of the tree."""
        await self.check_area(code)
        out, stack = [], [code]
        while stack:
            c = stack.pop()
            out.append(c)
            stack.extend(self._children.get(c, ()))
        return out

    async def agency_name(self, code: str, lang: str = "vi") -> str:
        await self._fresh()
        vi, en = self._agencies.get(code, (code, code))
        return vi if lang == "vi" else en

    async def check_agency(self, code: str) -> None:
        await self._fresh()
        if code not in self._agencies:
            raise ValidationFailed(
                f"unknown agency {code!r}",
                details={"field": "agency", "value": code},
                error_id="unknown-agency",
            )


async def list_areas(
    session: AsyncSession, *, parent: str | None, q: str | None, limit: int, offset: int
) -> tuple[list[Area], int]:
    stmt = select(Area)
    if parent == "":
        stmt = stmt.where(Area.parent_code.is_(None))
    elif parent is not None:
        stmt = stmt.where(Area.parent_code == parent)
    stmt = stmt.order_by(Area.level, Area.code)
    if q:
        # Names are searched as people type them: "dong xoai" finds "Phường Đồng Xoài". SQL
        # cannot fold Vietnamese marks portably, and a province has a few hundred areas (all
        # of Viet Nam about 3,400), so the match is made here.
        wanted = folded(q)
        found = [a for a in (await session.scalars(stmt)).all() if wanted in folded(a.name)]
        return found[offset : offset + limit], len(found)
    total = await session.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = (await session.scalars(stmt.limit(limit).offset(offset))).all()
    return list(rows), int(total or 0)


def folded(text: str) -> str:
    """Lower case, no diacritics, đ -> d, single spaces."""
    bare = unicodedata.normalize("NFD", text.lower().replace("đ", "d"))
    return " ".join("".join(c for c in bare if unicodedata.category(c) != "Mn").split())


async def get_area(session: AsyncSession, code: str) -> Area:
    area = await session.get(Area, code)
    if area is None:
        raise NotFound(f"no area {code!r}", error_id="area-not-found")
    return area


async def list_agencies(session: AsyncSession) -> list[Agency]:
    return list((await session.scalars(select(Agency).order_by(Agency.code))).all())


async def agency_exists(session: AsyncSession, code: str) -> bool:
    return await session.get(Agency, code) is not None
