"""Hash chain of the timeline (RP-10): tampering with, removing or reordering rows is detectable.

Each incident has its own chain (seq 1..n), so concurrent reports never contend on one
global head; `verify_chain` is pure and `ioc audit verify` runs it over every incident.
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


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLite hands back naive UTC, PostgreSQL aware values: hash one form of both.
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    return value


def entry_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    body = {k: _canonical(fields.get(k)) for k in HASHED_FIELDS}
    # Canonical form: compact JSON, keys sorted at every level, UTF-8 text as is.
    raw = orjson.dumps(body, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(prev_hash.encode() + raw).hexdigest()


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
