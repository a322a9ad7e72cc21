"""Clinic time: the injected clock and calendar arithmetic in the clinic's time zone.

Deadlines are counted in calendar days and months in the clinic's zone (a day starts at
00:00 local time, so a deadline stays at midnight across a DST change) and stored in UTC.
The engine never reads the wall clock: a :class:`Clock` is passed in and read once per step.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    """Where the current instant comes from."""

    def now(self) -> datetime:
        """The current instant, tz-aware, in UTC."""
        ...


class SystemClock:
    """The real clock, for the server and the command line."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to: tests and simulations."""

    def __init__(self, start: datetime) -> None:
        self._now = to_utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = to_utc(instant)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def to_utc(instant: datetime) -> datetime:
    """Convert an aware datetime to UTC; refuse a naive one (its zone would be a guess)."""
    if instant.tzinfo is UTC:  # most instants already are: every one read or stamped
        return instant
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(
            f"naive datetime {instant.isoformat()} has no UTC offset; pass an aware datetime"
        )
    return instant.astimezone(UTC)


def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    """The clinic's calendar date of an instant."""
    return to_utc(instant).astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """00:00 clinic time on ``day``, as a UTC instant."""
    return datetime.combine(day, time(0, 0), tzinfo=tz).astimezone(UTC)


def clinic_noon(day: date, tz: ZoneInfo) -> datetime:
    """12:00 clinic time on ``day`` (the instant a simulation's "day N" means), in UTC."""
    return datetime.combine(day, time(12, 0), tzinfo=tz).astimezone(UTC)


def add_days(day: date, days: int) -> date:
    return day + timedelta(days=days)


def add_months(day: date, months: int) -> date:
    """Calendar months, clamped to the month's last day (Jan 31 + 3 months = Apr 30)."""
    month_index = day.month - 1 + months
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(day.day, last))


def days_between(start: date, end: date) -> int:
    return (end - start).days


def next_day_start(instant: datetime, tz: ZoneInfo) -> datetime:
    """00:00 clinic time on the day after ``instant``: "by the end of today"."""
    return day_start(add_days(local_date(instant, tz), 1), tz)


def shift_local(instant: datetime, tz: ZoneInfo, *, days: int = 0, months: int = 0) -> datetime:
    """Move an instant by calendar days/months keeping its clinic wall-clock time."""
    local = to_utc(instant).astimezone(tz)
    day = add_months(local.date(), months) if months else local.date()
    day = add_days(day, days)
    return datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=tz).astimezone(UTC)
