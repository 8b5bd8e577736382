"""`backup_log` (both roles): did the nightly backup run, and did it succeed?

GreenArrow's backup script writes its output to /var/backup/greenarrow-backup.log. Its
"Restoring Backups" page: a good run's last line is "The backup is finished. No errors were
detected.", a failed run's "Error(s) were detected. See above.", and after each error it
detects the script prints a banner with "There was an error running backups." in it. So
the newest run's outcome is the log's last line, and its time is the log's modification
time (the lines carry no time stamps):
- last line a success line: OK, or WARNING once it is older than `max_age` (26h: a nightly
  backup that did not run last night);
- last line a failure line: CRITICAL, quoting the first error's lines (the lines above the
  first error marker, which is where the script prints what failed);
- neither (a run still writing, or one that died: killed, rebooted, out of disk): a run in
  progress while the log was written within `max_run`, WARNING if it already reported an
  error; CRITICAL "did not finish" once the log has been silent longer than that.
Other sites' backups: `path` and the patterns are configurable. Patterns are plain text
matched anywhere in a line (case-sensitive), not regular expressions: a pattern can be
neither invalid nor slow (this function runs in the daemon's loop, without a deadline).

On by default only where the log exists: without `path` a missing GreenArrow log is "not
configured here" (OK, no metrics); a `path` given in the config that does not exist is a
WARNING (no backup wrote it: wrong path, or the backup never ran). A log that cannot be read
is UNKNOWN with the reason. Pure: the snapshot (probes.backup_log) holds the time it was
taken, so the age needs no clock here.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from watchdog.config import CheckTiming, check_section
from watchdog.config.schema import _dur, _f
from watchdog.families import Family, detail, gauge
from watchdog.model import BACKUP_LOG, CheckResult, Status
from watchdog.nagios import fmt, num, perf
from watchdog.probes.backup_log import DEFAULT_PATH, BackupLogSnapshot
from watchdog.units import format_duration

SUCCESS_LINE = "The backup is finished. No errors were detected."
FAILURE_LINE = "Error(s) were detected. See above."
ERROR_MARKER = "There was an error running backups."

# Outcomes of the newest run (public: JSON `outcome`, the metric's `outcome` label).
SUCCESS = "success"
FAILURE = "failure"
RUNNING = "running"
UNFINISHED = "unfinished"
OUTCOMES = (SUCCESS, FAILURE, RUNNING, UNFINISHED)

_DEFAULT_MAX_RUN = 8 * 3600.0
MAX_QUOTE = 200  # characters of one quoted log line
MAX_QUOTED = 6  # quoted lines at most


@check_section(for_="0s", recover_for="0s", unknown_as="warning")
class BackupLogConfig(CheckTiming):
    """[backup_log]: see README "The checks". A backup's outcome is a fact, not a flicker:
    no debounce by default."""

    enabled: bool = _f("bool", True)
    # None: GreenArrow's log, judged only where it exists. Set: it must exist.
    path: Optional[str] = _f("str", None, optional=True)
    max_age: float = _dur("26h", "1m", "30d", why_low="a backup takes longer than that",
                          why_high="a month without a backup is no backup")
    max_run: float = _dur("8h", "1m", "7d", why_low="a backup writes its log in bursts",
                          why_high="a run silent for a week is dead")
    success: Tuple[str, ...] = _f("strlist", (SUCCESS_LINE,),
                                  empty="must name at least one line a good run ends with")
    failure: Tuple[str, ...] = _f("strlist", (FAILURE_LINE,),
                                  empty="must name at least one line a failed run ends with")
    error_markers: Tuple[str, ...] = _f("strlist", (ERROR_MARKER,))
    error_context: int = _f("int", 2, minimum=0, maximum=10)

    def problems(self) -> List[Tuple[str, str]]:
        """Values that parse but cannot work (watchdog.config.load reports them located)."""
        found = []
        if self.path is not None and not os.path.isabs(self.path):
            found.append(("path", f"must be an absolute path, got {self.path!r} (the daemon "
                                  "runs from /)"))
        both = sorted(set(self.success) & set(self.failure))
        if both:
            found.append(("failure", f"{both[0]!r} is also in success: a line cannot say both"))
        if self.max_run >= self.max_age:
            # Named where the author most likely changed something (a key left out has no line).
            if self.max_run != _DEFAULT_MAX_RUN:
                found.append(("max_run", f"must be shorter than max_age "
                                         f"({format_duration(self.max_age)}): a run still "
                                         "writing would hide a missed backup"))
            else:
                found.append(("max_age", f"must be longer than max_run "
                                         f"({format_duration(self.max_run)}): a run still "
                                         "writing would hide a missed backup"))
        return found

    @property
    def log_path(self) -> str:
        return self.path if self.path is not None else DEFAULT_PATH


# ---------------------------------------------------------------- the log's newest run


@dataclass(frozen=True)
class Run:
    """The newest run as its lines show it. outcome: SUCCESS, FAILURE or None (no outcome
    line at the end: still writing, or died). last_line: the last non-empty line.
    error_lines: the first error's lines (quoted in alerts); first_error: the one of them
    that most likely says what failed (the line just above the first marker, where
    GreenArrow's script printed the failing command's message). errors_reported: how many
    error markers the run printed. lines: the run's non-empty lines seen in the tail."""

    outcome: Optional[str]
    last_line: Optional[str]
    error_lines: Tuple[str, ...] = ()
    first_error: Optional[str] = None
    errors_reported: int = 0
    lines: int = 0


_BREAK = re.compile(r"\r\n?|\n")
# Printed into alerts and logs: no control characters (terminal escapes, fake lines).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_WORD = re.compile(r"[^\W_]+")


def clean(line: str) -> str:
    """One log line made safe to quote: control characters out, bounded, trimmed."""
    text = _CONTROL.sub("", line).strip()
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 3] + "..."


def is_decoration(line: str) -> bool:
    """A banner or rule line (`!!!!! WARNING !!!!!`, `=====`): not worth quoting."""
    words = _WORD.findall(line)
    if not words:
        return True
    marks = len(re.sub(r"[\w\s]", "", line))
    return len(words) == 1 and marks >= 2 * len(words[0])


def _matches(text: str, patterns: Sequence[str]) -> bool:
    return any(p in text for p in patterns)


def newest_run(tail: str, cut: bool, success: Sequence[str], failure: Sequence[str],
               markers: Sequence[str] = (), context: int = 2) -> Run:
    """The newest run in the log's tail. `cut`: the tail starts inside the file, so its
    first line may be partial and is dropped. A line matching both a failure and a
    success pattern counts as a failure (never a false OK)."""
    raw = _BREAK.split(tail)
    if cut:
        raw = raw[1:]
    lines = [clean(line) for line in raw]
    lines = [line for line in lines if line]
    if not lines:
        return Run(None, None)

    def outcome_of(text: str) -> Optional[str]:
        if _matches(text, failure):
            return FAILURE
        if _matches(text, success):
            return SUCCESS
        return None

    last = lines[-1]
    outcome = outcome_of(last)
    end = len(lines) - 1 if outcome is not None else len(lines)
    start = 0
    for index in range(end - 1, -1, -1):  # the previous run's outcome line ends it
        if outcome_of(lines[index]) is not None:
            start = index + 1
            break
    run = lines[start:end]
    marked = [i for i, line in enumerate(run) if markers and _matches(line, markers)]
    quoted: List[str] = []
    key: Optional[str] = None
    if marked:
        first = marked[0]
        above = _above(run, first, context)
        quoted = above + [run[first]]
        key = above[-1] if above else run[first]
    elif outcome == FAILURE:
        quoted = _above(run, len(run), max(context, 1))
        key = quoted[-1] if quoted else None
    return Run(outcome, last, tuple(quoted[-MAX_QUOTED:]), key, len(marked), len(run))


def _above(run: Sequence[str], index: int, count: int) -> List[str]:
    """Up to `count` lines just above `run[index]`, banners skipped, in file order."""
    found: List[str] = []
    for line in reversed(run[:index]):
        if len(found) >= count:
            break
        if not is_decoration(line):
            found.append(line)
    return list(reversed(found))


# ---------------------------------------------------------------- the check


def _when(epoch: Optional[float]) -> str:
    if epoch is None:
        return "at an unknown time"
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))
    except (OverflowError, OSError, ValueError):
        return "at an impossible time"


def _quote(lines: Sequence[str]) -> str:
    return " / ".join(f'"{line}"' for line in lines)


def check_backup_log(snap: BackupLogSnapshot, cfg: BackupLogConfig) -> CheckResult:
    """The verdict on the newest backup run (see the module docstring)."""
    path = snap.path
    details: Dict[str, Any] = {"path": path, "configured": snap.configured,
                               "exists": snap.exists}
    if not cfg.enabled:
        return CheckResult(BACKUP_LOG, Status.OK, "off ([backup_log] enabled = false)",
                           {"enabled": False})
    if not snap.exists:
        if not snap.configured:
            return CheckResult(
                BACKUP_LOG, Status.OK,
                f"not configured here: no {path} (set [backup_log] path if the backup "
                "logs elsewhere)", details)
        return CheckResult(
            BACKUP_LOG, Status.WARNING,
            f"{path} does not exist: no backup has written it (a wrong [backup_log] path, "
            "or the backup never ran on this node)", details)
    if snap.error is not None:
        details["error"] = snap.error
        return CheckResult(BACKUP_LOG, Status.UNKNOWN,
                           f"cannot read the backup log {path}: {snap.error}", details)

    run = newest_run(snap.tail, snap.cut, cfg.success, cfg.failure, cfg.error_markers,
                     cfg.error_context)
    age = max(0.0, snap.taken_at - snap.mtime) if snap.mtime is not None else None
    written = _when(snap.mtime)
    ago = f"{format_duration(age)} ago" if age is not None else "at an unknown time"
    if run.outcome is not None:
        outcome = run.outcome
    else:
        outcome = RUNNING if age is not None and age <= cfg.max_run else UNFINISHED
    details.update({
        "outcome": outcome, "age_seconds": None if age is None else round(age, 3),
        "written_at": snap.mtime, "size_bytes": snap.size, "last_line": run.last_line,
        "error_lines": list(run.error_lines), "first_error": run.first_error,
        "errors_reported": run.errors_reported,
        "max_age": cfg.max_age, "max_run": cfg.max_run,
    })
    if snap.nul_bytes:
        details["nul_bytes"] = True
    # The first clause is what an alert's title shows: the failing line comes first.
    first_error = f": {_quote([run.first_error])}" if run.first_error else ""

    if outcome == FAILURE:
        return CheckResult(
            BACKUP_LOG, Status.CRITICAL,
            f"the newest backup failed {ago}{first_error}; {path} ends with "
            f"{_quote([run.last_line or ''])} (written {written})", details)
    if outcome == SUCCESS:
        if age is not None and age > cfg.max_age:
            return CheckResult(
                BACKUP_LOG, Status.WARNING,
                f"no backup since {written} ({ago}, limit {format_duration(cfg.max_age)}): "
                f"the last run succeeded but none ran since ({path})", details)
        return CheckResult(BACKUP_LOG, Status.OK,
                           f"the newest backup succeeded {ago} ({written}, {path})", details)
    if outcome == RUNNING:
        if run.errors_reported:
            return CheckResult(
                BACKUP_LOG, Status.WARNING,
                f"a backup is running and has reported {run.errors_reported} error(s) so "
                f"far{first_error}; log written {ago} ({path})", details)
        return CheckResult(BACKUP_LOG, Status.OK,
                           f"a backup is running (log written {ago}, {path})", details)
    if run.last_line is None:
        ending = "is empty"
    else:
        ending = f"ends with {_quote([run.last_line])}, not an outcome line"
    crash = ", ending in NUL bytes: cut short by a crash?" if snap.nul_bytes else ""
    reported = f"; it reported an error{first_error}" if run.errors_reported else ""
    return CheckResult(
        BACKUP_LOG, Status.CRITICAL,
        f"the newest backup did not finish: its log has been silent for "
        f"{format_duration(age) if age is not None else 'an unknown time'} (limit {format_duration(cfg.max_run)} for a running "
        f"backup: killed, rebooted or out of disk?){crash}; {path} {ending} (written "
        f"{written}){reported}", details)


def metric_families(result: Optional[CheckResult]) -> List[Family]:
    """Age of the log's last write and the newest run's outcome (absent with no log)."""
    outcome = result.details.get("outcome") if result is not None else None
    outcomes = [((name,), 1 if name == outcome else 0) for name in OUTCOMES] \
        if outcome in OUTCOMES else []
    return [
        gauge("backup_log_age_seconds",
              "Seconds since the backup log was last written (the newest run's time)", (),
              detail(result, "age_seconds")),
        gauge("backup_log_outcome",
              "The newest backup run's outcome: 1 for the current one", ("outcome",),
              outcomes),
    ]


def perfdata(check: CheckResult) -> List[str]:
    """`--once --nagios` performance data: the newest run's age (absent without a log)."""
    age = num(check.details.get("age_seconds"))
    if age is None:
        return []
    return [perf("backup_age", age, "s", fmt(num(check.details.get("max_age"))))]
