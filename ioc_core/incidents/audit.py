"""Hash chain of the timeline (RP-10): tampering with, removing or reordering rows is detectable.

Each incident has its own chain (seq 1..n), so concurrent reports never contend on one
global head; `verify_chain` is pure and `ioc audit verify` runs it over every incident.
Each row also carries digests of the incident's and its reporters' values after its change
(`incident_digest`, `reporters_digest`), so values changed in the database directly are found
(ADR 0021). The access log has one chain of its own (`access_hash`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = "0" * 64

# Fields covered by the hash, in this order. Adding a field needs a new chain version.
HASHED_FIELDS = (
    "incident_id",
    "seq",
    "at",
    "actor",
    "actor_role",
    "channel",
    "kind",
    "from_state",
    "to_state",
    "note",
    "data",
)


# Chain version 2: rows that carry these are hashed with them; rows written before they
# existed (NULL) hash as version 1, so old chains still verify.
SNAPSHOT_FIELDS = ("incident_sha256", "reporters_sha256")

# What an incident's digest covers: every value a command may set. Left out: what every
# timeline row changes anyway (updated_at, version, the chain head).
INCIDENT_FIELDS = (
    "id",
    "code",
    "category_code",
    "category_group",
    "title",
    "description",
    "priority",
    "severity",
    "channel",
    "language",
    "state",
    "phase",
    "track",
    "due_at",
    "escalated",
    "lat",
    "lon",
    "address",
    "area_code",
    "agency_code",
    "primary_id",
    "merged_from_state",
    "reporter_count",
    "external_ref",
    "created_at",
    "resolved_at",
    "closed_at",
)
REPORTER_FIELDS = (
    "id",
    "incident_id",
    "name",
    "phone",
    "email",
    "channel",
    "channel_user_id",
    "confidential",
    "subject",
    "created_at",
)
# Bookkeeping of an access-log row; every other column is hashed (new ones included).
ACCESS_CHAIN_COLUMNS = frozenset({"id", "seq", "prev_hash", "hash"})
ACCESS_LOG = "access_log"


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite hands back naive UTC, PostgreSQL aware values: hash one form of both.
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    return value


def _sha256(prefix: str, body: Any) -> str:
    # Canonical form: compact JSON, keys sorted at every level, UTF-8 text as is.
    raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(prefix.encode() + raw).hexdigest()


def entry_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    body = {k: _canonical(fields.get(k)) for k in HASHED_FIELDS}
    for k in SNAPSHOT_FIELDS:
        if fields.get(k) is not None:
            body[k] = fields[k]
    return _sha256(prev_hash, body)


def _values(obj: Any, names: Iterable[str]) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return {k: _canonical(obj.get(k)) for k in names}
    return {k: _canonical(getattr(obj, k, None)) for k in names}


def incident_digest(incident: Any) -> str:
    """Digest of an incident's values (an ORM row or a mapping)."""
    return _sha256("", _values(incident, INCIDENT_FIELDS))


def reporters_digest(reporters: Iterable[Any]) -> str:
    """Digest of an incident's reporters, in id order."""
    rows = sorted((_values(r, REPORTER_FIELDS) for r in reporters), key=lambda v: str(v["id"]))
    return _sha256("", rows)


def access_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """Hash of an access-log row: every column but the chain's own, NULLs left out so a
    column added later (NULL on old rows) keeps old rows verifiable."""
    body = {
        k: _canonical(v) for k, v in row.items() if k not in ACCESS_CHAIN_COLUMNS and v is not None
    }
    return _sha256(prev_hash, body)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    incident_id: str
    seq: int
    problem: str


def verify_chain(incident_id: str, rows: Iterable[Mapping[str, Any]]) -> list[ChainProblem]:
    """Rows must be ordered by seq. Returns every problem found (empty list = intact)."""
    problems: list[ChainProblem] = []
    prev = GENESIS
    expected_seq = 1
    for row in rows:
        seq = int(row["seq"])
        if seq != expected_seq:
            problems.append(ChainProblem(incident_id, seq, f"expected seq {expected_seq}"))
            expected_seq = seq
        if row["prev_hash"] != prev:
            problems.append(ChainProblem(incident_id, seq, "prev_hash does not link"))
        if entry_hash(row["prev_hash"], row) != row["hash"]:
            problems.append(ChainProblem(incident_id, seq, "hash does not match content"))
        prev = row["hash"]
        expected_seq += 1
    return problems


def verify_access_chain(
    rows: Iterable[Mapping[str, Any]], *, first_prev: str, first_seq: int
) -> list[ChainProblem]:
    """Rows of the access log ordered by seq, continuing a chain whose previous link is
    `first_prev` (GENESIS at the start). Problems name the row's incident and seq."""
    problems: list[ChainProblem] = []
    prev, expected = first_prev, first_seq
    for row in rows:
        incident_id = str(row.get("incident_id") or "")
        if row.get("seq") is None or row.get("hash") is None:
            problems.append(
                ChainProblem(incident_id, 0, f"access log row {row.get('id')} is not chained")
            )
            continue
        seq = int(row["seq"])
        if seq != expected:
            problems.append(ChainProblem(incident_id, seq, f"access log: expected seq {expected}"))
            expected = seq
        if row["prev_hash"] != prev:
            problems.append(ChainProblem(incident_id, seq, "access log: prev_hash does not link"))
        if access_hash(str(row["prev_hash"]), row) != row["hash"]:
            problems.append(
                ChainProblem(incident_id, seq, "access log row was changed (hash does not match)")
            )
        prev = str(row["hash"])
        expected += 1
    return problems
