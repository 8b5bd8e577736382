"""The words of the checks that watch what fills the disks: `storage`, `wal`, `backup_log`.

Their key numbers (free space per filesystem, slots and archiving, the backup's outcome)
and their first steps (what grew and what to delete, the slot to drop, how to re-run the
backup), kept apart from `advice` (the replication checks' words), which lists them in its
tables. Pure, like `advice`: odd details give fewer words, never an exception.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional

from watchdog.alerts.detailtext import PG_LOG
from watchdog.alerts.detailtext import as_bytes as _bytes
from watchdog.alerts.detailtext import as_duration as _dur
from watchdog.alerts.detailtext import as_map as _map
from watchdog.alerts.detailtext import as_number as _num
from watchdog.alerts.detailtext import as_text as _text


def _filesystems(d: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    """The storage check's filesystem entries, the worst first (unknown, critical, ...)."""
    entries = d.get("filesystems")
    found = [e for e in entries if isinstance(e, Mapping) and _text(e.get("path"))] \
        if isinstance(entries, (list, tuple)) else []
    order = {"unknown": 0, "critical": 1, "warning": 2}
    return sorted(found, key=lambda e: order.get(str(e.get("status")), 3))


def storage_numbers(d: Mapping[str, Any]) -> List[str]:
    out = []
    for entry in _filesystems(d):
        path = _text(entry.get("path"))
        if entry.get("status") == "ok":
            continue
        error = _text(entry.get("error"))
        if error:
            out.append(error)
            continue
        free, size = _bytes(entry.get("free_bytes")), _bytes(entry.get("size_bytes"))
        line = f"{path}: {free} free of {size}" if free and size else f"{path}:"
        percent = _num(entry.get("free_percent"))
        if percent is not None:
            line += f" ({percent:g}%)"
        inodes = _num(entry.get("free_inodes"))
        if inodes is not None and _num(entry.get("inodes")):
            line += f", {inodes:.0f} inodes free"
        forecast = _text(entry.get("forecast"))
        if forecast and forecast.startswith("full in"):
            line += f"; {forecast}"
        out.append(line)
    history = _text(d.get("history"))
    if history:
        out.append(f"forecast history: {history}")
    return out


def backup_log_numbers(d: Mapping[str, Any]) -> List[str]:
    out = []
    outcome = _text(d.get("outcome"))
    age = _dur(d.get("age_seconds"))
    if outcome:
        out.append(f"newest run: {outcome}" + (f", log last written {age} ago" if age else ""))
    lines = d.get("error_lines")
    if isinstance(lines, (list, tuple)):
        quoted = [t for t in (_text(v) for v in lines) if t]
        if quoted:
            out.append("first error: " + " / ".join(quoted[-3:]))
    last = _text(d.get("last_line"))
    if last and outcome != "failure":
        out.append(f"last line: {last}")
    path = _text(d.get("path"))
    if path:
        out.append(f"log: {path}")
    return out


def _wal_slots(d: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    """The judged slots, the ones holding most WAL first."""
    entries = d.get("slots") if isinstance(d.get("slots"), (list, tuple)) else []
    judged = [e for e in entries if isinstance(e, Mapping) and _text(e.get("name"))
              and e.get("ignored") is not True]
    return sorted(judged, key=lambda e: -(_num(e.get("retained_bytes")) or 0.0))


def wal_numbers(d: Mapping[str, Any]) -> List[str]:
    out = []
    for entry in _wal_slots(d)[:3]:
        state = "active" if entry.get("active") is True else "inactive"
        since = _dur(entry.get("inactive_seconds"))
        if since and state == "inactive":
            state += f" for {since}"
        held = _bytes(entry.get("retained_bytes"))
        out.append(f"slot {_text(entry.get('name'))}: {state}"
                   + (f", retains {held}" if held else ""))
    archiver = _map(d.get("archiver"))
    failed = _num(archiver.get("failed_count"))
    if d.get("archive_mode") in ("on", "always") and failed is not None:
        last = _dur(archiver.get("last_archived_age"))
        out.append(f"archiving: {int(failed)} failure(s), last success "
                   + (f"{last} ago" if last else "never"))
    waiting = _num(d.get("ready_count"))
    if waiting:
        oldest = _dur(d.get("oldest_ready_age"))
        out.append(f"{int(waiting)} segment(s) waiting for archiving"
                   + (f", the oldest for {oldest}" if oldest else ""))
    size = _bytes(d.get("waldir_bytes"))
    if size:
        out.append(f"WAL directory {size}")
    return out


def storage_step(d: Mapping[str, Any], node: str) -> Optional[str]:
    bad = [e for e in _filesystems(d) if e.get("status") not in ("ok", None)]
    if not bad:
        return None
    entry = bad[0]
    path = _text(entry.get("path")) or "the filesystem"
    if entry.get("error") is not None:
        return (f"{path} could not be read on {node}: is it mounted (findmnt {path})? A stat "
                "that hangs is a dead mount or a failing disk (dmesg | tail)")
    sources = entry.get("sources") if isinstance(entry.get("sources"), (list, tuple)) else []
    problems = " ".join(str(p) for p in entry.get("problems") or () if isinstance(p, str))
    if "PostgreSQL WAL" in sources or ("PostgreSQL data" in sources and "inodes" not in problems):
        return (f"PostgreSQL's WAL fills {path} when a replication slot is inactive or "
                "archiving fails: psql -c 'SELECT slot_name, active, restart_lsn FROM "
                "pg_replication_slots' (drop a slot nobody uses: SELECT "
                "pg_drop_replication_slot('name')) and psql -x -c 'SELECT * FROM "
                "pg_stat_archiver'; never delete files in pg_wal/pg_xlog by hand")
    if "inodes" in problems:
        return (f"{path} runs out of inodes (many small files): du --inodes -x {path} | sort -n "
                "| tail shows where; GreenArrow: greenarrow disk_usage --details (delete "
                "GreenArrow's data only by its documented procedures)")
    return (f"what grew on {path}: du -xh --max-depth=2 {path} | sort -h | tail; GreenArrow: "
            "greenarrow disk_usage --details (delete GreenArrow's data only by its documented "
            "procedures); old backups, dumps and rotated logs are the usual things to delete")


_RERUN = ("then re-run the backup by hand, as its cron entry does (crontab -l, "
          "ls /etc/cron.d /etc/cron.daily show the command), and watch its log end with "
          "its success line")


def backup_log_step(d: Mapping[str, Any], node: str) -> Optional[str]:
    path = _text(d.get("path")) or "the backup log"
    outcome = d.get("outcome")
    if d.get("exists") is False:
        return (f"{path} does not exist on {node}: where does the backup write its log "
                "(its cron entry: crontab -l, ls /etc/cron.d)? Fix [backup_log] path, or "
                "set enabled = false where no backup runs")
    if outcome == "failure":
        return (f"read what failed: tail -n 60 {path} (the lines just above the first error "
                "banner); a full disk: df -h on the backup directory, delete old backups "
                "there; PostgreSQL down: see postgres_role; " + _RERUN)
    if outcome == "unfinished":
        return (f"the run died: is it still there, hung (ps -ef | grep -i backup)? Out of "
                f"disk (df -h on the directory of {path})? A reboot (last -x reboot)? "
                + _RERUN)
    if outcome == "success":
        return ("no backup ran since the last good one: is its cron entry still there "
                "(crontab -l, ls /etc/cron.d) and cron running (systemctl status crond, or "
                "cron on Debian)? " + _RERUN)
    if outcome == "running":
        return (f"a running backup reported errors: tail -f {path}; once it ends, fix what "
                "it reported; " + _RERUN)
    return None


def wal_step(d: Mapping[str, Any], node: str) -> Optional[str]:
    if d.get("archive_failing") is True:
        return ("WAL archiving fails: the PostgreSQL log (tail -n 100 " + PG_LOG + ") shows "
                "archive_command's error (archive target full, unmounted, not writable?); "
                "once the command works PostgreSQL archives the waiting segments by itself. "
                "Never delete files from pg_wal by hand")
    for entry in _wal_slots(d):
        if entry.get("active") is not True:
            name = _text(entry.get("name"))
            return (f"replication slot {name} is inactive and keeps WAL on {node}: if its "
                    f"standby is gone for good, psql -c \"SELECT pg_drop_replication_slot("
                    f"'{name}')\"; if it will come back, bring it back (a dropped slot means "
                    "rebuilding that standby)")
    if d.get("archive_waiting") is True:
        return ("WAL waits for archive_command: ps -C postgres -o pid,args shows the archiver's "
                "title (archiving or failed on which segment); a command that hangs must be "
                "fixed or killed; tail -n 100 " + PG_LOG)
    return None
