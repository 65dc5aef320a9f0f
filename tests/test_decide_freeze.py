"""Freeze windows: weekly windows over the weekend, one-off dates, time zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rules.freeze import check_window, parse_moment, window_end

BERLIN_WEEKEND = ("FRI 16:00", "MON 08:00", "Europe/Berlin")


def _inside(now: datetime, window: tuple[str, str, str] = BERLIN_WEEKEND) -> bool:
    return window_end(*window, now) is not None


@pytest.mark.parametrize(
    "now,inside",
    [
        # Summer (CEST, UTC+2): Friday 16:00 local is 14:00 UTC.
        (datetime(2025, 6, 6, 13, 59, tzinfo=UTC), False),
        (datetime(2025, 6, 6, 14, 0, tzinfo=UTC), True),
        (datetime(2025, 6, 8, 12, 0, tzinfo=UTC), True),  # Sunday
        (datetime(2025, 6, 9, 5, 59, tzinfo=UTC), True),  # Monday 07:59 local
        (datetime(2025, 6, 9, 6, 0, tzinfo=UTC), False),  # Monday 08:00 local
        # Winter (CET, UTC+1): the same local hours are one UTC hour later.
        (datetime(2025, 1, 10, 14, 59, tzinfo=UTC), False),
        (datetime(2025, 1, 10, 15, 0, tzinfo=UTC), True),
        (datetime(2025, 1, 13, 6, 59, tzinfo=UTC), True),
        (datetime(2025, 1, 13, 7, 0, tzinfo=UTC), False),
        (datetime(2025, 1, 15, 12, 0, tzinfo=UTC), False),  # Wednesday
    ],
)
def test_weekend_window_in_local_time_summer_and_winter(now: datetime, inside: bool) -> None:
    assert _inside(now) is inside


def test_end_is_local_wall_clock_across_a_dst_change() -> None:
    # Berlin leaves summer time on Sunday 2025-10-26; the freeze still ends Monday 08:00 local (07:00 UTC).
    assert window_end(*BERLIN_WEEKEND, datetime(2025, 10, 25, 12, 0, tzinfo=UTC)) == datetime(2025, 10, 27, 7, 0, tzinfo=UTC)
    # ...and on entering summer time (2025-03-30) it ends at 06:00 UTC.
    assert window_end(*BERLIN_WEEKEND, datetime(2025, 3, 29, 12, 0, tzinfo=UTC)) == datetime(2025, 3, 31, 6, 0, tzinfo=UTC)


def test_window_within_one_day_and_naive_now_is_utc() -> None:
    window = ("MON 00:00", "MON 06:00", "UTC")
    assert _inside(datetime(2025, 6, 9, 5, 0), window)
    assert not _inside(datetime(2025, 6, 9, 6, 0), window)


def test_one_off_window_with_dates() -> None:
    window = ("2025-12-24", "2026-01-02 00:00", "America/New_York")
    assert not _inside(datetime(2025, 12, 24, 4, 59, tzinfo=UTC), window)  # 23:59 on the 23rd in New York
    assert _inside(datetime(2025, 12, 24, 5, 0, tzinfo=UTC), window)
    assert window_end(*window, datetime(2025, 12, 30, tzinfo=UTC)) == datetime(2026, 1, 2, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize("start,end,tz,message", [
    ("FRI 16:00", "FRI 16:00", "UTC", "same moment"),
    ("2025-01-02", "2025-01-01", "UTC", "after start"),
    ("FRI 16:00", "MON 08:00", "Nowhere/City", "unknown time zone"),
    ("FRI 25:00", "MON 08:00", "UTC", "not a freeze time"),
    ("2025-02-30", "2025-03-01", "UTC", "not a valid date"),
])  # fmt: skip
def test_malformed_windows(start: str, end: str, tz: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_window(start, end, tz)


def test_long_weekday_names_are_accepted() -> None:
    assert parse_moment("friday 16:00") == parse_moment("FRI 16:00")
