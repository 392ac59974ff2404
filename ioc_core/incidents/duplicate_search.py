"""Duplicate search for a new report (RP-8): the open incidents of the same group nearby
and recent (duplicates.py decides among them), and the rows that merge a duplicate into its
primary."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from ioc_core import events as ev
from ioc_core.access.roles import Principal
from ioc_core.bus import Event
from ioc_core.db import UTCDateTime, compile_raw, dialect_name, driver_connection
from ioc_core.incidents import duplicates
from ioc_core.incidents.common import (
    OPEN_PHASES,
    Sink,
    append,
    incident_event,
    load_incident,
    set_state,
)
from ioc_core.incidents.lifecycle import State
from ioc_core.incidents.models import DUPLICATE_CANDIDATE_SQL, Incident

if TYPE_CHECKING:
    from ioc_core.runtime import Core


# Built once: this runs for every report, and building the statement cost more than running it.
_DUPLICATE_CANDIDATES = (
    select(
        Incident.id,
        Incident.category_group,
        Incident.lat,
        Incident.lon,
        Incident.created_at,
        Incident.phase,
    )
    .where(
        Incident.category_group == bindparam("group"),
        text(DUPLICATE_CANDIDATE_SQL),
        Incident.created_at >= bindparam("since", type_=UTCDateTime()),
        Incident.id != bindparam("self"),
        Incident.lat.between(bindparam("min_lat"), bindparam("max_lat")),
        Incident.lon.between(bindparam("min_lon"), bindparam("max_lon")),
    )
    .limit(200)
)

_DUPLICATE_CANDIDATES_PG = compile_raw(_DUPLICATE_CANDIDATES)


async def best_candidate(
    core: Core, conn: AsyncSession | AsyncConnection, inc: Incident
) -> duplicates.Candidate | None:
    assert inc.lat is not None and inc.lon is not None
    radius = core.settings.duplicate_radius_m
    window = timedelta(minutes=core.settings.duplicate_window_min)
    min_lat, max_lat, min_lon, max_lon = duplicates.bounding_box(inc.lat, inc.lon, radius)
    params = {
        "group": inc.category_group,
        "since": inc.created_at - window,
        "self": inc.id,
        "min_lat": min_lat,
        "max_lat": max_lat,
        "min_lon": min_lon,
        "max_lon": max_lon,
    }
    rows: Sequence[Any]
    if dialect_name(conn) == "postgresql":
        raw = await driver_connection(conn)
        rows = await raw.fetch(_DUPLICATE_CANDIDATES_PG.sql, *_DUPLICATE_CANDIDATES_PG.args(params))
    else:
        rows = [r._mapping for r in await conn.execute(_DUPLICATE_CANDIDATES, params)]
    return duplicates.pick_primary(
        duplicates.NewReport(group=inc.category_group, lat=inc.lat, lon=inc.lon, at=inc.created_at),
        [
            duplicates.Candidate(
                incident_id=r["id"],
                group=r["category_group"],
                lat=r["lat"],
                lon=r["lon"],
                created_at=r["created_at"],
                is_open=r["phase"] in OPEN_PHASES,
            )
            for r in rows
        ],
        radius_m=radius,
        window=window,
    )


async def find_primary(core: Core, s: AsyncSession, inc: Incident) -> Incident | None:
    best = await best_candidate(core, s, inc)
    if best is None:
        return None
    primary = await load_incident(s, best.incident_id, lock=True)
    # Re-check under the lock: it may have closed or been merged meanwhile.
    return primary if primary.phase in OPEN_PHASES and primary.primary_id is None else None


def merge_rows(
    s: AsyncSession,
    inc: Incident,
    primary: Incident,
    *,
    at: datetime,
    actor: Principal,
    channel: str,
    note: str,
    inc_sink: Sink | None = None,
) -> list[Event]:
    previous = inc.state
    inc.merged_from_state = previous
    inc.primary_id = primary.id
    set_state(inc, State.MERGED, at)
    primary.reporter_count += inc.reporter_count
    append(
        s if inc_sink is None else inc_sink,
        inc,
        at=at,
        actor=actor,
        channel=channel,
        kind="merged",
        from_state=previous,
        to_state=State.MERGED.value,
        note=note,
        data={"primary": primary.code},
    )
    append(
        s,
        primary,
        at=at,
        actor=actor,
        channel=channel,
        kind="duplicate_added",
        note=note,
        data={"duplicate": inc.code, "reporter_count": primary.reporter_count},
    )
    return [
        incident_event(
            ev.INCIDENT_MERGED,
            inc,
            primary_id=primary.id,
            primary_code=primary.code,
            reporter_count=primary.reporter_count,
        )
    ]
