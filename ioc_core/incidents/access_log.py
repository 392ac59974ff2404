"""RP-3: every time staff are shown or change a confidential reporter's details, or search
by a reporter's contact, it is written to the (hash-chained) access log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Select

from ioc_core.access.roles import Principal
from ioc_core.db import transaction
from ioc_core.incidents.models import AccessLog, Incident

if TYPE_CHECKING:
    from ioc_core.runtime import Core


async def log_confidential_access(
    core: Core, incident_ids: Sequence[str], *, principal: Principal, what: str
) -> None:
    """RP-3: every time staff are shown a confidential reporter, it is recorded."""
    if not incident_ids:
        return
    now = core.clock()
    async with transaction(core.sessions) as s:
        s.add_all(access_row(principal, i, what=what, at=now) for i in incident_ids)


def access_row(principal: Principal, incident_id: str, *, what: str, at: datetime) -> AccessLog:
    """One access_log row: `principal` saw or changed a reporter's details of the incident."""
    return AccessLog(
        principal=principal.actor,
        role=principal.role.value,
        incident_id=incident_id,
        what=what,
        at=at,
    )


async def log_contact_search(
    core: Core, stmt: Select[Incident], contact: Sequence[str], principal: Principal
) -> None:
    """RP-3: a search by a reporter's contact is an access to every incident it matches (all
    of them, not just one page: `total` reveals them too); a search that matches nothing is
    logged with an empty incident id. The searched value itself is not copied into the log."""
    async with core.sessions() as s:
        ids = list((await s.scalars(stmt.with_only_columns(Incident.id))).all())
    await log_confidential_access(
        core,
        ids or [""],
        principal=principal,
        what="reporter-search:" + ",".join(contact),
    )
