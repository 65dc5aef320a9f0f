"""Freeze windows: weekly windows over the weekend, one-off dates, time zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def test_overlapping_and_adjacent_windows_freeze_until_the_last_of_them_ends() -> None:
    """The report says until when the freeze holds. Before, it named the end of the first matching window even
    when another window held on past it (or began the moment it ended), so "frozen until 12:00" was followed by
    a freeze until 15:00 and then one until Monday."""
    from rules.freeze import freeze_until

    windows = [
        ("2025-06-02 10:00", "2025-06-02 12:00", "UTC"),  # Monday morning
        ("2025-06-02 11:00", "2025-06-02 15:00", "UTC"),  # overlaps it
        ("2025-06-02 15:00", "2025-06-02 17:30", "UTC"),  # begins as the second ends
        ("2025-06-02 18:00", "2025-06-02 19:00", "UTC"),  # after a gap: not part of this freeze
    ]
    first, until = freeze_until(windows, datetime(2025, 6, 2, 11, 30, tzinfo=UTC))
    assert first == 0 and until == datetime(2025, 6, 2, 17, 30, tzinfo=UTC)
    assert freeze_until(windows, datetime(2025, 6, 2, 17, 45, tzinfo=UTC)) is None
    # a weekly window chained to a one-off one in another zone
    weekly = [("FRI 16:00", "MON 08:00", "Europe/Berlin"), ("2025-06-09 06:00", "2025-06-09 09:00", "UTC")]
    first, until = freeze_until(weekly, datetime(2025, 6, 7, 12, 0, tzinfo=UTC))
    assert first == 0 and until == datetime(2025, 6, 9, 9, 0, tzinfo=UTC)
    # windows that together never end stop at a bound instead of looping
    always = [("MON 00:00", "THU 00:00", "UTC"), ("WED 00:00", "TUE 00:00", "UTC")]
    first, until = freeze_until(always, datetime(2025, 6, 4, 12, 0, tzinfo=UTC))
    assert until >= datetime(2025, 6, 4, 12, 0, tzinfo=UTC) + timedelta(days=28)
