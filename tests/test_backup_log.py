"""backup_log: the pure check and the log parser (real files: test_backup_log_probe.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.alerts.advice import first_step, key_numbers
from watchdog.checks.backup_log import (
    ERROR_MARKER,
    FAILURE,
    FAILURE_LINE,
    MAX_QUOTE,
    MAX_QUOTED,
    SUCCESS,
    SUCCESS_LINE,
    BackupLogConfig,
    check_backup_log,
    is_decoration,
    metric_families,
    newest_run,
)
from watchdog.config import ConfigError, parse_config
from watchdog.model import Report, Role, Status
from watchdog.nagios import render_nagios
from watchdog.probes.backup_log import DEFAULT_PATH, BackupLogSnapshot

NOW = 1_800_000_000.0
HOUR = 3600.0
PATH = "/var/backup/greenarrow-backup.log"
BANNER = "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!! WARNING !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
# What GreenArrow's backup prints after an error it detects (its "Restoring Backups" page).
WARNING_BLOCK = [
    BANNER,
    "There was an error running backups. Please review the above output for",
    "details and contact GreenArrow technical support if you have any questions.",
    BANNER,
]
GOOD = ["Backing up /var/hvmail/control", "Dumping database greenarrow", SUCCESS_LINE]
BAD = (["Backing up /var/hvmail/control", "Dumping database greenarrow",
        'pg_dump: error: connection to server on socket "/tmp/.s.PGSQL.5432" failed']
       + WARNING_BLOCK + ["Backing up /var/hvmail/log"] + [FAILURE_LINE])
CFG = BackupLogConfig()
PATTERNS = (CFG.success, CFG.failure, CFG.error_markers)


def snap(lines=None, age: float = 60.0, configured: bool = False, **kw) -> BackupLogSnapshot:
    tail = "\n".join(lines) + "\n" if lines is not None else ""
    values = dict(path=PATH, configured=configured, taken_at=NOW, exists=True,
                  size=len(tail), mtime=NOW - age, tail=tail)
    values.update(kw)
    return BackupLogSnapshot(**values)


def run_of(lines, cut=False):
    return newest_run("\n".join(lines) + "\n", cut, *PATTERNS)


# ---------------------------------------------------------------- outcomes


def test_a_good_run_is_ok_with_its_age_and_metrics():
    result = check_backup_log(snap(GOOD, age=3 * HOUR), CFG)
    assert result.status == Status.OK
    assert "succeeded 3h" in result.summary and PATH in result.summary
    assert result.details["outcome"] == SUCCESS and result.details["age_seconds"] == 3 * HOUR
    families = {f.name: f for f in metric_families(result)}
    assert families["ha_watchdog_backup_log_age_seconds"].samples == (((), 3 * HOUR),)
    assert dict(families["ha_watchdog_backup_log_outcome"].samples) == {
        ("success",): 1, ("failure",): 0, ("running",): 0, ("unfinished",): 0}


def test_a_good_run_older_than_max_age_is_a_warning():
    assert check_backup_log(snap(GOOD, age=26 * HOUR - 1), CFG).status == Status.OK
    result = check_backup_log(snap(GOOD, age=27 * HOUR), CFG)
    assert result.status == Status.WARNING
    assert "no backup since" in result.summary and "limit 1d02h" in result.summary


def test_a_failed_run_is_critical_and_quotes_the_first_error():
    result = check_backup_log(snap(BAD, age=HOUR), CFG)
    assert result.status == Status.CRITICAL
    assert result.details["outcome"] == FAILURE
    assert result.details["errors_reported"] == 1
    # The lines above the banner (where the script prints what failed), then the marker.
    assert result.details["error_lines"] == [
        "Dumping database greenarrow",
        'pg_dump: error: connection to server on socket "/tmp/.s.PGSQL.5432" failed',
        "There was an error running backups. Please review the above output for"]
    # The title's first clause names the failing line, not the banner or the context.
    assert result.details["first_error"] == result.details["error_lines"][1]
    assert result.summary.startswith(
        'the newest backup failed 1h00m ago: "pg_dump: error: connection to server on socket')
    assert FAILURE_LINE in result.summary and PATH in result.summary


def test_a_failure_without_markers_quotes_the_runs_last_lines():
    result = check_backup_log(snap(["step 1", "tar: /data: Cannot open", FAILURE_LINE]), CFG)
    assert result.status == Status.CRITICAL
    assert result.details["error_lines"] == ["step 1", "tar: /data: Cannot open"]
    assert result.details["first_error"] == "tar: /data: Cannot open"


def test_a_run_still_writing_is_ok_until_max_run_then_critical():
    lines = GOOD[:2]
    running = check_backup_log(snap(lines, age=60), CFG)
    assert running.status == Status.OK and running.details["outcome"] == "running"
    assert "a backup is running" in running.summary
    dead = check_backup_log(snap(lines, age=9 * HOUR), CFG)
    assert dead.status == Status.CRITICAL and dead.details["outcome"] == "unfinished"
    assert dead.summary.startswith("the newest backup did not finish: its log has been silent "
                                   "for 9h00m (limit 8h00m")
    assert '"Dumping database greenarrow"' in dead.summary


def test_a_running_backup_that_reported_an_error_is_a_warning():
    result = check_backup_log(snap(BAD[:-2], age=60), CFG)
    assert result.status == Status.WARNING
    assert "reported 1 error(s) so far" in result.summary


def test_an_empty_log_is_a_run_starting_or_a_dead_one():
    assert check_backup_log(snap([], age=10), CFG).status == Status.OK
    result = check_backup_log(snap([], age=10 * HOUR), CFG)
    assert result.status == Status.CRITICAL and "is empty" in result.summary


def test_nul_bytes_at_the_end_are_named_as_a_crash():
    s = snap(GOOD[:2], age=10 * HOUR, nul_bytes=True)
    s = BackupLogSnapshot(**{**s.__dict__, "tail": s.tail + "\x00" * 4096})
    result = check_backup_log(s, CFG)
    assert result.status == Status.CRITICAL
    assert "NUL bytes" in result.summary and result.details["nul_bytes"] is True


def test_the_default_log_missing_is_not_configured_here_without_metrics():
    missing = BackupLogSnapshot(path=DEFAULT_PATH, configured=False, taken_at=NOW)
    result = check_backup_log(missing, CFG)
    assert result.status == Status.OK and result.summary.startswith("not configured here")
    assert all(not f.samples for f in metric_families(result))


def test_a_configured_log_missing_is_a_warning():
    missing = BackupLogSnapshot(path="/srv/backup.log", configured=True, taken_at=NOW)
    result = check_backup_log(missing, BackupLogConfig(path="/srv/backup.log"))
    assert result.status == Status.WARNING and "does not exist" in result.summary


def test_an_unreadable_log_is_unknown_with_the_reason():
    odd = snap(None, error="is a FIFO, not a regular file", size=None, mtime=None)
    result = check_backup_log(odd, CFG)
    assert result.status == Status.UNKNOWN
    assert "is a FIFO" in result.summary and result.details["error"].startswith("is a FIFO")


def test_disabled_is_ok_and_says_so():
    result = check_backup_log(snap(BAD), BackupLogConfig(enabled=False))
    assert result.status == Status.OK and "enabled = false" in result.summary


def test_a_mtime_in_the_future_counts_as_now():
    result = check_backup_log(snap(GOOD, age=-600), CFG)
    assert result.status == Status.OK and result.details["age_seconds"] == 0.0


def test_another_sites_patterns():
    cfg = BackupLogConfig(success=["backup OK"], failure=["backup FAILED"],
                          error_markers=["ERROR"], error_context=0)
    good = check_backup_log(snap(["start", "backup OK rc=0"]), cfg)
    assert good.status == Status.OK
    bad = check_backup_log(snap(["start", "ERROR disk full", "x", "backup FAILED rc=1"]), cfg)
    assert bad.status == Status.CRITICAL and bad.details["error_lines"] == ["ERROR disk full"]
    # GreenArrow's lines mean nothing there.
    assert check_backup_log(snap([SUCCESS_LINE], age=9 * HOUR), cfg).status == Status.CRITICAL


# ---------------------------------------------------------------- the parser


def test_only_the_newest_run_counts_in_an_appended_log():
    run = run_of(BAD + GOOD)
    assert run.outcome == SUCCESS and run.error_lines == () and run.lines == 2
    run = run_of(GOOD + BAD)
    assert run.outcome == FAILURE and run.errors_reported == 1
    run = run_of(BAD + ["Backing up /var/hvmail/control"])  # a new run started
    assert run.outcome is None and run.errors_reported == 0


def test_a_line_saying_both_counts_as_a_failure():
    run = newest_run("done\n", False, ["done"], ["done"])
    assert run.outcome == FAILURE


def test_a_cut_tail_drops_its_partial_first_line():
    tail = "ed. See above.\nstep\n"  # the end of a failure line, cut by the tail read
    assert newest_run(tail, True, *PATTERNS).last_line == "step"
    assert newest_run(FAILURE_LINE[-14:] + "\n", True, *PATTERNS).outcome is None


def test_a_truncated_last_line_is_no_outcome():
    run = newest_run("step\nThe backup is fin", False, *PATTERNS)
    assert run.outcome is None and run.last_line == "The backup is fin"


def test_windows_line_ends_and_trailing_blank_lines():
    run = newest_run("a\r\n" + SUCCESS_LINE + "\r\n\r\n\n  \n", False, *PATTERNS)
    assert run.outcome == SUCCESS


def test_decoration_lines():
    assert is_decoration(BANNER) and is_decoration("==========") and is_decoration("")
    assert not is_decoration("Error: disk full") and not is_decoration("pg_dump: error")


def _valid_tail(lines):
    return "\n".join(lines)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
_LINE = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x85"),
                max_size=120)


@settings(max_examples=300, deadline=None)
@given(tail=_TEXT, cut=st.booleans(), context=st.integers(0, 10))
def test_any_text_gives_a_bounded_safe_run(tail, cut, context):
    run = newest_run(tail, cut, *PATTERNS, context=context)
    assert len(run.error_lines) <= MAX_QUOTED
    for line in [run.last_line or ""] + list(run.error_lines):
        assert len(line) <= MAX_QUOTE
        assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in line)
        assert line == line.strip()
    result = check_backup_log(snap(None, tail=tail, cut=cut), CFG)
    assert result.status in tuple(Status)


@settings(max_examples=200, deadline=None)
@given(output=st.lists(_LINE, max_size=30), ending=st.sampled_from([SUCCESS_LINE, FAILURE_LINE]),
       blank=st.sampled_from(["", "\n", "\n\n", "\r\n", "\n   \n"]))
def test_the_last_line_decides_whatever_came_before(output, ending, blank):
    output = [line for line in output if ERROR_MARKER not in line
              and SUCCESS_LINE not in line and FAILURE_LINE not in line]
    run = newest_run("\n".join(output + [ending]) + blank, False, *PATTERNS)
    assert run.outcome == (SUCCESS if ending == SUCCESS_LINE else FAILURE)
    assert run.last_line == ending
    # Without an outcome line at the end there is no outcome, whatever the output held.
    assert newest_run("\n".join(output + [ending, "next run"]), False, *PATTERNS).outcome is None


@settings(max_examples=100, deadline=None)
@given(runs=st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=6))
def test_error_lines_come_from_the_newest_run_only(runs):
    lines = []
    for index, (good, errors) in enumerate(runs):
        lines.append(f"run {index} starts")
        for e in range(errors):
            lines += [f"run {index} error {e}"] + WARNING_BLOCK
        lines.append(SUCCESS_LINE if good else FAILURE_LINE)
    run = run_of(lines)
    good, errors = runs[-1]
    last = len(runs) - 1
    assert run.outcome == (SUCCESS if good else FAILURE)
    assert run.errors_reported == errors
    assert all(line.startswith(f"run {last} ") or ERROR_MARKER in line
               for line in run.error_lines)


# ---------------------------------------------------------------- config


def test_config_defaults_and_keys():
    cfg = parse_config('[backup_log]\npath = "/srv/b.log"\nmax_age = "2d"\nmax_run = "3h"\n'
                       'success = ["OK"]\nfailure = ["FAIL"]\nerror_markers = []\n')
    section = cfg.check("backup_log")
    assert section.log_path == "/srv/b.log" and section.max_age == 2 * 86400
    assert section.error_markers == () and section.for_ == 0.0
    assert parse_config("").check("backup_log").log_path == DEFAULT_PATH
    assert parse_config('[backup]\nchecks = ["replay_lag", "backup_log"]\n').backup.checks == (
        "replay_lag", "backup_log")


@pytest.mark.parametrize("text, key, line, words", [
    ('[backup_log]\npath = "backup.log"\n', "backup_log.path", 2, "absolute path"),
    ('[backup_log]\nsuccess = []\n', "backup_log.success", 2, "at least one line"),
    ('[backup_log]\nsuccess = ["x"]\nfailure = ["x"]\n', "backup_log.failure", 3,
     "also in success"),
    ('[backup_log]\n\nmax_age = "4h"\n', "backup_log.max_age", 3, "longer than max_run"),
    ('[backup_log]\nmax_run = "2d"\n', "backup_log.max_run", 2, "shorter than max_age"),
    ('[backup_log]\nmax_age = "10s"\n', "backup_log.max_age", 2, "at least 1m"),
    ('[backup_log]\nerror_context = 50\n', "backup_log.error_context", 2, "at most 10"),
])
def test_values_that_cannot_work_are_refused_with_file_key_and_line(text, key, line, words):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "/etc/ha-watchdog/config.toml")
    problem = caught.value.problems[0]
    assert (problem.path, problem.key, problem.line) == (
        "/etc/ha-watchdog/config.toml", key, line)
    assert words in problem.message


# ---------------------------------------------------------------- alert words


def test_alert_numbers_and_first_step_fit_the_failure():
    failed = check_backup_log(snap(BAD, age=HOUR), CFG).details
    numbers = key_numbers("backup_log", failed)
    assert numbers[0] == "newest run: failure, log last written 1h00m ago"
    assert any(n.startswith("first error: ") and "pg_dump: error" in n for n in numbers)
    step = first_step("backup_log", failed, "mail1", "critical", "fallback")
    assert f"tail -n 60 {PATH}" in step and "re-run the backup" in step
    stale = check_backup_log(snap(GOOD, age=30 * HOUR), CFG).details
    assert "cron" in first_step("backup_log", stale, "mail1", "warning", "fallback")
    dead = check_backup_log(snap(GOOD[:2], age=10 * HOUR), CFG).details
    assert "the run died" in first_step("backup_log", dead, "mail1", "critical", "fallback")
    missing = check_backup_log(BackupLogSnapshot("/srv/b.log", True, NOW),
                               BackupLogConfig(path="/srv/b.log")).details
    assert "[backup_log] path" in first_step("backup_log", missing, "mail1", "warning", "x")
    # Odd details (from a damaged state file) cost words, never the alert.
    assert key_numbers("backup_log", {"outcome": 5, "error_lines": "x"}) == []


def test_nagios_perfdata_has_the_backup_age_against_max_age():
    result = check_backup_log(snap(GOOD, age=HOUR), CFG)
    line = render_nagios(Report("mail1", Role.PRIMARY, [result]))
    assert line.startswith("HA-WATCHDOG OK") and line.endswith("| backup_age=3600s;93600;;0")
    missing = check_backup_log(BackupLogSnapshot(DEFAULT_PATH, False, NOW), CFG)
    assert "|" not in render_nagios(Report("mail1", Role.PRIMARY, [missing]))
