"""The timeline hash chain detects edits, deletions and reordering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ioc_core.incidents.audit import GENESIS, entry_hash, verify_chain


def chain(n: int) -> list[dict[str, Any]]:
    rows, prev = [], GENESIS
    t0 = datetime(2026, 11, 25, tzinfo=UTC)
    for seq in range(1, n + 1):
        row: dict[str, Any] = dict(
            incident_id="i",
            seq=seq,
            at=t0 + timedelta(seconds=seq),
            actor="calltaker:an",
            actor_role="calltaker",
            channel="web",
            kind="transition",
            from_state="new",
            to_state="verified",
            note="",
            data={"action": "verify"},
        )
        row["prev_hash"], row["hash"] = prev, entry_hash(prev, row)
        prev = row["hash"]
        rows.append(row)
    return rows


def test_intact_chain() -> None:
    assert verify_chain("i", chain(5)) == []


def test_naive_and_aware_times_hash_alike() -> None:
    # SQLite gives naive UTC back, PostgreSQL aware: the same row must hash the same.
    rows = chain(2)
    rows[1]["at"] = rows[1]["at"].replace(tzinfo=None)
    assert verify_chain("i", rows) == []


def test_edit_is_detected() -> None:
    rows = chain(4)
    rows[2]["note"] = "sửa lén"
    problems = verify_chain("i", rows)
    assert [p.seq for p in problems] == [3]


def test_deleted_row_is_detected() -> None:
    rows = chain(4)
    del rows[1]
    assert {p.problem for p in verify_chain("i", rows)} >= {
        "expected seq 2",
        "prev_hash does not link",
    }


def test_reordered_rows_are_detected() -> None:
    rows = chain(3)
    rows[1], rows[2] = rows[2], rows[1]
    assert verify_chain("i", rows)


def test_data_key_order_does_not_matter() -> None:
    rows = chain(1)
    rows[0]["data"] = {"b": 1, "a": 2}
    rows[0]["hash"] = entry_hash(GENESIS, rows[0])
    rows[0]["data"] = {"a": 2, "b": 1}  # JSONB reorders keys
    assert verify_chain("i", rows) == []
