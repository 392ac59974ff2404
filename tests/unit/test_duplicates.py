"""Duplicate detection: same group, within radius and window, open; nearest then oldest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ioc_core.incidents.duplicates import (
    Candidate,
    NewReport,
    bounding_box,
    distance_m,
    pick_primary,
)

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
HERE = (11.5349, 106.8832)
WINDOW = timedelta(hours=2)


def cand(
    ident: str,
    *,
    group: str = "moi_truong",
    dlat: float = 0.0,
    minutes: int = -10,
    is_open: bool = True,
) -> Candidate:
    return Candidate(
        incident_id=ident,
        group=group,
        lat=HERE[0] + dlat,
        lon=HERE[1],
        created_at=T0 + timedelta(minutes=minutes),
        is_open=is_open,
    )


REPORT = NewReport(group="moi_truong", lat=HERE[0], lon=HERE[1], at=T0)


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        ([], None),
        ([cand("a")], "a"),
        ([cand("a", group="giao_thong")], None),  # another kind of problem
        ([cand("a", dlat=0.002)], None),  # ~222 m away, radius 150 m
        ([cand("a", dlat=0.001)], "a"),  # ~111 m
        ([cand("a", minutes=-121)], None),  # outside the window
        ([cand("a", is_open=False)], None),  # closed incidents are not primaries
        ([cand("far", dlat=0.001), cand("near", dlat=0.0002)], "near"),  # nearest wins
        ([cand("new", minutes=-5), cand("old", minutes=-60)], "old"),  # same spot: oldest
    ],
)
def test_pick_primary(candidates: list[Candidate], expected: str | None) -> None:
    got = pick_primary(REPORT, candidates, radius_m=150, window=WINDOW)
    assert (got.incident_id if got else None) == expected


@pytest.mark.parametrize(
    ("a", "b", "metres"),
    [
        ((10.0, 106.0), (10.0, 106.0), 0),
        ((10.0, 106.0), (10.001, 106.0), 111.2),
        ((21.0278, 105.8342), (10.8231, 106.6297), 1_137_000),  # Hà Nội - TP HCM
    ],
)
def test_distance(a: tuple[float, float], b: tuple[float, float], metres: float) -> None:
    assert distance_m(*a, *b) == pytest.approx(metres, rel=0.01, abs=0.5)


@pytest.mark.parametrize("lat", [0.0, 11.5, 23.4, -45.0])
def test_bounding_box_contains_the_circle(lat: float) -> None:
    min_lat, max_lat, min_lon, max_lon = bounding_box(lat, 106.0, 150)
    assert distance_m(lat, 106.0, max_lat, 106.0) == pytest.approx(150, rel=1e-3)
    assert distance_m(lat, 106.0, lat, max_lon) >= 149.9
    assert min_lat < lat < max_lat and min_lon < 106.0 < max_lon
