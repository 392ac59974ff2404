"""Deadlines (RP-5): the timed track counts working days with Vietnam's holidays.

Pure functions; the calendar comes from the maintained `holidays` package, which knows the
lunar Tết days and the substituted days off the government announces.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays


class Track(StrEnum):
    TIMED = "timed"  # deadline in working days, overdue detection
    IMMEDIATE = "immediate"  # no deadline: handled now, hot incidents escalate


@lru_cache(maxsize=64)
def _vn_holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("VN", years=year).keys())


def is_working_day(day: date, *, is_holiday: Callable[[date], bool] | None = None) -> bool:
    if day.weekday() >= 5:  # Saturday, Sunday
        return False
    if is_holiday is not None:
        return not is_holiday(day)
    return day not in _vn_holidays(day.year)


def add_working_days(
    start: date, days: int, *, is_holiday: Callable[[date], bool] | None = None
) -> date:
    """The `days`-th working day after `start` (the receipt day itself is not counted)."""
    if days < 0:
        raise ValueError("days must be >= 0")
    day = start
    left = days
    while left > 0:
        day += timedelta(days=1)
        if is_working_day(day, is_holiday=is_holiday):
            left -= 1
    return day


def deadline(
    received_at: datetime,
    working_days: int,
    *,
    tz: str = "Asia/Ho_Chi_Minh",
    workday_end: time = time(17, 0),
) -> datetime:
    """End of the working day `working_days` working days after receipt, as an aware datetime.

    A report received on a day off counts from that day like any other: the first counted day
    is the next working day. Zero days means the end of the receipt day's working time (or of
    the next working day when received on a day off).
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    zone = ZoneInfo(tz)
    local = received_at.astimezone(zone)
    if working_days == 0:
        day = local.date()
        while not is_working_day(day):
            day += timedelta(days=1)
    else:
        day = add_working_days(local.date(), working_days)
    return datetime.combine(day, workday_end, tzinfo=zone)


def is_overdue(due_at: datetime | None, now: datetime, *, finished: bool) -> bool:
    """Overdue means: a deadline exists, it has passed, and the work is not finished."""
    return due_at is not None and not finished and now > due_at
