"""`ioc audit verify`: walk every incident's hash chain and cross-check what it covers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ioc_core.incidents.audit import ChainProblem, sha256_text, verify_chain
from ioc_core.incidents.models import Entry, Incident, TimelineEntry


@dataclass
class AuditReport:
    incidents: int = 0
    rows: int = 0
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
            by_incident: dict[str, list[TimelineEntry]] = {}
            for r in rows:
                by_incident.setdefault(r.incident_id, []).append(r)
            for inc in incidents:
                chain = by_incident.get(inc.id, [])
                report.incidents += 1
                report.rows += len(chain)
                report.problems += verify_chain(inc.id, [vars(r) for r in chain])
                report.problems += _cross_check(inc, chain, entries)
    return report


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
