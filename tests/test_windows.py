"""Backup relaxation: windows in their own time zone (midnight, DST) and detected backups."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, time, timezone
from types import SimpleNamespace

import pytest

from watchdog.config import BackupConfig, BackupWindow, Config, parse_config
from watchdog.core.windows import (
    BackupSeen,
    Relaxation,
    as_backup_seen,
    describe_window,
    relaxation,
    relaxations,
    window_occurrence,
)

HOUR = 3600.0


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def cfg_with(*windows, **backup) -> Config:
    return dataclasses.replace(
        Config(), backup_windows=tuple(windows), backup=BackupConfig(**backup)
    )


def window(
    start,
    end,
    days=("mon", "tue", "wed", "thu", "fri", "sat", "sun"),
    tz="UTC",
    checks=("replay_lag",),
):
    h1, m1 = start
    h2, m2 = end
    return BackupWindow(
        days=tuple(days), start=time(h1, m1), end=time(h2, m2), timezone=tz, checks=tuple(checks)
    )


def relax(now, cfg, check="replay_lag", backups=(), memory=None):
    return relaxation(now, check, cfg, backups, {} if memory is None else memory)


def test_daily_window_inside_and_outside():
    cfg = cfg_with(window((1, 0), (3, 0)))
    inside = relax(utc(2024, 6, 3, 2, 0), cfg)
    assert inside.active and not inside.expired
    assert inside.since == utc(2024, 6, 3, 1, 0)
    assert inside.reason == "backup window daily 01:00-03:00 UTC"
    assert not relax(utc(2024, 6, 3, 3, 0), cfg).active  # end is exclusive
    assert relax(utc(2024, 6, 3, 1, 0), cfg).active  # start is inclusive
    assert relax(utc(2024, 6, 3, 0, 59), cfg) == Relaxation()


def test_window_only_relaxes_the_checks_it_lists():
    cfg = cfg_with(window((1, 0), (3, 0), checks=("replay_lag", "standbys")))
    now = utc(2024, 6, 3, 2, 0)
    assert relax(now, cfg, "standbys").active
    assert not relax(now, cfg, "services").active


def test_window_crossing_midnight_belongs_to_the_day_it_starts():
    # 2024-06-01 is a Saturday
    cfg = cfg_with(window((23, 0), (2, 0), days=("sat",)))
    assert relax(utc(2024, 6, 1, 23, 30), cfg).active
    sunday_night = relax(utc(2024, 6, 2, 1, 30), cfg)
    assert sunday_night.active and sunday_night.since == utc(2024, 6, 1, 23, 0)
    assert not relax(utc(2024, 6, 2, 2, 0), cfg).active
    assert not relax(utc(2024, 6, 2, 23, 30), cfg).active  # Sunday's own night: not listed
    assert not relax(utc(2024, 6, 1, 1, 30), cfg).active  # belongs to Friday's window


def test_window_follows_local_time_across_dst():
    cfg = cfg_with(window((1, 0), (4, 0), tz="Europe/Berlin"))
    # winter: CET (+1): 00:00-03:00 UTC
    assert relax(utc(2024, 1, 10, 0, 30), cfg).active
    assert not relax(utc(2024, 1, 10, 3, 0), cfg).active
    # summer: CEST (+2): 23:00-02:00 UTC (previous UTC day)
    assert relax(utc(2024, 6, 30, 23, 30), cfg).active
    assert not relax(utc(2024, 7, 1, 2, 30), cfg).active
    # spring forward (2024-03-31 02:00 CET -> 03:00 CEST): 01:00 CET .. 04:00 CEST is 2 h
    start, end = window_occurrence(cfg.backup_windows[0], utc(2024, 3, 31, 1, 0))
    assert (start, end) == (utc(2024, 3, 31, 0, 0), utc(2024, 3, 31, 2, 0))
    assert not relax(utc(2024, 3, 31, 2, 0), cfg).active


def test_window_at_fall_back_covers_both_repeated_hours():
    # America/New_York 2024-11-03: 02:00 EDT -> 01:00 EST; 01:00-02:00 local lasts 2 h
    cfg = cfg_with(window((1, 0), (2, 0), tz="America/New_York"))
    start, end = window_occurrence(cfg.backup_windows[0], utc(2024, 11, 3, 5, 30))
    assert (start, end) == (utc(2024, 11, 3, 5, 0), utc(2024, 11, 3, 7, 0))
    assert relax(utc(2024, 11, 3, 6, 30), cfg).active  # 01:30 EST, the second time round


def test_window_from_a_config_file():
    cfg = parse_config(
        '[[backup_windows]]\ndays = ["sat"]\nstart = "23:00"\nend = "02:00"\n'
        'timezone = "Europe/Berlin"\nchecks = ["replay_lag", "standbys"]\n'
    )
    # Saturday 23:30 CEST = 21:30 UTC
    assert relax(utc(2024, 6, 1, 21, 30), cfg, "standbys").active
    assert describe_window(cfg.backup_windows[0]) == "backup window sat 23:00-02:00 Europe/Berlin"


def test_window_longer_than_max_duration_returns_normal_limits():
    cfg = cfg_with(window((20, 0), (8, 0)), max_duration=8 * HOUR)
    early = relax(utc(2024, 6, 3, 3, 0), cfg)
    assert early.active
    late = relax(utc(2024, 6, 4, 4, 30), cfg)
    assert not late.active and late.expired
    assert late.since == utc(2024, 6, 4, 20, 0) - 24 * HOUR
    assert "max_duration" in late.reason and "normal limits apply" in late.reason


def test_detected_backup_relaxes_its_checks():
    cfg = cfg_with()
    now = utc(2024, 6, 3, 12, 0)
    memory = {}
    seen = [(4242, "pg_dump", now - 60)]
    r = relax(now, cfg, "replay_lag", seen, memory)
    assert r.active and r.since == now - 60
    assert r.reason == "running backup pg_dump (pid 4242)"
    assert not relax(now, cfg, "standbys", seen, memory).active  # not in backup.checks
    assert not relax(now, cfg_with(detect=False), "replay_lag", seen, {}).active


def test_detected_backup_max_duration_survives_restarts_via_memory():
    cfg = cfg_with(max_duration=2 * HOUR)
    t0 = utc(2024, 6, 3, 12, 0)
    memory = {}
    seen = [BackupSeen(77, "pg_basebackup", None)]  # the probe does not know its start
    # a cycle every 60 s; the memory is persisted and reloaded (a restart) between cycles
    for t in range(0, int(2 * HOUR) + 1, 60):
        r = relax(t0 + t, cfg, backups=seen, memory=memory)
        assert r.active and r.since == t0
        memory = json.loads(json.dumps(memory))
    over = relax(t0 + 2 * HOUR + 1, cfg, backups=seen, memory=memory)
    assert not over.active and over.expired and over.since == t0
    assert "backup.max_duration 2h00m" in over.reason
    # the backup ended: memory forgets it, nothing is relaxed
    assert relax(t0 + 3 * HOUR, cfg, backups=[], memory=memory) == Relaxation()
    assert memory == {}


def test_relaxations_decide_every_check_of_a_cycle_at_once():
    """Once per cycle, before the checks: one memory update, one answer per check."""
    cfg = cfg_with(window((0, 0), (6, 0), checks=("services",)), max_duration=2 * HOUR)
    now = utc(2024, 6, 3, 1, 0)
    memory = {}
    seen = [(5, "pg_dump", now - 600)]
    out = relaxations(now, ("drbd", "services", "replay_lag"), cfg, seen, memory)
    assert out["drbd"] == Relaxation()
    assert out["services"].active and "backup window" in out["services"].reason
    assert out["replay_lag"].active and out["replay_lag"].since == now - 600
    assert "pg_dump (pid 5)" in out["replay_lag"].reason
    assert memory == {"detected_since": now - 600, "detected_last_seen": now}
    # The same as asking per check (what relaxation() does, one check at a time).
    assert out["services"] == relaxation(now, "services", cfg, seen, dict(memory))


def test_back_to_back_backups_do_not_reset_the_ceiling():
    cfg = cfg_with(max_duration=2 * HOUR)
    t0 = utc(2024, 6, 3, 12, 0)
    memory = {}
    # pg_dump 1 (start unknown) runs for 1 h, pg_dump 2 starts as it ends
    for t in range(0, int(HOUR), 60):
        relax(t0 + t, cfg, backups=[(1, "pg_dump", None)], memory=memory)
    for t in range(int(HOUR), int(2.5 * HOUR), 60):
        r = relax(t0 + t, cfg, backups=[(2, "pg_dump", t0 + HOUR)], memory=memory)
    r = relax(t0 + 2.5 * HOUR, cfg, backups=[(2, "pg_dump", t0 + HOUR)], memory=memory)
    assert r.expired and not r.active


def test_a_window_keeps_relaxing_when_a_detected_backup_expired():
    cfg = cfg_with(window((0, 0), (6, 0)), max_duration=2 * HOUR)
    now = utc(2024, 6, 3, 1, 0)
    r = relax(now, cfg, backups=[(5, "pg_dump", now - 3 * HOUR)])
    assert r.active and r.since == utc(2024, 6, 3, 0, 0) and "backup window" in r.reason


def test_backup_session_shapes_from_probes():
    started = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc)
    obj = SimpleNamespace(pid=9, application_name="pg_dumpall", backend_start=started)
    assert as_backup_seen(obj) == BackupSeen(9, "pg_dumpall", started.timestamp())
    assert as_backup_seen((9, "x", "garbage")) == BackupSeen(9, "x", None)
    assert as_backup_seen(
        SimpleNamespace(pid="9", name="walsender", started=float("inf"))
    ) == BackupSeen(None, "walsender", None)
    assert as_backup_seen(()) is None


def test_relaxation_json_round_trip():
    r = Relaxation(True, "backup window daily 01:00-03:00 UTC", 1.5e9, False)
    assert Relaxation.from_json(json.loads(json.dumps(r.to_json()))) == r
    assert Relaxation.from_json("garbage") == Relaxation()


@pytest.mark.parametrize("hour", range(24))
def test_every_hour_of_a_dst_day_is_consistent(hour):
    # 22:00-06:00 Berlin daily, on the spring-forward day: relaxed exactly when local time is
    # at or after 22:00 or before 06:00
    from watchdog.config import load_timezone  # zoneinfo, or its backport on Python 3.8

    cfg = cfg_with(window((22, 0), (6, 0), tz="Europe/Berlin"))
    now = utc(2024, 3, 31, hour, 15)
    local = datetime.fromtimestamp(now, load_timezone("Europe/Berlin"))
    expected = local.hour >= 22 or local.hour < 6
    assert relax(now, cfg).active == expected


def test_a_sighting_from_before_a_long_stop_is_forgotten():
    cfg = cfg_with(max_duration=2 * HOUR)
    t0 = utc(2024, 6, 3, 12, 0)
    memory = {}
    relax(t0, cfg, backups=[(1, "pg_dump", None)], memory=memory)
    # the daemon was stopped for a day; a new backup (start unknown) is timed from now
    r = relax(t0 + 24 * HOUR, cfg, backups=[(2, "pg_dump", None)], memory=memory)
    assert r.active and r.since == t0 + 24 * HOUR
