"""Deployment freeze windows: weekly ("FRI 16:00" to "MON 08:00") or one-off dates, in a time zone.

Times are compared as wall-clock times in the window's zone, so a window means the same local
hours in summer and in winter (DST-safe), and a weekly window may wrap over the weekend.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_WEEKLY = re.compile(r"^\s*(MON|TUE|WED|THU|FRI|SAT|SUN)[A-Z]*\s+([01]?\d|2[0-3]):([0-5]\d)\s*$", re.IGNORECASE)
_ABSOLUTE = re.compile(r"^\s*(\d{4})-(\d{2})-(\d{2})(?:[ T]([01]?\d|2[0-3]):([0-5]\d))?\s*$")
_WEEK_MINUTES = 7 * 24 * 60


@dataclass(frozen=True)
class Weekly:
    """A moment in the week: weekday (0 = Monday) and minute of the day."""

    minute_of_week: int


@dataclass(frozen=True)
class Absolute:
    """A wall-clock date and time (no zone; the window's zone applies); ``whole_day`` when written as a date only."""

    at: datetime
    whole_day: bool = False


Moment = Weekly | Absolute


def parse_moment(text: str) -> Moment:
    """Parse "FRI 16:00" or "2025-12-24 18:00" / "2025-12-24"; raise ValueError saying the accepted forms."""
    m = _WEEKLY.match(text)
    if m:
        day = _DAYS.index(m.group(1).upper())
        return Weekly(day * 1440 + int(m.group(2)) * 60 + int(m.group(3)))
    m = _ABSOLUTE.match(text)
    if m:
        try:
            at = datetime(int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4) or 0), int(m.group(5) or 0))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid date: {exc}") from None
        return Absolute(at, whole_day=m.group(4) is None)
    raise ValueError(
        f"{text!r} is not a freeze time: use a weekday and time like \"FRI 16:00\" or a date like \"2025-12-24 18:00\""
    )


# Names the zone database holds that are not a place: "localtime" is whatever zone the server runs in, so one
# policy would freeze different hours on different hosts; the others are build artefacts of the database.
_NOT_A_PLACE = frozenset({"localtime", "posixrules", "posix", "right", "Factory"})


def zone(name: str) -> ZoneInfo:
    """Return the IANA time zone; raise ValueError with a hint when it does not exist."""
    try:
        if name.split("/", 1)[0] in _NOT_A_PLACE:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as \"Europe/Berlin\" or \"UTC\"") from None


def check_window(start: str, end: str, timezone: str) -> None:
    """Raise ValueError when the window is malformed (mixed kinds, empty, or ending before it starts)."""
    s, e = parse_moment(start), parse_moment(end)
    zone(timezone)
    if type(s) is not type(e):
        raise ValueError("start and end must both be weekly (\"FRI 16:00\") or both be dates (\"2025-12-24 18:00\")")
    if isinstance(s, Weekly) and isinstance(e, Weekly) and s.minute_of_week == e.minute_of_week:
        raise ValueError("start and end are the same moment; the window would be empty")
    if isinstance(s, Absolute) and isinstance(e, Absolute) and _end_wall(e) <= s.at:
        raise ValueError("end must be after start")


def _end_wall(end: Absolute) -> datetime:
    # A date alone names that whole day: a freeze "to 2026-01-05" still holds on the 5th.
    return end.at + timedelta(days=1) if end.whole_day else end.at


def _local_wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _instant(wall: datetime, tz: ZoneInfo, last: bool) -> datetime:
    """The UTC instant a wall-clock time in ``tz`` stands for, read so that a window is never shortened.

    A time that occurs twice (the hour repeated when daylight saving ends) is its first occurrence for a
    start and its second for an end (``last``). A time that never occurs (the hour skipped when it begins)
    is the moment the clock jumps past it, for a start and an end alike.
    """
    lo, hi = sorted(wall.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1))
    if lo == hi:
        return lo
    if _local_wall(lo, tz) == wall:  # repeated
        return hi if last else lo
    # skipped: between the two readings the clock jumps from before ``wall`` to after it; find the jump
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) // 2
        if _local_wall(mid, tz) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def window_end(start: str, end: str, timezone: str, now: datetime) -> datetime | None:
    """Return when the window ends (UTC) if ``now`` is inside it, else None."""
    tz = zone(timezone)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    s, e = parse_moment(start), parse_moment(end)
    local = now.astimezone(tz)
    if isinstance(s, Absolute) and isinstance(e, Absolute):
        begin, finish = _instant(s.at, tz, last=False), _instant(_end_wall(e), tz, last=True)
        return finish if begin <= now < finish else None
    if not (isinstance(s, Weekly) and isinstance(e, Weekly)):
        return None
    minute = local.weekday() * 1440 + local.hour * 60 + local.minute
    a, b = s.minute_of_week, e.minute_of_week
    inside = a <= minute < b if a < b else (minute >= a or minute < b)
    if not inside:
        return None
    # Wall-clock arithmetic in the zone, then attach the zone: the end is "MON 08:00 local"
    # whatever DST transition lies in between.
    ahead = (b - minute) % _WEEK_MINUTES
    wall = local.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=ahead)
    return _instant(wall, tz, last=True)


# Windows that together never open (a week covered end to end) are followed this far, then the freeze is said
# to hold at least until then.
_CHAIN_LIMIT = timedelta(days=28)


def freeze_until(windows: Sequence[tuple[str, str, str]], now: datetime) -> tuple[int, datetime] | None:
    """The first window (start, end, timezone) that holds ``now`` and when the freeze lasts until; None if none.

    Windows that overlap, or begin the moment another ends, are one freeze: its end is followed from window to
    window until no window holds, so the report never says "until 12:00" of a freeze that holds until Monday.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    ends = [window_end(*w, now) for w in windows]
    first = next((i for i, e in enumerate(ends) if e is not None), None)
    if first is None:
        return None
    until = max(e for e in ends if e is not None)
    while until < now + _CHAIN_LIMIT:
        later = [e for w in windows if (e := window_end(*w, until)) is not None and e > until]
        if not later:
            break
        until = max(later)
    return first, until
