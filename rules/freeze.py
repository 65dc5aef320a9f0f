"""Deployment freeze windows: weekly ("FRI 16:00" to "MON 08:00") or one-off dates, in a time zone.

Times are compared as wall-clock times in the window's zone, so a window means the same local
hours in summer and in winter (DST-safe), and a weekly window may wrap over the weekend.
"""

from __future__ import annotations

import re
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
    """A wall-clock date and time (no zone; the window's zone applies)."""

    at: datetime


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
        return Absolute(at)
    raise ValueError(
        f"{text!r} is not a freeze time: use a weekday and time like \"FRI 16:00\" or a date like \"2025-12-24 18:00\""
    )


def zone(name: str) -> ZoneInfo:
    """Return the IANA time zone; raise ValueError with a hint when it does not exist."""
    try:
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
    if isinstance(s, Absolute) and isinstance(e, Absolute) and e.at <= s.at:
        raise ValueError("end must be after start")


def window_end(start: str, end: str, timezone: str, now: datetime) -> datetime | None:
    """Return when the window ends (UTC) if ``now`` is inside it, else None."""
    tz = zone(timezone)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    s, e = parse_moment(start), parse_moment(end)
    local = now.astimezone(tz)
    if isinstance(s, Absolute) and isinstance(e, Absolute):
        begin, finish = s.at.replace(tzinfo=tz), e.at.replace(tzinfo=tz)
        return finish.astimezone(UTC) if begin <= now < finish else None
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
    return wall.replace(tzinfo=tz).astimezone(UTC)
