"""Catalogue tables: categories (a tree), administrative areas (a tree of any depth), agencies."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ioc_core.db import Base


class Category(Base):
    __tablename__ = "categories"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("categories.code"), index=True)
    # The top-level ancestor: duplicates and dashboards group by it.
    group_code: Mapped[str] = mapped_column(String(64), index=True)
    name_vi: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    description_vi: Mapped[str] = mapped_column(String(1000), default="")
    description_en: Mapped[str] = mapped_column(String(1000), default="")
    track: Mapped[str] = mapped_column(String(16))  # timed | immediate
    deadline_days: Mapped[int | None] = mapped_column(Integer)  # working days, timed track
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    keywords: Mapped[str] = mapped_column(String(1000), default="")  # comma-separated, vi/en
    sort: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Area(Base):
    __tablename__ = "areas"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("areas.code"), index=True)
    level: Mapped[int] = mapped_column(Integer)  # 1 = province; depth varies by dataset
    kind: Mapped[str] = mapped_column(String(64))  # "tỉnh", "phường", "xã", "huyện", ...
    name: Mapped[str] = mapped_column(String(200))
    codename: Mapped[str] = mapped_column(String(200), default="")


class Agency(Base):
    __tablename__ = "agencies"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name_vi: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # police, fire, health, department, commune...
    area_code: Mapped[str | None] = mapped_column(ForeignKey("areas.code"))
    phone: Mapped[str] = mapped_column(String(32), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
