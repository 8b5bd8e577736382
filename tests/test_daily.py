"""When the daily report is due (watchdog.core.daily): local time, DST, strictly after."""

from __future__ import annotations

from datetime import datetime, time, timezone

import pytest

from watchdog.core.daily import next_at


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def test_later_today_or_tomorrow():
    assert next_at(utc(2026, 6, 1, 5, 0), time(8, 0), "UTC") == utc(2026, 6, 1, 8, 0)
    assert next_at(utc(2026, 6, 1, 8, 0), time(8, 0), "UTC") == utc(2026, 6, 2, 8, 0)  # strictly
    assert next_at(utc(2026, 6, 1, 23, 59), time(0, 0, 30), "UTC") == utc(2026, 6, 2, 0, 0, 30)


def test_local_time_moves_with_dst():
    # 08:00 in New York is 12:00 UTC in summer, 13:00 UTC in winter.
    assert next_at(utc(2026, 7, 1), time(8, 0), "America/New_York") == utc(2026, 7, 1, 12, 0)
    assert next_at(utc(2026, 12, 1), time(8, 0), "America/New_York") == utc(2026, 12, 1, 13, 0)
    # The night of the change: still one report, at 08:00 local.
    march = next_at(utc(2026, 3, 8, 5, 0), time(8, 0), "America/New_York")
    assert march == utc(2026, 3, 8, 12, 0)


def test_skipped_and_repeated_local_times_give_one_report_a_day():
    # 02:30 does not exist in Berlin on 2026-03-29 and exists twice on 2026-10-25.
    spring = next_at(utc(2026, 3, 29, 0, 0), time(2, 30), "Europe/Berlin")
    assert spring == utc(2026, 3, 29, 1, 30)
    first = next_at(utc(2026, 10, 24, 23, 0), time(2, 30), "Europe/Berlin")
    assert first == utc(2026, 10, 25, 0, 30)  # the first 02:30 (summer time)
    assert next_at(first, time(2, 30), "Europe/Berlin") == utc(2026, 10, 26, 1, 30)


def test_unknown_zone_is_a_value_error():
    with pytest.raises(ValueError, match="unknown time zone"):
        next_at(0.0, time(8, 0), "Mars/Olympus")
