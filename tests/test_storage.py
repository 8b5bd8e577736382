"""The `storage` check's pure parts: the forecast, the verdict, the limits' config, metrics.

The real filesystems (tmpfs made small on purpose) are in tests/test_storage_probe.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.checks.forecast import slope, time_to_full
from watchdog.checks.storage import (
    FreeLimit,
    StorageConfig,
    check_storage,
    metric_families,
    parse_free_bytes,
    parse_free_inodes,
)
from watchdog.config import ConfigError, parse_config
from watchdog.model import STORAGE, Status
from watchdog.probes.storage import SRC_CONFIG, SRC_DRBD, FsReading, History, StorageSnapshot

GiB = 1024**3
NOW = 1_800_000_000.0


# ---------------------------------------------------------------- forecast


def test_a_steady_fill_is_forecast_exactly():
    # 1 GiB free less every hour, sampled every 10 minutes for 2 hours.
    samples = [(NOW - 7200 + 600 * k, 10 * GiB - (GiB / 6) * k) for k in range(13)]
    fc = time_to_full(samples, NOW, free_now=8 * GiB, window=7200, min_span=1200)
    assert fc.filling and fc.count == 13 and fc.span == 7200
    assert fc.rate == pytest.approx(-GiB / 3600)
    assert fc.seconds == pytest.approx(8 * 3600)


def test_noise_around_a_fill_is_averaged_out():
    wobble = [0, 300e6, -300e6, 200e6, -200e6, 0, 100e6, -100e6, 0]
    samples = [(NOW - 8 * 900 + 900 * k, 50e9 - 1e6 * 900 * k + w) for k, w in enumerate(wobble)]
    fc = time_to_full(samples, NOW, free_now=42.8e9, window=7200, min_span=1200)
    assert fc.rate == pytest.approx(-1e6, rel=0.2)  # two-point rates swing from -1.4e6 to +0.3e6


def test_no_forecast_from_a_disk_that_empties_or_stays():
    rising = [(NOW - 3600 + 600 * k, 1e9 + 1e6 * k) for k in range(7)]
    flat = [(NOW - 3600 + 600 * k, 1e9) for k in range(7)]
    for samples in (rising, flat):
        fc = time_to_full(samples, NOW, 1e9, 7200, 1200)
        assert fc.seconds is None and fc.why == "not filling"


def test_no_forecast_before_the_samples_span_forecast_min():
    samples = [(NOW - 60 * k, 1e9 + 1e8 * k) for k in range(5)]  # fast, but 4 minutes only
    fc = time_to_full(samples, NOW, 1e9, 7200, 1200)
    assert fc.seconds is None
    assert fc.why == "not enough history yet (5 samples over 4m00s; the forecast needs 20m00s)"


def test_samples_outside_the_window_or_in_the_future_are_left_out():
    old = [(NOW - 86400 + 60 * k, 1e12 - 1e9 * k) for k in range(10)]  # yesterday: filling fast
    recent = [(NOW - 3600 + 600 * k, 5e9) for k in range(7)]  # last hour: flat
    future = [(NOW + 600, 0.0)]  # a clock set back wrote this
    fc = time_to_full(old + recent + future, NOW, 5e9, 7200, 1200)
    assert fc.count == 7 and fc.why == "not filling"


def test_slope_needs_two_instants():
    assert slope([(NOW, 1.0)]) is None
    assert slope([(NOW, 1.0), (NOW, 2.0)]) is None
    assert slope([(0.0, 0.0), (2.0, 4.0)]) == 2.0


# ---------------------------------------------------------------- verdict


def fs(path="/media/drbd1", size=100 * GiB, free=50 * GiB, inodes=1000, free_inodes=500,
       history=(), sources=(SRC_DRBD,), **kw):
    return FsReading(path, sources, kw.pop("device", "/dev/drbd1"), size, size, free, inodes,
                     free_inodes, history=tuple(history), **kw)


def snap(*filesystems, notes=(), problem=None):
    return StorageSnapshot(NOW, tuple(filesystems), tuple(notes), problem)


def filling(free_now, per_hour, hours=2.0, step=600.0, inodes=500):
    """Samples ending at NOW with free_now, falling `per_hour` bytes an hour."""
    n = int(hours * 3600 / step)
    return [(NOW - step * k, int(free_now + per_hour * step * k / 3600), inodes)
            for k in range(n, -1, -1)]


def test_plenty_of_room_is_ok_and_names_each_filesystem():
    result = check_storage(snap(fs(), fs("/var/hvmail/postgres/default/data", size=10 * GiB,
                                         free=8 * GiB, sources=(SRC_CONFIG,))), StorageConfig())
    assert result.status == Status.OK and result.name == STORAGE
    assert result.summary == ("/media/drbd1 50.0 GiB free (50%); "
                              "/var/hvmail/postgres/default/data 8.0 GiB free (80%)")
    entry = result.details["filesystems"][0]
    assert entry["free_percent"] == 50.0 and entry["free_inodes_percent"] == 50.0
    assert entry["sources"] == [SRC_DRBD] and entry["device"] == "/dev/drbd1"


@pytest.mark.parametrize("free,status", [(11, Status.OK), (10, Status.WARNING),
                                         (6, Status.WARNING), (5, Status.CRITICAL)])
def test_free_bytes_against_percent_limits(free, status):
    result = check_storage(snap(fs(free=free * GiB)), StorageConfig())
    assert result.status == status
    if status != Status.OK:
        limit = "5%" if status == Status.CRITICAL else "10%"
        assert result.summary == f"/media/drbd1: {free}.0 GiB free ({free}%), at or below {limit}"


def test_inodes_run_out_before_bytes():
    result = check_storage(snap(fs(free_inodes=40)), StorageConfig())
    assert result.status == Status.CRITICAL
    assert result.summary == "/media/drbd1: 40 inodes free (4%), at or below 5%"


def test_limits_as_amounts_and_off():
    section = StorageConfig(warning_free=FreeLimit(amount=60 * GiB),
                            critical_free=FreeLimit(percent=0.0),
                            warning_free_inodes=FreeLimit(amount=0),
                            critical_free_inodes=FreeLimit(amount=10))
    result = check_storage(snap(fs(free=GiB, free_inodes=11)), section)
    assert result.status == Status.WARNING  # critical bytes off, inodes above 10
    assert result.summary == "/media/drbd1: 1.0 GiB free (1%), at or below 60.0 GiB"


def test_a_filesystem_without_inode_counts_is_judged_on_bytes_only():
    result = check_storage(snap(fs(inodes=0, free_inodes=0)), StorageConfig())
    assert result.status == Status.OK
    assert "inodes_full_in_seconds" not in result.details["filesystems"][0]


def test_the_forecast_pages_before_the_limits_do():
    # 30 GiB free (30%, far from any limit), falling 12 GiB an hour: full in 2.5 h.
    history = filling(30 * GiB, 12 * GiB)
    result = check_storage(snap(fs(free=30 * GiB, history=history)), StorageConfig())
    assert result.status == Status.CRITICAL
    assert result.summary == ("/media/drbd1: full in ~2h30m at the rate of the last 2h00m "
                              "(12.0 GiB/h)")
    entry = result.details["filesystems"][0]
    assert entry["full_in_seconds"] == pytest.approx(9000, rel=1e-6)
    assert entry["forecast_samples"] == 13


def test_a_slower_fill_warns_and_a_slow_one_is_ok():
    slower = check_storage(snap(fs(free=30 * GiB, history=filling(30 * GiB, 3 * GiB))),
                           StorageConfig())
    assert slower.status == Status.WARNING and "full in ~10h00m" in slower.summary
    slow = check_storage(snap(fs(free=30 * GiB, history=filling(30 * GiB, GiB))), StorageConfig())
    assert slow.status == Status.OK
    assert slow.details["filesystems"][0]["forecast"].startswith("full in ~1d06h")


def test_a_backup_relaxes_the_warning_forecast_only():
    slower = snap(fs(free=30 * GiB, history=filling(30 * GiB, 3 * GiB)))
    relaxed = check_storage(slower, StorageConfig(), relaxed=True)
    assert relaxed.status == Status.OK and relaxed.details["relaxed"] is True
    fast = snap(fs(free=30 * GiB, history=filling(30 * GiB, 12 * GiB)))
    assert check_storage(fast, StorageConfig(), relaxed=True).status == Status.CRITICAL
    low = snap(fs(free=4 * GiB))
    assert check_storage(low, StorageConfig(), relaxed=True).status == Status.CRITICAL


def test_inode_forecast():
    history = [(t, 50 * GiB, i) for t, _, i in filling(0, 0)]
    history = [(t, b, 500 - 15 * k) for k, (t, b, _) in enumerate(history)]  # 90 inodes/h
    result = check_storage(snap(fs(free_inodes=320, history=history)), StorageConfig())
    assert result.status == Status.WARNING
    assert "out of inodes in ~3h33m at the rate of the last 2h00m (90 inodes/h)" in result.summary


def test_too_little_history_says_so_and_judges_limits_only():
    result = check_storage(snap(fs(history=filling(50 * GiB, 100 * GiB, hours=0.2, step=60))),
                           StorageConfig())
    assert result.status == Status.OK
    assert result.details["filesystems"][0]["forecast"].startswith("not enough history yet")
    assert result.details["filesystems"][0]["full_in_seconds"] is None


def test_an_unreadable_filesystem_is_unknown_with_its_reason_and_the_worst_leads():
    bad = FsReading("/srv/gone", (SRC_CONFIG,), error="cannot read /srv/gone: No such file or "
                    "directory")
    result = check_storage(snap(fs(free=7 * GiB), bad), StorageConfig())
    assert result.status == Status.UNKNOWN
    assert result.summary == ("/srv/gone: cannot read /srv/gone: No such file or directory; "
                              "/media/drbd1: 7.0 GiB free (7%), at or below 10%")
    assert result.details["filesystems"][1] == {
        "path": "/srv/gone", "sources": [SRC_CONFIG], "status": "unknown",
        "error": "cannot read /srv/gone: No such file or directory"}


def test_nothing_to_watch_is_ok_and_says_why():
    result = check_storage(snap(notes=("no DRBD device mounted here (normal on the secondary)",)),
                           StorageConfig())
    assert result.status == Status.OK
    assert result.summary == ("nothing to watch on this node: no DRBD device mounted here "
                              "(normal on the secondary)")


def test_a_history_problem_is_in_the_details():
    result = check_storage(snap(fs(), problem="could not save: No space left on device"),
                           StorageConfig())
    assert result.status == Status.OK
    assert result.details["history"] == "could not save: No space left on device"


# ---------------------------------------------------------------- config


def test_limits_parse_as_percent_or_amount():
    assert parse_free_bytes("10%") == FreeLimit(percent=10.0)
    assert parse_free_bytes(" 2.5 % ") == FreeLimit(percent=2.5)
    assert parse_free_bytes("5GiB") == FreeLimit(amount=5 * GiB)
    assert parse_free_bytes(1024) == FreeLimit(amount=1024)
    assert parse_free_inodes("1%") == FreeLimit(percent=1.0)
    assert parse_free_inodes(50000) == FreeLimit(amount=50000)
    assert parse_free_bytes("0%").off and parse_free_inodes(0).off


def test_storage_section_from_toml():
    cfg = parse_config('[storage]\npaths = ["/var/hvmail"]\nwarning_free = "20GiB"\n'
                       'critical_free_inodes = 1000\nforecast_window = "6h"\nfor = "5m"\n')
    section = cfg.check(STORAGE)
    assert section.paths == ("/var/hvmail",)
    assert section.warning_free == FreeLimit(amount=20 * GiB)
    assert section.critical_free == FreeLimit(percent=5.0)  # default kept
    assert section.critical_free_inodes == FreeLimit(amount=1000)
    assert (section.forecast_window, section.for_) == (6 * 3600.0, 300.0)


@pytest.mark.parametrize("line,words", [
    ('warning_free = "100%"', "must be below 100%"),
    ('warning_free = "lots"', 'or a percent of the filesystem like "10%"'),
    ("critical_free_inodes = -1", "a count of inodes like 50000"),
    ('critical_free_inodes = "1GiB"', "a count of inodes like 50000"),
    ('forecast_window = "30s"', "a window needs several samples"),
    ('forecast_min = "2h"', "must be shorter than storage.forecast_window"),
    ('critical_full_in = "1d"', "must not be longer than storage.warning_full_in"),
    ('paths = ["/var/hvmail", "queue"]', "must be absolute paths (the daemon runs in /), got "
                                         "'queue'"),
    ('postgres_data = "data"', 'must be an absolute path, or "" to not watch it'),
    ('warning_full_in = "90d"', "a month ahead is no forecast"),
])
def test_bad_storage_values_are_refused_with_file_key_and_line(line, words):
    with pytest.raises(ConfigError) as caught:
        parse_config(f"[storage]\ndrbd_mounts = true\n{line}\n", "/etc/ha-watchdog/config.toml")
    (problem,) = caught.value.problems
    assert problem.path == "/etc/ha-watchdog/config.toml" and problem.line == 3
    assert problem.key == "storage." + line.split(" =")[0]
    assert words in problem.message


def test_a_lone_critical_forecast_is_fine():
    section = parse_config('[storage]\nwarning_full_in = "0s"\ncritical_full_in = "1d"\n'
                           'forecast_window = "1m"\nforecast_min = "5s"\n').check(STORAGE)
    assert (section.warning_full_in, section.critical_full_in) == (0.0, 86400.0)


def test_storage_is_a_backup_check_name():
    cfg = parse_config('[backup]\nchecks = ["replay_lag", "storage"]\n')
    assert cfg.backup.checks == ("replay_lag", "storage")


# ---------------------------------------------------------------- metrics


def test_metric_families_per_path():
    history = filling(30 * GiB, 12 * GiB)
    result = check_storage(snap(fs(free=30 * GiB, history=history),
                                fs("/srv/btrfs", inodes=0, free_inodes=0, sources=(SRC_CONFIG,)),
                                FsReading("/gone", (SRC_CONFIG,), error="cannot read /gone: x")),
                           StorageConfig())
    got = {f.name: dict(f.samples) for f in metric_families(result)}
    assert got["ha_watchdog_storage_free_bytes"] == {("/media/drbd1",): 30 * GiB,
                                                     ("/srv/btrfs",): 50 * GiB}
    assert got["ha_watchdog_storage_size_bytes"][("/srv/btrfs",)] == 100 * GiB
    assert got["ha_watchdog_storage_inodes"] == {("/media/drbd1",): 1000}
    assert got["ha_watchdog_storage_free_inodes"] == {("/media/drbd1",): 500}
    assert got["ha_watchdog_storage_full_in_seconds"] == {
        ("/media/drbd1",): pytest.approx(9000)}
    assert got["ha_watchdog_storage_inodes_full_in_seconds"] == {}
    assert all(f.samples == () for f in metric_families(None))


# ---------------------------------------------------------------- alert words


def test_alert_numbers_and_first_step_for_a_filling_disk():
    from watchdog.alerts import advice

    result = check_storage(snap(fs(free=30 * GiB, history=filling(30 * GiB, 12 * GiB)),
                                fs("/srv/ok", sources=(SRC_CONFIG,))), StorageConfig())
    numbers = advice.key_numbers(STORAGE, result.details)
    assert numbers == ["/media/drbd1: 30.0 GiB free of 100.0 GiB (30%), 500 inodes free; "
                       "full in ~2h30m at the rate of the last 2h00m (12.0 GiB/h)"]
    step = advice.first_step(STORAGE, result.details, "mail1", "critical", "fallback")
    assert step.startswith("what grew on /media/drbd1: du -xh --max-depth=2 /media/drbd1")
    assert "greenarrow disk_usage --details" in step


def test_alert_first_steps_for_inodes_wal_and_an_unreadable_path():
    from watchdog.alerts import advice
    from watchdog.probes.storage import SRC_PGWAL

    def step(*filesystems):
        result = check_storage(snap(*filesystems), StorageConfig())
        return advice.first_step(STORAGE, result.details, "mail1", result.status.label, "fb")

    assert step(fs(free_inodes=3)).startswith(
        "/media/drbd1 runs out of inodes (many small files): du --inodes -x /media/drbd1")
    wal = step(fs("/data/pg_wal", free=GiB, sources=(SRC_PGWAL,)))
    assert "pg_drop_replication_slot('name')" in wal and "pg_stat_archiver" in wal
    assert "never delete files in pg_wal/pg_xlog by hand" in wal
    gone = step(FsReading("/srv/nfs", (SRC_CONFIG,), error="cannot read /srv/nfs: no answer "
                          "within 5s (a hung mount?)"), fs())
    assert gone.startswith("/srv/nfs could not be read on mail1: is it mounted (findmnt")
    # Odd details (from a damaged state file) cost words, never the alert.
    assert advice.first_step(STORAGE, {"filesystems": [{"path": 3}, "x"]}, "n", "critical",
                             "fb") == "fb"
    assert advice.key_numbers(STORAGE, {"filesystems": "x", "history": "h"}) == [
        "forecast history: h"]


def test_registry_first_look_is_the_runbook_line():
    from watchdog.checks.registry import find

    look = find(STORAGE).first_look
    assert look.startswith("df -h <path> and df -i <path>") and "replication slot" in look


def test_nagios_perfdata_per_filesystem():
    from watchdog.model import Report, Role
    from watchdog.nagios import render_nagios

    result = check_storage(snap(fs(free=30 * GiB), fs("/srv/btrfs", inodes=0, free_inodes=0),
                                FsReading("/gone", (SRC_CONFIG,), error="cannot read /gone: x")),
                           StorageConfig())
    line = render_nagios(Report("mail1", Role.PRIMARY, [result]))
    assert line.split(" | ", 1)[1] == " ".join([
        f"'/media/drbd1 free'={30 * GiB}B;;;0;{100 * GiB}",
        "'/media/drbd1 free inodes'=500;;;0;1000",
        f"'/srv/btrfs free'={50 * GiB}B;;;0;{100 * GiB}"])  # no inode count, nothing for /gone


def test_notes_follow_the_numbers_when_all_is_well():
    result = check_storage(snap(fs(), notes=("no DRBD device mounted here (normal on the "
                                             "secondary)",)), StorageConfig())
    assert result.summary == ("/media/drbd1 50.0 GiB free (50%); no DRBD device mounted here "
                              "(normal on the secondary)")


# ---------------------------------------------------------------- through the runner


def test_a_backup_window_listing_storage_relaxes_its_forecast_in_a_cycle():
    from datetime import datetime, timezone
    from pathlib import Path

    from watchdog.runner import Probes, once_cycle

    drbd = (Path(__file__).parent
            / "fixtures/drbd/proc-drbd-8.4-standalone-secondary-peer-outdated.txt")
    now = datetime(2024, 6, 3, 1, 0, tzinfo=timezone.utc).timestamp()  # Monday 01:00 UTC
    slower = snap(fs(free=30 * GiB, history=filling(30 * GiB, 3 * GiB)))  # full in 10h

    def probes():
        def pg(cfg):
            raise ConnectionError("not in this test")

        return Probes(postgres=pg, storage=lambda cfg: slower)

    def storage(extra):
        cfg = parse_config(f'[drbd]\nformat = "proc"\npath = "{drbd}"\n' + extra)
        cycle = once_cycle(cfg, probes(), wall=lambda: now)
        (result,) = [c for c in cycle.report.checks if c.name == STORAGE]
        return result

    window = '[[backup_windows]]\nstart = "00:00"\nend = "06:00"\nchecks = ["storage"]\n'
    assert storage("").status == Status.WARNING
    relaxed = storage(window)
    assert relaxed.status == Status.OK and relaxed.details["relaxed"] is True
    other = window.replace('["storage"]', '["replay_lag"]')
    assert storage(other).status == Status.WARNING  # only the checks a window lists


# ---------------------------------------------------------------- odd input (Hypothesis)

_floats = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_floats, _floats), max_size=30), _floats, _floats)
def test_the_forecast_never_raises_and_never_says_a_negative_time(samples, now, free):
    fc = time_to_full(samples, now, free, 7200.0, 60.0)
    assert fc.seconds is None or fc.seconds >= 0


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.one_of(_json, st.fixed_dictionaries({"version": st.just(1), "filesystems": _json}),
                 st.fixed_dictionaries({"version": st.just(1), "filesystems": st.dictionaries(
                     st.text(max_size=5), st.fixed_dictionaries(
                         {"size": _json, "samples": st.lists(st.lists(_json, max_size=4),
                                                             max_size=3)}), max_size=3)})))
def test_any_history_document_is_taken_whole_or_refused_with_a_reason(doc):
    from watchdog.probes.storage import _parse_history

    data, why = _parse_history(doc)
    assert (data == {}) if why is not None else isinstance(data, dict)
    history = History(None)
    history._data = data  # what _load keeps: then updates go on from it
    kept, problem = history.update([("/x", 100, 50, 5)], NOW, 3600)
    assert problem is None and kept["/x"][-1] == (NOW, 50, 5)


def test_a_path_on_a_filesystem_without_space_is_unknown_not_ok():
    result = check_storage(snap(fs("/proc", size=0, free=0, inodes=0, free_inodes=0)),
                           StorageConfig())
    assert result.status == Status.UNKNOWN
    assert result.summary == "/proc: /proc reports no space at all (not a disk: /proc, sysfs?)"
