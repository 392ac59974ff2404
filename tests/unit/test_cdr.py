"""Asterisk's own call records (cdr_custom's JSON lines) and the facts they prove."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from telephony.asterisk.cdr import (
    BadRecord,
    CallRecord,
    Cursor,
    Verdict,
    merge,
    parse_line,
    read_new,
)
from telephony.calls.lifecycle import Fact
from telephony.calls.reconcile import steps

# A line as Asterisk 22 wrote it for a 114 caller who hung up in the queue (measured).
ABANDONED = {
    "linkedid": "1796397370.2",
    "uniqueid": "1796397370.2",
    "channel": "PJSIP/trunk-00000002",
    "src": "0912000006",
    "dst": "114",
    "dcontext": "queue",
    "dstchannel": "",
    "lastapp": "Queue",
    "start": 1796397370.268208,
    "answer": 1796397370.280102,
    "end": 1796397372.288559,
    "disposition": "ANSWERED",
    "sequence": 2,
    "ioc_service": "114",
}


def line(**over: Any) -> str:
    return json.dumps(ABANDONED | over)


@pytest.mark.parametrize(
    ("over", "verdict"),
    [
        ({}, Verdict.ABANDONED),  # answered by the dialplan (queue music), no agent
        ({"dstchannel": "PJSIP/1002-00000001"}, Verdict.ANSWERED),
        ({"dstchannel": "PJSIP/1002-00000001", "disposition": "NO ANSWER"}, Verdict.ABANDONED),
        ({"disposition": "NO ANSWER", "answer": 0, "lastapp": "AGI"}, Verdict.ABANDONED),
        ({"dcontext": "emergency", "lastapp": "Stasis"}, Verdict.ABANDONED),  # app died
        ({"dcontext": "overflow", "lastapp": "Record", "ioc_service": "1022"}, Verdict.RECORDED),
    ],
)
def test_a_record_tells_how_the_call_ended(over: dict[str, Any], verdict: Verdict) -> None:
    record = parse_line(line(**over))
    assert record is not None and record.verdict is verdict


def test_a_record_carries_what_the_hub_needs() -> None:
    record = parse_line(line())
    assert record is not None
    assert (record.uid, record.ani, record.service) == ("1796397370.2", "0912000006", "114")
    assert record.start == datetime.fromtimestamp(1796397370.268208, UTC)
    assert record.end == datetime.fromtimestamp(1796397372.288559, UTC)


@pytest.mark.parametrize(
    "over",
    [
        {"ioc_service": ""},  # an agent's own call, a call-back leg, a barred caller
        {"ioc_service": None},
    ],
)
def test_records_of_other_calls_are_not_ours(over: dict[str, Any]) -> None:
    assert parse_line(line(**over)) is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"linkedid": "1.2", "uniq', "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (line(uniqueid=""), "uniqueid"),
        (line(start=0), "start"),
        (line(end="soon"), "end"),
    ],
)
def test_a_broken_line_is_refused_saying_why(text: str, field: str) -> None:
    with pytest.raises(BadRecord, match=field):
        parse_line(text)


@pytest.mark.parametrize(
    ("over", "facts"),
    [
        ({}, [Fact.ABANDONED]),
        ({"dstchannel": "PJSIP/1001-00000003"}, [Fact.ANSWERED, Fact.HANGUP]),
        ({"dcontext": "overflow", "ioc_service": "1022"}, [Fact.RECORDED, Fact.HANGUP]),
    ],
)
def test_the_facts_a_record_proves(over: dict[str, Any], facts: list[Fact]) -> None:
    record = parse_line(line(**over))
    assert record is not None
    found = steps(record)
    assert [s.fact for s in found] == facts
    assert all(s.at == record.end for s in found)


def test_a_message_left_without_the_app_is_where_the_dialplan_records_it() -> None:
    record = parse_line(line(dcontext="overflow", ioc_service="1022"))
    assert record is not None
    assert steps(record)[0].info == {"recording_path": "recording/ioc-msg/1796397370.2.wav"}


def test_reading_goes_on_from_the_cursor_and_leaves_a_half_written_line(tmp_path: Path) -> None:
    path = tmp_path / "ioc-calls.json"
    assert read_new(path, Cursor()) == ([], Cursor())  # Asterisk has written nothing yet
    first, other = line(uniqueid="1.1"), line(ioc_service="")
    path.write_text(f"{first}\n{other}\nnot json\n{line(uniqueid='1.2')[:30]}")
    lines, cursor = read_new(path, Cursor())
    assert [x.record.uid for x in lines] == ["1.1"]  # the bad line is skipped, not fatal
    assert lines[0].start_offset == 0 and lines[0].end_offset == len(first) + 1
    assert cursor.offset == len(f"{first}\n{other}\nnot json\n")
    with open(path, "a") as fh:
        fh.write(line(uniqueid="1.2")[30:] + "\n")
    lines, again = read_new(path, cursor)
    assert [x.record.uid for x in lines] == ["1.2"]
    assert read_new(path, again) == ([], again)


def test_a_rotated_or_truncated_file_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "ioc-calls.json"
    path.write_text(line(uniqueid="1.1") + "\n" + line(uniqueid="1.2") + "\n")
    _, cursor = read_new(path, Cursor())
    path.unlink()
    path.write_text(line(uniqueid="2.1") + "\n")  # logrotate: a new file
    lines, _ = read_new(path, cursor)
    assert [x.record.uid for x in lines] == ["2.1"]
    lines, _ = read_new(path, Cursor(file_id=cursor.file_id, offset=10**6))
    assert [x.record.uid for x in lines] == ["2.1"]


# app_queue rang agent 1002 twice without an answer; both CDRs come when the call ends
# (measured: nothing is written while the call waits).
RANG = {"dstchannel": "PJSIP/1002-00000001", "disposition": "NO ANSWER", "end": 1796397372.0}
PICKED = {"dstchannel": "PJSIP/1003-00000004", "start": 1796397373.0, "end": 1796397390.0}


def _rec(**over: Any) -> CallRecord:
    record = parse_line(line(**over))
    assert record is not None
    return record


@pytest.mark.parametrize(
    ("rows", "verdict", "agent"),
    [
        ([{}], Verdict.ABANDONED, ""),
        ([RANG, RANG | {"dstchannel": "PJSIP/1002-00000002"}], Verdict.ABANDONED, ""),
        ([RANG, PICKED], Verdict.ANSWERED, "PJSIP/1003-00000004"),
        ([PICKED, {"dstchannel": "", "end": 1796397400.0}], Verdict.ANSWERED, "PJSIP/1003"),
        ([RANG, {"dcontext": "overflow", "dstchannel": ""}], Verdict.RECORDED, ""),
    ],
)
def test_one_call_from_its_records(
    rows: list[dict[str, Any]], verdict: Verdict, agent: str
) -> None:
    records = [_rec(**row) for row in rows]
    call = merge(records)
    assert call.verdict is verdict
    assert call.agent_channel.startswith(agent)
    assert call.start == min(r.start for r in records)
    assert call.end == max(r.end for r in records)
