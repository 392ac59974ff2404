"""Duplicate detection (RP-8): same category group, within a radius and a time window.

Pure: the service fetches candidates with a bounding box and lets `pick_primary` decide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

EARTH_RADIUS_M = 6_371_000.0


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine); metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def bounding_box(lat: float, lon: float, radius_m: float) -> tuple[float, float, float, float]:
    """(min_lat, max_lat, min_lon, max_lon) that contains the circle; for an indexed pre-filter."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    coslat = max(math.cos(math.radians(lat)), 1e-6)
    dlon = math.degrees(radius_m / (EARTH_RADIUS_M * coslat))
    return lat - dlat, lat + dlat, lon - dlon, lon + dlon


@dataclass(frozen=True)
class Candidate:
    incident_id: str
    group: str
    lat: float
    lon: float
    created_at: datetime
    is_open: bool  # phase open or active


@dataclass(frozen=True)
class NewReport:
    group: str
    lat: float
    lon: float
    at: datetime


def pick_primary(
    report: NewReport, candidates: Iterable[Candidate], *, radius_m: float, window: timedelta
) -> Candidate | None:
    """The open incident this report duplicates: nearest first, then the oldest."""
    best: tuple[float, datetime, Candidate] | None = None
    for c in candidates:
        if not c.is_open or c.group != report.group:
            continue
        if not (report.at - window <= c.created_at <= report.at + timedelta(seconds=1)):
            continue
        d = distance_m(report.lat, report.lon, c.lat, c.lon)
        if d > radius_m:
            continue
        key = (d, c.created_at, c)
        if best is None or key[:2] < best[:2]:
            best = key
    return best[2] if best else None
