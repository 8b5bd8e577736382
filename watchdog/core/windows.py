"""Backup relaxation: configured backup windows and detected running backups.

Why: a nightly pg_dump or pg_basebackup makes the standby fall behind and that is expected;
paging for it every night teaches people to ignore pages. During a `[[backup_windows]]`
window, or while the PostgreSQL probe sees a backup session (`[backup] detect`), the listed
checks run with relaxed limits. Always with a ceiling: the relaxation ends after
`backup.max_duration` even if the window or the backup goes on, and the check's hard limit
(e.g. replay_lag.backup_critical) alerts even while relaxed.

Pure: `now` is a parameter (epoch seconds). A window is evaluated in its own time zone, so
DST changes move it with the local clock; a window that crosses midnight (23:00-02:00)
belongs to the day it starts. The only state is a small JSON dict (`memory`) remembering
when the current run of detected backups was first seen (and last seen: a sighting from
before a long stop of the daemon is not trusted), so max_duration holds across cycles and
restarts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Dict, List, MutableMapping, NamedTuple, Optional, Sequence, Tuple

from watchdog.config import DAYS, BackupWindow, Config, load_timezone
from watchdog.units import format_duration

_MEMORY_KEY = "detected_since"
_MEMORY_SEEN = "detected_last_seen"
# A remembered sighting older than this (the daemon was stopped meanwhile) is not trusted to
# be the same run of backups: at least this long, or a few cycles.
_MEMORY_MIN_GAP = 300.0
_MEMORY_CYCLES = 3


class BackupSeen(NamedTuple):
    """A backup session the PostgreSQL probe saw this cycle."""

    pid: Optional[int]
    application_name: str
    started: Optional[float]  # epoch seconds (backend_start), None when not known


@dataclass(frozen=True)
class Relaxation:
    """Whether a check runs with relaxed limits now, and why.

    active: relaxed now. reason: what relaxes (or, when expired, what stopped relaxing and
    why). since: when the relaxation began (epoch). expired: a window or backup is still
    going on but has passed backup.max_duration, so normal limits are back.
    """

    active: bool = False
    reason: str = ""
    since: Optional[float] = None
    expired: bool = False

    def to_json(self) -> Dict[str, Any]:
        return {
            "active": self.active,
            "reason": self.reason,
            "since": self.since,
            "expired": self.expired,
        }

    @classmethod
    def from_json(cls, data: Any) -> Relaxation:
        if not isinstance(data, dict):
            return cls()
        since = data.get("since")
        if isinstance(since, bool) or not isinstance(since, (int, float)):
            since = None
        return cls(
            active=bool(data.get("active", False)),
            reason=str(data.get("reason", "")),
            since=None if since is None else float(since),
            expired=bool(data.get("expired", False)),
        )


NOT_RELAXED = Relaxation()


def as_backup_seen(item: Any) -> Optional[BackupSeen]:
    """Normalise what a probe reports: a (pid, application_name, started) tuple or an object
    with pid / application_name / started (or started_epoch, backend_start: epoch or an
    aware datetime). Garbage gives None rather than an exception."""
    if isinstance(item, (tuple, list)):
        if len(item) < 2:
            return None
        pid, name = item[0], item[1]
        started = item[2] if len(item) > 2 else None
    else:
        pid = getattr(item, "pid", None)
        name = getattr(item, "application_name", None)
        if name is None:
            name = getattr(item, "name", "")
        started = None
        for attr in ("started", "started_epoch", "backend_start", "since"):
            started = getattr(item, attr, None)
            if started is not None:
                break
    if isinstance(started, datetime):
        started = started.timestamp() if started.tzinfo is not None else None
    if (
        isinstance(started, bool)
        or not isinstance(started, (int, float))
        or not math.isfinite(started)
    ):
        started = None
    if isinstance(pid, bool) or not isinstance(pid, int):
        pid = None
    return BackupSeen(pid, str(name or "backup"), None if started is None else float(started))


def format_clock(value: Any) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


def describe_window(window: BackupWindow) -> str:
    """`backup window sat,sun 23:00-02:00 Europe/Berlin` (days in week order)."""
    days = [d for d in DAYS if d in window.days]
    when = "daily" if len(days) == len(DAYS) else ",".join(days)
    return (
        f"backup window {when} {format_clock(window.start)}-{format_clock(window.end)} "
        f"{window.timezone}"
    )


def window_occurrence(window: BackupWindow, now: float) -> Optional[Tuple[float, float]]:
    """(start, end) epoch of the occurrence of `window` that contains `now`, else None.

    Local times that do not exist (spring forward) or occur twice (fall back) resolve as
    Python's zoneinfo does with fold=0: the offset in effect before the change.
    """
    tz = load_timezone(window.timezone)
    local_today = datetime.fromtimestamp(now, tz).date()
    for day in (local_today, local_today - timedelta(days=1)):
        occurrence = _occurrence_on(window, day, tz)
        if occurrence is not None and occurrence[0] <= now < occurrence[1]:
            return occurrence
    return None


def _occurrence_on(window: BackupWindow, day: date, tz: Any) -> Optional[Tuple[float, float]]:
    if DAYS[day.weekday()] not in window.days:
        return None
    start = datetime.combine(day, window.start).replace(tzinfo=tz)
    end_day = day if window.end > window.start else day + timedelta(days=1)
    end = datetime.combine(end_day, window.end).replace(tzinfo=tz)
    return start.timestamp(), end.timestamp()


def update_memory(
    now: float, cfg: Config, backups_seen: Sequence[Any], memory: MutableMapping[str, Any]
) -> Optional[float]:
    """Record when the current run of detected backups began; returns it (None: no backup).

    Called once per cycle (by `relaxations`, before the checks). The start is the earliest of
    the remembered first sighting and the sessions' own start times, so a probe that missed
    one cycle does not restart the max_duration clock of a backup that reports its start.
    """
    seen = [b for b in (as_backup_seen(x) for x in backups_seen or ()) if b is not None]
    if not cfg.backup.detect or not seen:
        memory.pop(_MEMORY_KEY, None)
        memory.pop(_MEMORY_SEEN, None)
        return None
    candidates = [now]
    remembered = _finite(memory.get(_MEMORY_KEY))
    last_seen = _finite(memory.get(_MEMORY_SEEN))
    max_gap = max(_MEMORY_MIN_GAP, _MEMORY_CYCLES * float(cfg.daemon.interval))
    if (
        remembered is not None
        and remembered <= now
        and (last_seen is None or 0 <= now - last_seen <= max_gap)
    ):
        candidates.append(remembered)
    candidates.extend(b.started for b in seen if b.started is not None and b.started <= now)
    since = min(candidates)
    memory[_MEMORY_KEY] = since
    memory[_MEMORY_SEEN] = now
    return since


def _finite(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _describe_backups(seen: List[BackupSeen]) -> str:
    parts = []
    for b in seen[:3]:
        parts.append(
            f"{b.application_name} (pid {b.pid})" if b.pid is not None else b.application_name
        )
    more = f" and {len(seen) - 3} more" if len(seen) > 3 else ""
    return "running backup " + ", ".join(parts) + more


def relaxation(
    now: float,
    check_name: str,
    cfg: Config,
    backups_seen: Sequence[Any],
    memory: MutableMapping[str, Any],
) -> Relaxation:
    """Is `check_name` relaxed at `now`? (One check: `relaxations` for a whole cycle.)"""
    return relaxations(now, (check_name,), cfg, backups_seen, memory)[check_name]


def relaxations(
    now: float,
    checks: Sequence[str],
    cfg: Config,
    backups_seen: Sequence[Any],
    memory: MutableMapping[str, Any],
) -> Dict[str, Relaxation]:
    """Which of `checks` are relaxed at `now`, computed once per cycle before the checks:
    windows listing a check, and detected backups when `[backup] detect` lists it. `memory`
    (persisted by the caller) is updated in place, once."""
    since = update_memory(now, cfg, backups_seen, memory)
    seen = [b for b in (as_backup_seen(x) for x in backups_seen or ()) if b is not None]
    return {name: _relaxation(now, name, cfg, since, seen) for name in checks}


def _relaxation(
    now: float, check_name: str, cfg: Config, since: Optional[float], seen: List[BackupSeen]
) -> Relaxation:
    max_duration = cfg.backup.max_duration
    active: List[Tuple[float, str]] = []
    expired: List[Tuple[float, str]] = []

    for window in cfg.backup_windows:
        if check_name not in window.checks:
            continue
        occurrence = window_occurrence(window, now)
        if occurrence is None:
            continue
        start, _end = occurrence
        what = describe_window(window)
        if now - start > max_duration:
            expired.append((start, _over(what, now - start, max_duration)))
        else:
            active.append((start, what))

    if since is not None and check_name in cfg.backup.checks:
        what = _describe_backups(seen)
        if now - since > max_duration:
            expired.append((since, _over(what, now - since, max_duration)))
        else:
            active.append((since, what))

    if active:
        active.sort()
        return Relaxation(True, " and ".join(r for _, r in active), active[0][0], False)
    if expired:
        expired.sort()
        return Relaxation(False, " and ".join(r for _, r in expired), expired[0][0], True)
    return NOT_RELAXED


def _over(what: str, elapsed: float, limit: float) -> str:
    return (
        f"{what} has gone on for {format_duration(elapsed)}, longer than backup.max_duration "
        f"{format_duration(limit)}: normal limits apply"
    )
