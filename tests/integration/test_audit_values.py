"""`ioc audit verify` finds values changed in the database directly — an incident's
description, agency, category or deadline, a reporter's phone, an access-log row — and
verifies untouched data (and chains written before it covered values) clean. On SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update

from ioc_core.access.roles import SYSTEM, Principal, Role
from ioc_core.db import transaction
from ioc_core.incidents import commands, queries, reporting
from ioc_core.incidents.audit import GENESIS, HASHED_FIELDS, entry_hash
from ioc_core.incidents.models import AccessLog, Incident, TimelineEntry
from ioc_core.incidents.schemas import EntryIn, ReportIn, TransitionIn, UpdateIn
from ioc_core.incidents.verify import verify_all
from ioc_core.runtime import Core
from tests.helpers import report

STAFF = Principal(role=Role.SUPERVISOR, name="Giám sát")


async def new_incident(core: Core, n: int, *, confidential: bool = False) -> str:
    body = report(location={"lat": 10.0 + n / 10, "lon": 106.0})
    body["reporter"]["confidential"] = confidential
    d = await reporting.report_incident(core, ReportIn.model_validate(body), principal=SYSTEM)
    ref = d.incident.id
    await commands.update_incident(core, ref, UpdateIn(description=f"Mô tả {n}"), principal=STAFF)
    for action in (
        TransitionIn(action="verify"),
        TransitionIn(action="assign", agency="SNNMT"),
    ):
        await commands.transition(core, ref, action, principal=STAFF)
    return ref


async def sql(core: Core, statement: str, **params: Any) -> None:
    async with transaction(core.sessions) as s:
        await s.execute(text(statement), params)


async def problems(core: Core) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in (await verify_all(core.sessions)).problems:
        out.setdefault(p.incident_id, []).append(p.problem)
    return out


async def test_defect_16_values_changed_in_the_database_are_found(core: Core) -> None:
    refs = [await new_incident(core, n, confidential=n == 5) for n in range(7)]
    # Staff shown the confidential reporter: two access-log rows.
    for _ in range(2):
        d = await queries.get_detail(core, refs[5], principal=STAFF)
        await queries.render(core, d, principal=STAFF)
    report_ = await verify_all(core.sessions)
    assert report_.ok, report_.problems
    assert report_.access_rows == 2

    later = (await queries.get_detail(core, refs[3], principal=STAFF)).incident.due_at
    assert later is not None
    await sql(core, "UPDATE incidents SET description = 'Đã sửa' WHERE id = :i", i=refs[0])
    await sql(core, "UPDATE incidents SET agency_code = 'SXD' WHERE id = :i", i=refs[1])
    await sql(
        core,
        "UPDATE incidents SET category_code = 'giao_thong.un_tac' WHERE id = :i",
        i=refs[2],
    )
    async with transaction(core.sessions) as s:  # a deadline pushed back a week
        await s.execute(
            update(Incident).where(Incident.id == refs[3]).values(due_at=later + timedelta(7))
        )
    await sql(core, "UPDATE reporters SET phone = '0999999999' WHERE incident_id = :i", i=refs[4])
    async with core.sessions() as s:
        first = (await s.scalars(select(AccessLog).order_by(AccessLog.seq))).first()
        assert first is not None
    await sql(core, "UPDATE access_log SET principal = 'admin:ai-do' WHERE id = :i", i=first.id)

    found = await problems(core)
    for ref, words in (
        (refs[0], "incident values"),
        (refs[1], "incident values"),
        (refs[2], "incident values"),
        (refs[3], "incident values"),
        (refs[4], "reporter details"),
        (refs[5], "access log row was changed"),
    ):
        assert any(words in p for p in found.pop(ref, [])), (ref, words, found)
    assert found == {}  # refs[6], untouched, verifies clean

    # A later command does not make a change look legitimate: it records what it found.
    await commands.add_entry(core, refs[0], EntryIn(body="Đã nhận"), kind="reply", principal=STAFF)
    await commands.add_entry(core, refs[4], EntryIn(body="Đã nhận"), kind="note", principal=STAFF)
    found = await problems(core)
    assert any("incident changed outside the timeline" in p for p in found[refs[0]]), found
    assert any("reporters changed outside the timeline" in p for p in found[refs[4]]), found
    assert (await queries.get_detail(core, refs[6], principal=STAFF)).incident.state == "assigned"
    assert refs[6] not in found


async def test_defect_16_access_log_rows_cut_off_the_end_are_found(core: Core) -> None:
    ref = await new_incident(core, 0, confidential=True)
    for _ in range(3):
        d = await queries.get_detail(core, ref, principal=STAFF)
        await queries.render(core, d, principal=STAFF)
    assert (await verify_all(core.sessions)).ok
    await sql(core, "DELETE FROM access_log WHERE seq = 3")
    found = (await verify_all(core.sessions)).problems
    assert [p.problem for p in found] == [
        "access log rows missing after the last one (head recorded differs)"
    ]


async def test_defect_16_chains_written_before_values_were_covered_still_verify(
    core: Core,
) -> None:
    """Rows of the first chain version (no value digests) verify as before."""
    ref = await new_incident(core, 0)
    async with transaction(core.sessions) as s:
        rows = (
            await s.scalars(
                select(TimelineEntry)
                .where(TimelineEntry.incident_id == ref)
                .order_by(TimelineEntry.seq)
            )
        ).all()
        prev = GENESIS
        for row in rows:  # rewritten as the old code wrote them
            row.incident_sha256 = row.reporters_sha256 = None
            row.prev_hash = prev
            row.hash = prev = entry_hash(prev, {k: getattr(row, k) for k in HASHED_FIELDS})
        inc = await s.get(Incident, ref)
        assert inc is not None
        inc.chain_head = prev
    assert (await verify_all(core.sessions)).ok
    # A legacy incident's next command works and starts covering its values.
    await commands.update_incident(core, ref, UpdateIn(description="Mới"), principal=STAFF)
    assert (await verify_all(core.sessions)).ok
    await sql(core, "UPDATE incidents SET description = 'Đã sửa' WHERE id = :i", i=ref)
    assert [p.incident_id for p in (await verify_all(core.sessions)).problems] == [ref]
