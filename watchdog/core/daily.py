"""When the daily message is due (pure).

Why a schedule of its own: "08:00" is a local time, so it moves with DST; and it must be
computed from persisted state, so a restart neither skips nor repeats a day.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import time as dtime

from watchdog.config import load_timezone


def next_at(after: float, at: dtime, timezone: str) -> float:
    """The first `at` (local time in `timezone`) strictly after `after` (epoch seconds).

    A local time that does not exist on a day (skipped by a DST change) is taken as the
    same wall-clock reading before the change, as zoneinfo does (fold=0); a time that
    exists twice is taken at its first occurrence.
    """
    tz = load_timezone(timezone)
    day = datetime.fromtimestamp(after, tz).date()
    for offset in range(0, 3):
        local = datetime.combine(day + timedelta(days=offset), at.replace(tzinfo=tz, fold=0))
        when = local.timestamp()
        if when > after:
            return when
    raise AssertionError("no occurrence within three days")  # pragma: no cover
