"""Idempotency keys of the report command: a client that may send the same report twice (a
chat update redelivered after the hub died between filing it and marking the update seen, a
call's draft made again after a restart, an HTTP retry after a lost answer) names it with a
key, and a repeat with that key returns the incident the first one made.

A key belongs to the principal that sent it (`scope`), so one client's keys never reach
another's reports, and to one report: the same key with different fields is refused (as the
HTTP `Idempotency-Key` convention says), since that is a client's mistake, not a retry.
"""

from __future__ import annotations

import hashlib
import json
import re

from sqlalchemy.ext.asyncio import AsyncSession

from ioc_core.access.roles import Principal
from ioc_core.errors import ValidationFailed
from ioc_core.incidents.models import ReportKey
from ioc_core.incidents.schemas import ReportIn

MAX_KEY = 200
# Printable ASCII without spaces: a key travels in an HTTP header and in log lines.
KEY_PATTERN = rf"^[\x21-\x7e]{{1,{MAX_KEY}}}$"
_KEY = re.compile(KEY_PATTERN)
FIELD = "Idempotency-Key"


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValidationFailed(
            f"{FIELD} must be 1 to {MAX_KEY} printable ASCII characters without spaces",
            error_id="invalid-idempotency-key",
            details={"field": FIELD},
        )
    return key


def scope_of(principal: Principal) -> str:
    """Whose key: the principal's identity as a fixed-length digest (role, name and citizen
    subject, not the token, so a rotated token still finds its earlier keys)."""
    who = json.dumps([principal.role.value, principal.name, principal.subject])
    return hashlib.sha256(who.encode()).hexdigest()


def fingerprint(data: ReportIn) -> str:
    """The report's fields, canonically. Photos are not part of it: a chat resends a report
    whose photos were already handed over (and dropped) before the hub died."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def find(s: AsyncSession, scope: str, key: str) -> ReportKey | None:
    return await s.get(ReportKey, (scope, key))


def check_same(found: ReportKey, fp: str) -> None:
    if found.fingerprint != fp:
        raise ValidationFailed(
            f"this {FIELD} was used for a different report",
            error_id="idempotency-key-reused",
            details={"field": FIELD},
        )


__all__ = [
    "FIELD",
    "KEY_PATTERN",
    "MAX_KEY",
    "check_key",
    "check_same",
    "find",
    "fingerprint",
    "scope_of",
]
