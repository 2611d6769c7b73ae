"""Send windows: when, in a recipient's time zone, a message may go out.

A window is `HH:mm`–`HH:mm` in local wall-clock time, on allowed days of the week
(0 = Sunday … 6 = Saturday; an empty list means every day). A window whose end is
earlier than its start crosses midnight (22:00–06:00) and belongs to the day it
starts on: Friday 22:00–Saturday 06:00 is allowed when Friday is. An equal start
and end, or no window at all, means the whole day.

Local times that do not exist (the hour skipped when clocks go forward) start at
the first valid instant after the gap; times that exist twice (clocks going back)
use the first occurrence. Everything is computed from the zone's rules, so DST
needs no special cases elsewhere.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HHMM = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d")


def parse_hhmm(value: str) -> time:
    """`"09:30"` -> time(9, 30); ValueError for anything else (24:00 is not accepted)."""
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise ValueError(f"{value!r} is not a time in HH:mm format")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def get_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError for an unknown one."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"{name!r} is not a valid IANA time zone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not a valid IANA time zone") from None


def _sunday_based(day: date) -> int:
    return (day.weekday() + 1) % 7


def _localize(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The UTC instant the local wall clock first shows `day at`, or, when that
    time is skipped by a DST jump, the instant the clock jumps over it."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=zone, fold=0)
    if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
        return aware.astimezone(UTC)
    # Inside a gap: the two offsets give two UTC readings around the transition;
    # the first whole second whose local time is past `naive` is the jump.
    lo = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    hi = int(aware.timestamp())
    lo, hi = min(lo, hi), max(lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def next_allowed_time(
    now: datetime,
    tz: str | ZoneInfo,
    window_start: str | time | None = None,
    window_end: str | time | None = None,
    allowed_days: list[int] | tuple[int, ...] | set[int] | None = None,
) -> datetime:
    """The first instant at or after `now` (aware) that is inside the window on an
    allowed day, in UTC. Returns `now` itself (in UTC) when it is allowed already."""
    return allowed_span(now, tz, window_start, window_end, allowed_days)[0]


def allowed_span(
    now: datetime,
    tz: str | ZoneInfo,
    window_start: str | time | None = None,
    window_end: str | time | None = None,
    allowed_days: list[int] | tuple[int, ...] | set[int] | None = None,
) -> tuple[datetime, datetime]:
    """(from, until) in UTC: the rest of the window open at `now`, or the next window
    when none is. `from` is next_allowed_time(); sends in [from, until) are allowed.
    A whole-day window ends at local midnight."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = tz if isinstance(tz, ZoneInfo) else get_zone(tz)
    start = parse_hhmm(window_start) if isinstance(window_start, str) else window_start
    end = parse_hhmm(window_end) if isinstance(window_end, str) else window_end
    days = set(allowed_days or ()) or set(range(7))
    if any(d not in range(7) for d in days):
        raise ValueError("allowed days are 0 (Sunday) to 6 (Saturday)")
    now_utc = now.astimezone(UTC)
    whole_day = start is None or end is None or start == end
    if start is None:
        start = time(0, 0)
    local_today = now_utc.astimezone(zone).date()

    # Look at windows opening from yesterday (a window crossing midnight may still
    # be open) through the next week and a day.
    for offset in range(-1, 9):
        day = local_today + timedelta(days=offset)
        if _sunday_based(day) not in days:
            continue
        opens = _localize(day, start if not whole_day else time(0, 0), zone)
        if whole_day:
            closes = _localize(day + timedelta(days=1), time(0, 0), zone)
        elif end > start:
            closes = _localize(day, end, zone)
        else:
            closes = _localize(day + timedelta(days=1), end, zone)
        if closes <= opens:
            continue  # a window swallowed entirely by a DST gap
        if now_utc < opens:
            return opens, closes
        if now_utc < closes:
            return now_utc, closes
    raise ValueError("no allowed time in the coming week")  # unreachable with a valid day set


def is_allowed(now: datetime, tz, window_start=None, window_end=None, allowed_days=None) -> bool:
    return next_allowed_time(now, tz, window_start, window_end, allowed_days) <= now.astimezone(UTC)
