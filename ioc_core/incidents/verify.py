"""`ioc audit verify`: walk every incident's hash chain and cross-check what it covers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core.incidents.audit import (
    ACCESS_LOG,
    GENESIS,
    ChainProblem,
    incident_digest,
    reporters_digest,
    sha256_text,
    verify_access_chain,
    verify_chain,
)
from ioc_core.incidents.models import (
    AccessLog,
    AuditHead,
    Entry,
    Incident,
    Reporter,
    TimelineEntry,
)


@dataclass
class AuditReport:
    incidents: int = 0
    rows: int = 0
    access_rows: int = 0
    problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def _batches(session: AsyncSession, size: int) -> AsyncIterator[list[Incident]]:
    last = ""
    while True:
        batch = list(
            (
                await session.scalars(
                    select(Incident).where(Incident.id > last).order_by(Incident.id).limit(size)
                )
            ).all()
        )
        if not batch:
            return
        yield batch
        last = batch[-1].id


async def verify_all(
    sessions: async_sessionmaker[AsyncSession], *, batch: int = 500
) -> AuditReport:
    report = AuditReport()
    async with sessions() as s:
        async for incidents in _batches(s, batch):
            ids = [i.id for i in incidents]
            rows = (
                await s.scalars(
                    select(TimelineEntry)
                    .where(TimelineEntry.incident_id.in_(ids))
                    .order_by(TimelineEntry.incident_id, TimelineEntry.seq)
                )
            ).all()
            entries = {
                e.id: e
                for e in (await s.scalars(select(Entry).where(Entry.incident_id.in_(ids)))).all()
            }
            reporters: dict[str, list[Reporter]] = {}
            for rep in (
                await s.scalars(select(Reporter).where(Reporter.incident_id.in_(ids)))
            ).all():
                reporters.setdefault(rep.incident_id, []).append(rep)
            by_incident: dict[str, list[TimelineEntry]] = {}
            for r in rows:
                by_incident.setdefault(r.incident_id, []).append(r)
            for inc in incidents:
                chain = by_incident.get(inc.id, [])
                report.incidents += 1
                report.rows += len(chain)
                report.problems += verify_chain(inc.id, [vars(r) for r in chain])
                report.problems += _cross_check(inc, chain, entries)
                report.problems += _check_values(inc, chain, reporters.get(inc.id, []))
        await _verify_access_log(s, report, batch)
    return report


def _check_values(
    inc: Incident, chain: list[TimelineEntry], reporters: list[Reporter]
) -> list[ChainProblem]:
    """The incident's and its reporters' stored values against the digests its timeline
    last recorded; and changes a command found and recorded (`unexplained_change`)."""
    out = [
        ChainProblem(
            inc.id,
            r.seq,
            f"{' and '.join(r.data.get('parts', []))} changed outside the timeline "
            "(found by a later command)",
        )
        for r in chain
        if r.kind == "unexplained_change"
    ]
    covered = [r for r in chain if r.incident_sha256 is not None]
    if not covered:
        return out  # written before the chain covered values: nothing to compare with
    first = covered[0].seq
    out += [
        ChainProblem(inc.id, r.seq, "row without the values' digests after rows with them")
        for r in chain
        if r.seq > first and r.incident_sha256 is None
    ]
    last = covered[-1]
    if incident_digest(inc) != last.incident_sha256:
        out.append(
            ChainProblem(
                inc.id,
                last.seq,
                "incident values (description, category, agency, deadline, state...) "
                "differ from what the timeline recorded",
            )
        )
    if reporters_digest(reporters) != last.reporters_sha256:
        out.append(
            ChainProblem(
                inc.id, last.seq, "reporter details differ from what the timeline recorded"
            )
        )
    return out


async def _verify_access_log(s: AsyncSession, report: AuditReport, size: int) -> None:
    """The access log's one chain, in seq order, and its head (rows cut off the end)."""
    prev, expected, last_seq = GENESIS, 1, 0
    columns = [c.key for c in AccessLog.__table__.c]
    # Rows the chain never covered (seq NULL) are reported one by one.
    unchained = (await s.scalars(select(AccessLog).where(AccessLog.seq.is_(None)))).all()
    report.problems += verify_access_chain(
        [{k: getattr(r, k) for k in columns} for r in unchained], first_prev=GENESIS, first_seq=1
    )
    while True:
        rows = (
            await s.scalars(
                select(AccessLog)
                .where(AccessLog.seq > last_seq)
                .order_by(AccessLog.seq)
                .limit(size)
            )
        ).all()
        if not rows:
            break
        report.access_rows += len(rows)
        report.problems += verify_access_chain(
            [{k: getattr(r, k) for k in columns} for r in rows], first_prev=prev, first_seq=expected
        )
        prev, last_seq = str(rows[-1].hash), int(rows[-1].seq or 0)
        expected = last_seq + 1
    head = await s.get(AuditHead, ACCESS_LOG)
    recorded = (int(head.seq), head.head) if head else (0, GENESIS)
    if recorded != (last_seq, prev):
        report.problems.append(
            ChainProblem(
                "",
                last_seq,
                "access log rows missing after the last one (head recorded differs)",
            )
        )


def _cross_check(
    inc: Incident, chain: list[TimelineEntry], entries: dict[str, Entry]
) -> list[ChainProblem]:
    out = []
    if not chain:
        return [ChainProblem(inc.id, 0, "incident has no timeline")]
    last = chain[-1]
    if inc.chain_seq != last.seq or inc.chain_head != last.hash:
        out.append(
            ChainProblem(
                inc.id,
                last.seq,
                "timeline rows missing after the last one (head recorded on the incident differs)",
            )
        )
    states = [r.to_state for r in chain if r.to_state]
    if states and states[-1] != inc.state:
        out.append(
            ChainProblem(
                inc.id, last.seq, f"state {inc.state!r} was not reached through the timeline"
            )
        )
    for r in chain:
        if r.kind in ("reply", "note"):
            e = entries.get(r.data.get("entry_id", ""))
            if e is None:
                out.append(ChainProblem(inc.id, r.seq, f"{r.kind} entry is missing"))
            elif sha256_text(e.body) != r.data.get("sha256"):
                out.append(ChainProblem(inc.id, r.seq, f"{r.kind} text was changed"))
    return out
