"""The `wal` check as a pure function: slots, archiving, the WAL directory, its metrics
and its config section (real servers: tests/test_wal_pg.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from watchdog.checks.wal import WalConfig, check_wal, metric_families, segments_waiting
from watchdog.config import ConfigError, parse_config
from watchdog.model import Status
from watchdog.probes.postgres import Archiver, PgSnapshot, WalFacts, WalSlot, track

MiB = 1024**2
GiB = 1024**3
DAY = 86400.0


def snap(taken_at: float = 1000.0, **wal) -> PgSnapshot:
    facts = WalFacts(**{"archive_mode": "off", "archive_command_set": False,
                        "current_walfile": "000000010000000A00000042",
                        "archiver": Archiver(archived_count=0, failed_count=0),
                        "waldir_bytes": 512 * MiB, "waldir_files": 32, **wal})
    return PgSnapshot(reachable=True, in_recovery=False, server_version=150000,
                      taken_at=taken_at, wal=facts)


def archiving(taken_at: float = 1000.0, **archiver) -> PgSnapshot:
    fields = {"archived_count": 10, "last_archived_wal": "000000010000000A00000041",
              "last_archived_age": 30.0, "failed_count": 0, **archiver}
    return snap(taken_at, archive_mode="on", archive_command_set=True, ready_count=0,
                archiver=Archiver(**fields))


ACTIVE = WalSlot(name="standby1", slot_type="physical", active=True, active_pid=4711,
                 retained_bytes=8192)
GONE = WalSlot(name="old_standby", slot_type="physical", active=False, retained_bytes=300 * MiB)


def test_a_healthy_primary_is_ok_and_says_what_it_saw():
    result = check_wal(snap(slots=(ACTIVE,)), WalConfig())
    assert result.status == Status.OK
    assert result.summary == ("slots: 1 active (standby1); archive_mode off; "
                              "WAL directory 512.0 MiB (32 files)")
    assert result.details["slots"][0]["retained_bytes"] == 8192
    json.dumps(result.details)


def test_an_inactive_slot_names_itself_its_bytes_and_the_drop_command():
    result = check_wal(track(snap(slots=(GONE,)), None), WalConfig())
    assert result.status == Status.WARNING
    assert result.summary == (
        "physical slot old_standby inactive (since when unknown: first look, PostgreSQL "
        "before 17), retains 300.0 MiB; if its consumer is gone for good: "
        "SELECT pg_drop_replication_slot('old_standby');")


def test_since_when_a_slot_is_inactive_is_carried_across_cycles():
    first = track(snap(1000.0, slots=(ACTIVE,)), None)
    went = track(snap(1030.0, slots=(dataclasses.replace(ACTIVE, active=False),)), first)
    later = track(snap(1630.0, slots=(dataclasses.replace(ACTIVE, active=False),)), went)
    assert went.wal.slots[0].inactive_since == 1030.0
    assert later.wal.slots[0].inactive_since == 1030.0
    result = check_wal(later, WalConfig(), previous=went)
    assert "slot standby1 inactive for at least 10m00s, retains 8.0 KiB" in result.summary
    assert result.details["slots"][0]["inactive_seconds"] == 600.0
    # PostgreSQL 17+ says since when itself: no "at least", also on a first look.
    server = track(snap(2000.0, slots=(dataclasses.replace(GONE, inactive_age=90.0),)), None)
    assert "slot old_standby inactive for 1m30s" in check_wal(server, WalConfig()).summary


def test_retained_bytes_over_the_limits():
    cfg = WalConfig(slot_warning_bytes=100 * MiB, slot_critical_bytes=GiB)
    warn = check_wal(snap(slots=(GONE,)), cfg)
    assert warn.status == Status.WARNING
    assert warn.summary.startswith("inactive physical slot old_standby retains 300.0 MiB "
                                   "(>= 100.0 MiB)")
    big = dataclasses.replace(ACTIVE, retained_bytes=2 * GiB)
    crit = check_wal(snap(slots=(big,)), cfg)
    assert crit.status == Status.CRITICAL
    assert crit.summary.startswith("active physical slot standby1 retains 2.0 GiB (>= 1.0 GiB)")


def test_a_lost_slot_is_critical_and_an_ignored_slot_is_never_judged():
    lost = dataclasses.replace(GONE, wal_status="lost", retained_bytes=None)
    result = check_wal(snap(slots=(lost,)), WalConfig())
    assert result.status == Status.CRITICAL and "wal_status lost" in result.summary
    ignored = check_wal(snap(slots=(lost,)), WalConfig(ignore_slots=("old_standby",)))
    assert ignored.status == Status.OK
    assert ignored.details["slots"][0]["ignored"] is True


def test_archiving_that_fails_now_is_critical():
    result = check_wal(archiving(failed_count=3, last_failed_wal="000000010000000A00000042",
                                 last_failed_age=5.0, last_archived_age=600.0), WalConfig())
    assert result.status == Status.CRITICAL
    assert result.summary.startswith(
        "WAL archiving failing: 000000010000000A00000042 failed 5.0s ago (3 failures in all), "
        "last success 10m00s ago (000000010000000A00000041)")


def test_archiving_that_never_succeeded_but_failed_is_critical():
    result = check_wal(archiving(archived_count=0, last_archived_wal=None,
                                 last_archived_age=None, failed_count=1,
                                 last_failed_wal="000000010000000000000001",
                                 last_failed_age=2.0), WalConfig())
    assert result.status == Status.CRITICAL and "nothing archived yet" in result.summary


def test_failures_rising_between_cycles_with_a_newer_success_are_a_warning():
    before = archiving(failed_count=2, last_failed_age=500.0)
    now = archiving(failed_count=4, last_failed_age=40.0, last_archived_age=10.0)
    result = check_wal(now, WalConfig(), previous=before)
    assert result.status == Status.WARNING
    assert "failed 2 time(s) since the last cycle" in result.summary
    assert result.details["archive_failures_since_last_cycle"] == 2
    assert check_wal(now, WalConfig()).status == Status.OK  # no earlier look: not judged
    reset = archiving(failed_count=0)
    assert check_wal(reset, WalConfig(), previous=now).status == Status.OK


def test_an_idle_primary_with_nothing_to_archive_is_ok():
    """A success days ago is not a failure when nothing waits; neither is never."""
    idle = archiving(last_archived_age=3 * DAY)
    result = check_wal(idle, WalConfig())
    assert result.status == Status.OK
    assert "archiving: last success 3d00h ago (000000010000000A00000041), nothing waiting" \
        in result.summary
    fresh = archiving(archived_count=0, last_archived_wal=None, last_archived_age=None)
    assert check_wal(fresh, WalConfig()).status == Status.OK


def test_wal_waiting_longer_than_the_limit_is_critical_even_when_never_archived():
    """check_pgactivity's bug: OK when nothing had ever been archived."""
    never = dataclasses.replace(
        archiving(archived_count=0, last_archived_wal=None, last_archived_age=None),
        wal=dataclasses.replace(archiving().wal, ready_count=12, oldest_ready_age=7200.0,
                                archiver=Archiver(archived_count=0, failed_count=0)))
    result = check_wal(never, WalConfig())
    assert result.status == Status.CRITICAL
    assert result.summary == ("12 WAL segment(s) waiting for archiving, the oldest for 2h00m "
                              "(limit 1h00m); nothing archived yet")
    young = dataclasses.replace(never.wal, oldest_ready_age=60.0)
    ok = check_wal(dataclasses.replace(never, wal=young), WalConfig())
    assert ok.status == Status.OK and "12 segment(s) waiting, the oldest 1m00s" in ok.summary


def test_without_the_ready_listing_the_segment_names_tell():
    unreadable = {"ready_count": None, "ready_error": "permission denied for function pg_ls_dir"}
    stuck = archiving(last_archived_wal="000000010000000A00000030", last_archived_age=2 * DAY)
    stuck = dataclasses.replace(stuck, wal=dataclasses.replace(stuck.wal, **unreadable))
    result = check_wal(stuck, WalConfig())
    assert result.status == Status.CRITICAL
    assert result.summary.startswith("no WAL archived for 2d00h (limit 1h00m) while segments "
                                     "wait: writing 000000010000000A00000042, last archived "
                                     "000000010000000A00000030")
    idle = archiving(last_archived_age=2 * DAY)  # ...41 archived, ...42 being written
    idle = dataclasses.replace(idle, wal=dataclasses.replace(idle.wal, **unreadable))
    assert check_wal(idle, WalConfig()).status == Status.OK
    never = archiving(archived_count=0, last_archived_wal=None, last_archived_age=None)
    never = dataclasses.replace(never, wal=dataclasses.replace(never.wal, **unreadable),
                                server_version=110000)  # 10, 11: pg_ls_dir for a superuser
    unknown = check_wal(never, WalConfig())
    assert unknown.status == Status.UNKNOWN
    assert "cannot tell whether WAL waits for archiving" in unknown.summary
    assert unknown.summary.endswith("(permission denied for function pg_ls_dir: before "
                                    "PostgreSQL 12 only a superuser may list it)")


@pytest.mark.parametrize("current,last,waiting", [
    ("000000010000000A00000042", "000000010000000A00000041", False),
    ("000000010000000A00000042", "000000010000000A00000042", False),  # at a segment boundary
    ("000000010000000A00000042", "000000010000000A00000040", True),
    ("000000010000000B00000000", "000000010000000A000000FF", False),  # 16 MiB: next log id
    ("000000010000000B00000001", "000000010000000A000000FF", True),
    ("000000010000000B00000000", "000000010000000A00000010", True),
    ("000000020000000A00000042", "000000010000000A00000041", None),  # another timeline
    ("000000010000000A00000042", "00000002.history", None),
    ("000000010000000A00000042", None, None),
])
def test_segments_waiting_from_names(current, last, waiting):
    assert segments_waiting(current, last) is waiting


def test_archive_mode_on_without_a_command_keeps_wal():
    result = check_wal(dataclasses.replace(
        archiving(), wal=dataclasses.replace(archiving().wal, archive_command_set=False)),
        WalConfig())
    assert result.status == Status.WARNING
    assert result.summary.startswith("archive_mode is on but no archive_command")


def test_the_wal_directory_against_its_limits_and_when_unreadable():
    cfg = WalConfig(dir_warning_bytes=256 * MiB, dir_critical_bytes=GiB)
    assert check_wal(snap(), cfg).status == Status.WARNING
    assert check_wal(snap(waldir_bytes=2 * GiB), cfg).summary == (
        "WAL directory holds 2.0 GiB in 32 files (>= 1.0 GiB)")
    hidden = check_wal(snap(waldir_bytes=None, waldir_files=None,
                            waldir_error="permission denied for function pg_ls_waldir"), cfg)
    assert hidden.status == Status.OK
    assert hidden.summary.endswith(
        "WAL directory size not readable (permission denied for function pg_ls_waldir: "
        "grant pg_monitor to the watchdog's database role)")
    old = dataclasses.replace(hidden, details={})  # 9.x: pg_ls_dir is a superuser's
    nine = check_wal(dataclasses.replace(
        snap(waldir_bytes=None, waldir_error="permission denied for function pg_ls_dir"),
        server_version=90501), cfg)
    assert old.status == nine.status == Status.OK
    assert nine.summary.endswith("(permission denied for function pg_ls_dir: before "
                                 "PostgreSQL 10 only a superuser may list it)")


def test_what_cannot_be_judged_is_unknown_with_the_reason():
    down = PgSnapshot(reachable=False, error="connection refused")
    assert check_wal(down, WalConfig()).summary == "PostgreSQL did not answer: connection refused"
    standby = dataclasses.replace(snap(), in_recovery=True, wal=None)
    assert check_wal(standby, WalConfig()).status == Status.UNKNOWN
    broken = dataclasses.replace(snap(), wal=WalFacts(error="permission denied for view x"))
    result = check_wal(broken, WalConfig())
    assert result.status == Status.UNKNOWN and "permission denied for view x" in result.summary
    none = check_wal(dataclasses.replace(snap(), wal=None), WalConfig())
    assert none.status == Status.UNKNOWN


def test_metric_families():
    result = check_wal(archiving(failed_count=2, last_failed_age=900.0), WalConfig())
    result = dataclasses.replace(result, details={**result.details, "slots": [
        {"name": "standby1", "retained_bytes": 8192, "active": True},
        {"name": "old", "retained_bytes": None, "active": False},
        {"name": "old", "retained_bytes": 1, "active": True},  # a duplicate: first one wins
        "garbage"]})
    families = {f.name: f for f in metric_families(result)}
    assert families["ha_watchdog_wal_slot_retained_bytes"].samples == ((("standby1",), 8192.0),)
    assert families["ha_watchdog_wal_slot_active"].samples == (
        (("standby1",), True), (("old",), False))
    assert families["ha_watchdog_wal_archive_failures"].sample_name == \
        "ha_watchdog_wal_archive_failures_total"
    assert families["ha_watchdog_wal_archive_failures"].samples == (((), 2.0),)
    assert families["ha_watchdog_wal_archive_last_success_age_seconds"].samples == (((), 30.0),)
    assert families["ha_watchdog_wal_archive_waiting_segments"].samples == (((), 0.0),)
    assert families["ha_watchdog_wal_dir_bytes"].samples == (((), 512.0 * MiB),)
    assert all(not f.samples for f in metric_families(None))


def test_the_config_section():
    cfg = parse_config('[wal]\nslot_warning_bytes = "2GB"\nignore_slots = ["nightly"]\n'
                       'archive_max_age = "2h"\nfor = "10m"\n', "/etc/x.toml")
    section = cfg.check("wal")
    assert (section.slot_warning_bytes, section.ignore_slots) == (2 * GiB, ("nightly",))
    assert (section.archive_max_age, section.for_) == (7200.0, 600.0)
    assert Config_default_for() == 300.0
    assert parse_config("", "/etc/x.toml").check("wal").unknown_for == 900.0
    with pytest.raises(ConfigError) as info:
        parse_config('[wal]\nslot_warning_bytes = "2GB"\nslot_critical_bytes = "1GB"\n',
                     "/etc/x.toml")
    (problem,) = info.value.problems
    assert (problem.path, problem.key, problem.line) == ("/etc/x.toml",
                                                         "wal.slot_critical_bytes", 3)
    with pytest.raises(ConfigError) as info:
        parse_config('[wal]\narchive_max_age = "10s"\n', "/etc/x.toml")
    assert info.value.problems[0].key == "wal.archive_max_age"
    relaxed = parse_config('[backup]\nchecks = ["replay_lag", "wal"]\n', "/etc/x.toml")
    assert relaxed.backup.checks == ("replay_lag", "wal")


def Config_default_for() -> float:
    from watchdog.config import Config

    return Config().check("wal").for_


def test_alert_words_name_the_slot_and_the_command_to_drop_it():
    from watchdog.alerts.advice import first_step, key_numbers

    later = track(snap(1630.0, slots=(ACTIVE, GONE)), track(snap(1000.0, slots=(GONE,)), None))
    details = json.loads(json.dumps(check_wal(later, WalConfig()).details))  # as persisted
    assert key_numbers("wal", details) == [
        "slot old_standby: inactive for 10m30s, retains 300.0 MiB",
        "slot standby1: active, retains 8.0 KiB",
        "WAL directory 512.0 MiB"]
    step = first_step("wal", details, "mail1", "warning", "fallback")
    assert step.startswith("replication slot old_standby is inactive and keeps WAL on mail1: "
                           "if its standby is gone for good, psql -c \"SELECT "
                           "pg_drop_replication_slot('old_standby')\"")
    failing = check_wal(archiving(failed_count=3, last_failed_wal="000000010000000A00000042",
                                  last_failed_age=5.0, last_archived_age=600.0), WalConfig())
    assert key_numbers("wal", failing.details)[0] == ("archiving: 3 failure(s), last success "
                                                      "10m00s ago")
    assert first_step("wal", failing.details, "mail1", "critical", "x").startswith(
        "WAL archiving fails: the PostgreSQL log")
    assert first_step("wal", {"slots": "odd", "archiver": 3}, "mail1", "warning", "x") == "x"
    assert key_numbers("wal", {"slots": [{"name": 5}], "waldir_bytes": -1}) == []


def test_more_slots_than_were_read_is_said():
    result = check_wal(snap(slots=(ACTIVE,), slot_count=150), WalConfig())
    assert result.status == Status.WARNING
    assert result.summary == "150 replication slots: only the 1 holding the most WAL were read"


def test_nagios_performance_data():
    from watchdog.model import Report, Role
    from watchdog.nagios import render_nagios

    result = check_wal(archiving(failed_count=2, last_failed_age=900.0), WalConfig())
    result = dataclasses.replace(result, details={**result.details, "slots": [
        {"name": "standby1", "retained_bytes": 8192, "active": True},
        {"name": "old", "retained_bytes": 300, "active": False}]})
    line = render_nagios(Report("mail1", Role.PRIMARY, [result]))
    assert line.endswith(
        "| wal_slot_retained_max=8192B;1073741824;8589934592;0 wal_slots_inactive=1;;;0 "
        "wal_dir=536870912B;4294967296;17179869184;0 wal_archive_failed=2c;;;0 "
        "wal_archive_waiting=0;;;0")


def test_the_registry_entry_runs_on_the_primary_only_with_its_runbook_line():
    from watchdog.alerts import message
    from watchdog.checks import registry
    from watchdog.model import Role

    entry = registry.find("wal")
    assert entry is not None and entry.roles == frozenset({Role.PRIMARY})
    assert entry.needs == ("postgres",) and entry.section is WalConfig
    assert "pg_drop_replication_slot('name')" in message.first_look("wal")
    assert "pg_stat_archiver" in message.first_look("wal")


def test_never_archived_says_since_when_the_counters_run():
    fresh = archiving(archived_count=0, last_archived_wal=None, last_archived_age=None,
                      stats_reset_age=2 * DAY)
    result = check_wal(fresh, WalConfig())
    assert result.status == Status.OK
    assert "archiving: nothing archived in the 2d00h since pg_stat_archiver was reset, " \
           "nothing waiting" in result.summary
