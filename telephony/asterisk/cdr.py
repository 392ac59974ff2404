"""Asterisk's own call records (ADR 0018): the JSON lines cdr_custom writes to
`/var/log/asterisk/cdr-custom/ioc-calls.json` (dialplans/etc/cdr_custom.conf), read from a
cursor and turned into what the hub needs to know about a call it may never have seen.

Pure parsing plus one small reader; the service that acts on the records is
`telephony.calls.reconcile`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from telephony import dialplan_vars as dv
from telephony.settings import variables

logger = logging.getLogger(__name__)

FILE_NAME: Final = "ioc-calls.json"  # the [section] of cdr_custom.conf
# The dialplan context a caller is in when the queue gave up and a message is recorded.
OVERFLOW_CONTEXT: Final = "overflow"
# Whatever comes after the last newline is a record Asterisk is still writing.
_NEWLINE: Final = b"\n"


class Verdict(StrEnum):
    """How a call ended, as Asterisk's record tells it."""

    ANSWERED = "answered"  # bridged with an agent (party B) and answered
    RECORDED = "recorded"  # left a message after the queue gave up (overflow)
    ABANDONED = "abandoned"  # hung up before any agent answered


@dataclass(frozen=True, kw_only=True)
class CallRecord:
    """One CDR of a citizen's call to a hotline number."""

    uid: str  # the caller channel's uniqueid: the switchboard's call id (ARI channel id)
    linkedid: str
    ani: str
    service: str  # 113 | 114 | 115 | 1022, from the CDR variable the dialplan sets
    context: str  # the dialplan context the caller was in at the end
    agent_channel: str  # party B (an agent's channel) when there was one
    last_app: str
    disposition: str  # ANSWERED | NO ANSWER | BUSY | FAILED | CONGESTION
    start: datetime
    answer: datetime | None  # the dialplan's Answer(), not an agent's
    end: datetime

    @property
    def verdict(self) -> Verdict:
        if self.agent_channel and self.disposition == "ANSWERED":
            return Verdict.ANSWERED
        if self.context == OVERFLOW_CONTEXT:
            return Verdict.RECORDED
        return Verdict.ABANDONED


def merge(records: list[CallRecord]) -> CallRecord:
    """One call from its CDRs. Asterisk writes several for one caller when app_queue rang agents
    who did not answer (party B set, NO ANSWER), all at once when the call ends (measured): the
    call reached an agent if any of them was answered, and it ended where the last one did."""
    if not records:
        raise ValueError("a call has at least one record")
    answered = [r for r in records if r.verdict is Verdict.ANSWERED]
    chosen = answered[0] if answered else records[-1]
    return replace(chosen, start=min(r.start for r in records), end=max(r.end for r in records))


class BadRecord(ValueError):
    """A line that is not one of our records (the mapping changed, a torn write)."""

    error_id = "bad-cdr-record"


def _time(value: Any, field: str) -> datetime | None:
    """`start(double)` and friends: epoch seconds; 0 (or absent) means "never"."""
    try:
        epoch = float(value or 0)
    except (TypeError, ValueError) as exc:
        raise BadRecord(f"{field}: not a number: {value!r}") from exc
    return datetime.fromtimestamp(epoch, UTC) if epoch > 0 else None


def parse_line(line: str | bytes) -> CallRecord | None:
    """One line of the file -> a hotline call's record; None for a CDR that is not one (an
    agent's own call, a call-back leg: no service variable). Raises BadRecord on a line that
    is not a record at all."""
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRecord(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRecord("not a JSON object")
    service = str(data.get(dv.CDR_SERVICE) or "")
    if not service:
        return None
    uid = str(data.get("uniqueid") or "")
    if not uid:
        raise BadRecord("uniqueid: missing")
    start = _time(data.get("start"), "start")
    end = _time(data.get("end"), "end")
    if start is None:
        raise BadRecord("start: missing")
    return CallRecord(
        uid=uid,
        linkedid=str(data.get("linkedid") or uid),
        ani=str(data.get("src") or ""),
        service=service,
        context=str(data.get("dcontext") or ""),
        agent_channel=str(data.get("dstchannel") or ""),
        last_app=str(data.get("lastapp") or ""),
        disposition=str(data.get("disposition") or ""),
        start=start,
        answer=_time(data.get("answer"), "answer"),
        end=end or start,
    )


@dataclass(frozen=True, kw_only=True)
class Cursor:
    """Where reading stopped: the file (its inode: a rotated file is a new one) and the byte
    after the last whole line read."""

    file_id: str = ""
    offset: int = 0


@dataclass(frozen=True, kw_only=True)
class Line:
    record: CallRecord
    start_offset: int  # where this record's line begins (the cursor to come back to it)
    end_offset: int  # the cursor's offset once this record is handled


def read_new(
    path: Path, cursor: Cursor, *, limit_bytes: int = 4 << 20
) -> tuple[list[Line], Cursor]:
    """The records written after `cursor` (whole lines only), and the cursor after the last
    line read. A missing file reads as nothing; a different file (rotated) or one shorter than
    the cursor (truncated) is read from its start."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return [], cursor
    file_id = f"{stat.st_dev}:{stat.st_ino}"
    offset = cursor.offset if cursor.file_id == file_id and cursor.offset <= stat.st_size else 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        chunk = fh.read(limit_bytes)
    whole = chunk[: chunk.rfind(_NEWLINE) + 1]
    lines: list[Line] = []
    position = offset
    for raw in whole.splitlines(keepends=True):
        position += len(raw)
        if not raw.strip():
            continue
        try:
            record = parse_line(raw)
        except BadRecord as exc:
            # One bad line must not stop every later call from being reconciled.
            logger.warning("skipping a call record at %s:%d: %s", path, position - len(raw), exc)
            continue
        if record is not None:
            lines.append(Line(record=record, start_offset=position - len(raw), end_offset=position))
    return lines, Cursor(file_id=file_id, offset=position)


def default_path(log_dir: Path) -> Path:
    """Where cdr_custom writes inside Asterisk's log folder (the instance's `log/`)."""
    return log_dir / "cdr-custom" / FILE_NAME


def configured_path(state_dir: Path) -> Path:
    """IOC_ASTERISK_CDR_FILE, or the file in the instance's own log folder."""
    return Path(variables()("IOC_ASTERISK_CDR_FILE") or default_path(state_dir / "log"))
