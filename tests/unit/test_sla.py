"""Working-day deadlines with Vietnam's holidays, Tết included (RP-5)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from ioc_core.incidents.sla import add_working_days, deadline, is_overdue, is_working_day

VN = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 11, 25), True),  # Wednesday
        (date(2026, 11, 28), False),  # Saturday
        (date(2026, 11, 29), False),  # Sunday
        (date(2027, 2, 4), False),  # 29 Tết (Thursday) — lunar calendar
        (date(2027, 2, 10), False),  # fifth day of Tết
        (date(2027, 2, 11), True),  # back to work
        (date(2026, 9, 2), False),  # National Day
        (date(2026, 4, 30), False),  # Reunification Day
        (date(2026, 4, 27), False),  # Hùng Kings (observed)
    ],
)
def test_working_days(day: date, working: bool) -> None:
    assert is_working_day(day) is working


@pytest.mark.parametrize(
    ("start", "days", "due"),
    [
        (date(2026, 11, 25), 0, date(2026, 11, 25)),
        (date(2026, 11, 25), 1, date(2026, 11, 26)),
        (date(2026, 11, 27), 1, date(2026, 11, 30)),  # Friday + 1 = Monday
        (date(2026, 11, 28), 1, date(2026, 11, 30)),  # received on Saturday
        # Tết 2027: holidays 4-10 Feb (Thu-Wed), weekend 6-7 inside it.
        (date(2027, 2, 2), 3, date(2027, 2, 12)),  # Wed 3, [Tết 4-10], Thu 11, Fri 12
        (date(2027, 2, 3), 5, date(2027, 2, 17)),  # spans the whole of Tết
        (date(2026, 12, 31), 1, date(2027, 1, 4)),  # New Year's Day, then a weekend
    ],
)
def test_add_working_days(start: date, days: int, due: date) -> None:
    assert add_working_days(start, days) == due


def test_deadline_across_tet_ends_at_the_close_of_business_in_vietnam() -> None:
    received = datetime(2027, 2, 3, 3, 0, tzinfo=UTC)  # 10:00 in Hà Nội, Wednesday
    due = deadline(received, 5)
    assert due.tzinfo is not None
    assert due.astimezone(VN).date() == date(2027, 2, 17)
    assert due.astimezone(VN).time() == time(17, 0)


def test_deadline_uses_the_local_date_not_utc() -> None:
    # 20:00 UTC on Friday is 03:00 on Saturday in Vietnam: counting starts from Saturday.
    received = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    assert deadline(received, 1).astimezone(VN).date() == date(2026, 11, 30)
    assert deadline(received, 0).astimezone(VN).date() == date(2026, 11, 30)


def test_deadline_rejects_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        deadline(datetime(2026, 1, 1), 1)


@pytest.mark.parametrize(
    ("due_offset", "finished", "overdue"),
    [
        (timedelta(hours=-1), False, True),
        (timedelta(hours=1), False, False),
        (timedelta(hours=-1), True, False),
        (None, False, False),
    ],
)
def test_overdue(due_offset: timedelta | None, finished: bool, overdue: bool) -> None:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    due = now + due_offset if due_offset is not None else None
    assert is_overdue(due, now, finished=finished) is overdue
