"""Maintenance windows: is a window open at a moment, and when does it next open. Pure.

A window opens at ``start`` on each of its ``days`` (local time in its IANA zone) and closes at
``end``, on the next day when ``end <= start`` (``start == end`` means 24 hours). Comparisons
are made in UTC, so DST transitions neither stretch nor skip a window's instants.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from reconciler.model import WEEKDAYS, Window


def _openings(window: Window, around: date) -> Iterator[tuple[datetime, datetime]]:
    """(open, close) in UTC for windows opening from the day before ``around`` to a week after."""
    zone = ZoneInfo(window.timezone)
    for offset in range(-1, 9):
        day = around + timedelta(days=offset)
        if window.days and day.weekday() not in window.days:
            continue
        opens = datetime.combine(day, window.start, tzinfo=zone)
        close_day = day + timedelta(days=1) if window.end <= window.start else day
        closes = datetime.combine(close_day, window.end, tzinfo=zone)
        yield opens.astimezone(UTC), closes.astimezone(UTC)


def _local_date(window: Window, moment: datetime) -> date:
    return moment.astimezone(ZoneInfo(window.timezone)).date()


def is_open(window: Window, moment: datetime) -> bool:
    at = moment.astimezone(UTC)
    return any(opens <= at < closes for opens, closes in _openings(window, _local_date(window, moment)))


def next_opening(window: Window, moment: datetime) -> datetime:
    """The first opening at or after ``moment``, in the window's time zone."""
    at = moment.astimezone(UTC)
    upcoming = [opens for opens, _ in _openings(window, _local_date(window, moment)) if opens >= at]
    return min(upcoming).astimezone(ZoneInfo(window.timezone))


def describe(window: Window) -> str:
    days = ",".join(WEEKDAYS[d] for d in sorted(window.days)) if window.days else "daily"
    return f"{days} {window.start:%H:%M}-{window.end:%H:%M} {window.timezone}"
