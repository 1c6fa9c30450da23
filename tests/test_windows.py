"""Maintenance windows: days, crossing midnight, time zones and DST transitions."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.model import Window
from reconciler.rollout.windows import describe, is_open, next_opening

SAT, SUN = 5, 6
SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
WEEKEND_NIGHTS = Window(time(22, 0), time(6, 0), "Asia/Shanghai", frozenset({SAT, SUN}))


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)


@pytest.mark.parametrize(
    "moment,expected",
    [
        (local(SHANGHAI, 2026, 11, 27, 23, 0), False),  # Friday night: not a window day
        (local(SHANGHAI, 2026, 11, 28, 21, 59), False),  # Saturday, before it opens
        (local(SHANGHAI, 2026, 11, 28, 22, 0), True),  # opens on the minute
        (local(SHANGHAI, 2026, 11, 29, 3, 0), True),  # Sunday early morning: Saturday's window
        (local(SHANGHAI, 2026, 11, 29, 6, 0), False),  # closes on the minute
        (local(SHANGHAI, 2026, 11, 29, 23, 0), True),  # Sunday's own window
        (local(SHANGHAI, 2026, 11, 30, 5, 59), True),  # Monday morning: Sunday's window runs on
        (local(SHANGHAI, 2026, 11, 30, 22, 30), False),  # Monday night: not a window day
    ],
)
def test_window_crossing_midnight(moment: datetime, expected: bool) -> None:
    assert is_open(WEEKEND_NIGHTS, moment) is expected


def test_the_same_instant_in_another_zone_gives_the_same_answer() -> None:
    moment = local(SHANGHAI, 2026, 11, 29, 3, 0)
    assert is_open(WEEKEND_NIGHTS, moment.astimezone(UTC))
    assert is_open(WEEKEND_NIGHTS, moment.astimezone(NEW_YORK))


def test_next_opening_is_in_the_window_zone() -> None:
    friday_noon_utc = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
    opening = next_opening(WEEKEND_NIGHTS, friday_noon_utc)
    assert opening.isoformat() == "2026-11-28T22:00:00+08:00"
    assert next_opening(WEEKEND_NIGHTS, opening) == opening


def test_daily_window_and_24_hour_window() -> None:
    daily = Window(time(1, 0), time(2, 0), "UTC")
    assert is_open(daily, datetime(2026, 1, 5, 1, 30, tzinfo=UTC))
    assert not is_open(daily, datetime(2026, 1, 5, 2, 30, tzinfo=UTC))
    assert next_opening(daily, datetime(2026, 1, 5, 2, 30, tzinfo=UTC)) == datetime(2026, 1, 6, 1, 0, tzinfo=ZoneInfo("UTC"))
    all_day_sunday = Window(time(0, 0), time(0, 0), "UTC", frozenset({SUN}))
    assert is_open(all_day_sunday, datetime(2026, 1, 4, 23, 59, tzinfo=UTC))
    assert not is_open(all_day_sunday, datetime(2026, 1, 5, 0, 0, tzinfo=UTC))
    assert describe(WEEKEND_NIGHTS) == "sat,sun 22:00-06:00 Asia/Shanghai"


def test_spring_forward_keeps_the_window_in_wall_clock_time() -> None:
    # New York, 2026-03-08: clocks jump from 02:00 to 03:00. A 01:00-04:00 window lasts 2 hours.
    window = Window(time(1, 0), time(4, 0), "America/New_York", frozenset({SUN}))
    assert is_open(window, local(NEW_YORK, 2026, 3, 8, 1, 30))
    assert is_open(window, local(NEW_YORK, 2026, 3, 8, 3, 30))
    assert not is_open(window, local(NEW_YORK, 2026, 3, 8, 4, 0))
    opens = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)  # 01:00 EST
    closes = datetime(2026, 3, 8, 8, 0, tzinfo=UTC)  # 04:00 EDT
    assert is_open(window, opens) and not is_open(window, closes) and is_open(window, closes - timedelta(seconds=1))


def test_fall_back_window_lasts_its_extra_hour() -> None:
    # New York, 2026-11-01: 02:00 EDT becomes 01:00 EST. A 00:00-03:00 window lasts 4 hours.
    window = Window(time(0, 0), time(3, 0), "America/New_York", frozenset({SUN}))
    opens = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT
    closes = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # 03:00 EST
    assert is_open(window, opens) and is_open(window, closes - timedelta(minutes=1)) and not is_open(window, closes)


def test_window_opening_inside_the_spring_gap_opens_at_the_shifted_instant() -> None:
    # 02:30 does not exist on 2026-03-08 in New York; the window opens at 03:30 EDT (07:30 UTC).
    window = Window(time(2, 30), time(5, 0), "America/New_York", frozenset({SUN}))
    opening = next_opening(window, datetime(2026, 3, 8, 0, 0, tzinfo=UTC))
    assert opening.astimezone(UTC) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


ZONES = st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu"])
TIMES = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@settings(max_examples=300, deadline=None)
@given(
    zone=ZONES,
    start=TIMES,
    end=TIMES,
    days=st.frozensets(st.integers(0, 6)),
    moment=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)),
)
def test_next_opening_is_open_and_nothing_opens_earlier(zone, start, end, days, moment) -> None:
    window = Window(start, end, zone, days)
    opening = next_opening(window, moment)
    assert opening >= moment
    assert is_open(window, opening)
    if not is_open(window, moment):
        # Sample the span before the opening: the window must stay closed there.
        step = (opening - moment) / 17
        assert not any(is_open(window, moment + step * i) for i in range(17))
