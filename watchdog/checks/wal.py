"""`wal` (primary): what keeps WAL on the primary's disk, before the disk is full.

Three things, from the PostgreSQL probe's WAL facts (probes.postgres.WalFacts), on every
version from 9.5:
- Replication slots. A slot keeps every WAL segment its consumer has not confirmed: an
  inactive slot (its standby gone, a rebuild abandoned) keeps WAL until the disk is full
  (132 GB of a 150 GB volume in one report). An inactive slot is a WARNING at once (the
  check's `for`, 5 minutes by default, lets a reconnecting standby come back first), a slot
  retaining more than `slot_warning_bytes`/`slot_critical_bytes` is WARNING/CRITICAL, a slot
  whose WAL is already removed (13+: wal_status `lost`) CRITICAL. Each names the slot, its
  retained bytes, since when it is inactive (17+: the server's inactive_since; before, what
  the daemon saw across cycles; a first look says it does not know) and the command to drop
  it. Slots listed in `ignore_slots` are shown, never judged.
- WAL archiving, when archive_mode is on (pg_stat_archiver). Failing: the last failure is
  newer than the last success (or nothing ever succeeded) is CRITICAL; more failures than at
  the previous cycle, with a success in between, WARNING (intermittent). Stuck: WAL waiting
  for archive_command longer than `archive_max_age` is CRITICAL, with or without failures
  (a hung command counts neither). "Waiting" is read from the `.ready` files in
  archive_status (how long the oldest has waited), or, where the role may not list them,
  from the segment being written against the last one archived. An idle primary has
  nothing waiting, so an old last success is not a failure; a primary that never archived
  anything is judged by what waits (check_pgactivity's archiver check said OK for it).
- The WAL directory's size against `dir_warning_bytes`/`dir_critical_bytes`, where the
  role may list it (pg_monitor on 10+, superuser before); otherwise the summary says the
  size is not readable and why.

Pure: the snapshot (with the previous cycle's, for the failure count) in, a result out.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from watchdog.config import CheckTiming, check_section
from watchdog.config.schema import _dur, _f
from watchdog.families import Family, Sample, counter, detail, gauge, number
from watchdog.model import WAL, CheckResult, Status, worst
from watchdog.nagios import fmt, num, perf
from watchdog.probes.postgres import (
    ARCHIVE_STATUSDIR,
    WALDIR_FUNCTION,
    PgSnapshot,
    WalFacts,
    WalSlot,
    format_lsn,
    snapshot_details,
)
from watchdog.units import format_bytes, format_duration

GiB = 1024**3


# unknown_for 15m: a PostgreSQL that does not answer already pages through postgres_role;
# what wal alone cannot read (a listing refused or hung) is not urgent.
@check_section(for_="5m", recover_for="1m", unknown_as="warning", unknown_for="15m")
class WalConfig(CheckTiming):
    """[wal]: limits for slots, archiving and the WAL directory (see README "wal")."""

    slot_warning_bytes: int = _f("size", 1 * GiB, minimum=1)
    slot_critical_bytes: int = _f("size", 8 * GiB, minimum=1)
    ignore_slots: Tuple[str, ...] = _f("strlist", ())
    archive_max_age: float = _dur(
        "1h", "1m", "30d", why_low="archive_command retries a failed segment once a minute",
        why_high="a month of WAL waiting for the archive is a month without a usable backup")
    dir_warning_bytes: int = _f("size", 4 * GiB, minimum=1)
    dir_critical_bytes: int = _f("size", 16 * GiB, minimum=1)

    def problems(self) -> List[Tuple[str, str]]:
        """Pairs of keys that cannot work together (the config loader reports them)."""
        out = []
        if self.slot_critical_bytes < self.slot_warning_bytes:
            out.append(("slot_critical_bytes", "must not be smaller than wal.slot_warning_bytes"))
        if self.dir_critical_bytes < self.dir_warning_bytes:
            out.append(("dir_critical_bytes", "must not be smaller than wal.dir_warning_bytes"))
        return out


def drop_command(slot: str) -> str:
    """What an operator runs once the slot's consumer is gone for good."""
    quoted = slot.replace("'", "''")
    return f"SELECT pg_drop_replication_slot('{quoted}');"


_SEGMENT = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")


def segments_waiting(current: Optional[str], last_archived: Optional[str]) -> Optional[bool]:
    """Is a completed segment older than `current` (the one being written) not archived
    yet, judged from the names alone? None when the names cannot tell (another timeline,
    a history or backup file, nothing archived)."""
    now = _SEGMENT.match(current or "")
    last = _SEGMENT.match(last_archived or "")
    if now is None or last is None or now.group(1) != last.group(1):
        return None
    log_now, seg_now = int(now.group(2), 16), int(now.group(3), 16)
    log_last, seg_last = int(last.group(2), 16), int(last.group(3), 16)
    if (log_now, seg_now) <= (log_last, seg_last):
        return False
    if log_now == log_last:
        return seg_now - seg_last > 1
    # Next log id: not waiting only when `last` was the log's last segment (segments per
    # log id are 2^32 / segment size: a power of two from 4 to 4096).
    ends_log = seg_last + 1 >= 4 and (seg_last + 1) & seg_last == 0
    return not (log_now == log_last + 1 and seg_now == 0 and ends_log)


def _privilege(error: Optional[str], version: Optional[int], since: int) -> str:
    """`error` with what lets the role list the directory (pg_monitor from `since` on)."""
    text = error or "not read"
    if "permission denied" not in text or version is None:
        return text
    if version >= since:
        return f"{text}: grant pg_monitor to the watchdog's database role"
    return f"{text}: before PostgreSQL {since // 10000} only a superuser may list it"


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)


def _inactive_for(slot: WalSlot, snapshot: PgSnapshot) -> Optional[float]:
    if slot.active is not False:
        return None
    if slot.inactive_since is not None and snapshot.taken_at is not None:
        return max(0.0, snapshot.taken_at - slot.inactive_since)
    if slot.inactive_age is not None:
        return max(0.0, slot.inactive_age)
    return None


def _slot_entry(slot: WalSlot, snapshot: PgSnapshot, cfg: WalConfig) -> Dict[str, Any]:
    return {
        "name": slot.name,
        "slot_type": slot.slot_type,
        "database": slot.database,
        "active": slot.active,
        "active_pid": slot.active_pid,
        "restart_lsn": format_lsn(slot.restart_lsn),
        "retained_bytes": slot.retained_bytes,
        "wal_status": slot.wal_status,
        "safe_wal_size": slot.safe_wal_size,
        "inactive_seconds": _round(_inactive_for(slot, snapshot)),
        "ignored": slot.name in cfg.ignore_slots,
        "drop": drop_command(slot.name),
    }


def _slot_findings(slot: WalSlot, snapshot: PgSnapshot, cfg: WalConfig,
                   first_look: bool) -> List[Tuple[Status, str]]:
    if slot.name in cfg.ignore_slots:
        return []
    kind = f"{slot.slot_type} " if slot.slot_type else ""
    retained = slot.retained_bytes
    held = f"retains {format_bytes(retained)}" if retained is not None else "retains no WAL yet"
    out: List[Tuple[Status, str]] = []
    if slot.wal_status == "lost":
        out.append((Status.CRITICAL,
                    f"{kind}slot {slot.name} has lost WAL it needed (wal_status lost): its "
                    f"consumer can never catch up; rebuild it, then {drop_command(slot.name)}"))
    if retained is not None and retained >= cfg.slot_warning_bytes:
        level = Status.CRITICAL if retained >= cfg.slot_critical_bytes else Status.WARNING
        limit = cfg.slot_critical_bytes if level == Status.CRITICAL else cfg.slot_warning_bytes
        state = "inactive" if slot.active is False else "active"
        out.append((level, f"{state} {kind}slot {slot.name} {held} (>= {format_bytes(limit)}); "
                           f"if its consumer is gone for good: {drop_command(slot.name)}"))
    elif slot.active is False:
        since = _inactive_for(slot, snapshot)
        if since is not None:
            how_long = f"inactive for {'at least ' if slot.inactive_age is None else ''}" \
                       f"{format_duration(since)}"
        elif first_look:
            how_long = "inactive (since when unknown: first look, PostgreSQL before 17)"
        else:
            how_long = "inactive"
        out.append((Status.WARNING, f"{kind}slot {slot.name} {how_long}, {held}; if its "
                                    f"consumer is gone for good: {drop_command(slot.name)}"))
    elif slot.wal_status == "unreserved":
        out.append((Status.WARNING, f"{kind}slot {slot.name} is about to lose WAL it needs "
                                    "(wal_status unreserved: beyond max_slot_wal_keep_size)"))
    return out


def _archiver_findings(wal: WalFacts, previous: Optional[WalFacts], cfg: WalConfig,
                       details: Dict[str, Any], version: Optional[int] = None
                       ) -> Tuple[List[Tuple[Status, str]], str]:
    """Findings and the OK text for archiving (archive_mode on)."""
    out: List[Tuple[Status, str]] = []
    a = wal.archiver
    if wal.archive_command_set is False:
        out.append((Status.WARNING, "archive_mode is on but no archive_command (or "
                                    "archive_library) is set: WAL is kept until one is"))
    if a is None:
        return out + [(Status.UNKNOWN, "pg_stat_archiver returned no row")], ""
    if a.last_archived_age is not None:
        success = (f"last success {format_duration(a.last_archived_age)} ago "
                   f"({a.last_archived_wal})")
    elif a.stats_reset_age is not None:
        # Counters start at initdb or pg_stat_reset_shared('archiver'): say how long ago.
        success = (f"nothing archived in the {format_duration(a.stats_reset_age)} since "
                   "pg_stat_archiver was reset")
    else:
        success = "nothing archived yet"
    failing = bool(a.failed_count) and a.last_failed_age is not None and (
        a.last_archived_age is None or a.last_failed_age < a.last_archived_age)
    before = previous.archiver if previous is not None else None
    rising = None
    if before is not None and before.failed_count is not None and a.failed_count is not None:
        rising = a.failed_count - before.failed_count if a.failed_count >= before.failed_count \
            else None  # reset: not comparable
    details["archive_failing"] = failing
    details["archive_failures_since_last_cycle"] = rising
    if failing:
        out.append((Status.CRITICAL,
                    f"WAL archiving failing: {a.last_failed_wal} failed "
                    f"{format_duration(a.last_failed_age or 0.0)} ago ({a.failed_count} failures "
                    f"in all), {success}; see the PostgreSQL log for archive_command's error"))
    elif rising:
        out.append((Status.WARNING,
                    f"WAL archiving failed {rising} time(s) since the last cycle (last failure "
                    f"{a.last_failed_wal}), {success}: intermittent"))

    waiting_text = ""
    if wal.ready_count is not None:
        details["archive_waiting"] = wal.ready_count > 0
        oldest = wal.oldest_ready_age
        if wal.ready_count and oldest is not None and oldest > cfg.archive_max_age:
            out.append((Status.CRITICAL,
                        f"{wal.ready_count} WAL segment(s) waiting for archiving, the oldest "
                        f"for {format_duration(oldest)} (limit "
                        f"{format_duration(cfg.archive_max_age)}); {success}"))
        elif wal.ready_count:
            waiting_text = (f"{wal.ready_count} segment(s) waiting, the oldest "
                            f"{format_duration(oldest or 0.0)}")
        else:
            waiting_text = "nothing waiting"
    else:
        waiting = segments_waiting(wal.current_walfile, a.last_archived_wal)
        details["archive_waiting"] = waiting
        if waiting and a.last_archived_age is not None \
                and a.last_archived_age > cfg.archive_max_age:
            out.append((Status.CRITICAL,
                        f"no WAL archived for {format_duration(a.last_archived_age)} (limit "
                        f"{format_duration(cfg.archive_max_age)}) while segments wait: "
                        f"writing {wal.current_walfile}, last archived {a.last_archived_wal}"))
        elif waiting is None and not failing:
            out.append((Status.UNKNOWN,
                        f"cannot tell whether WAL waits for archiving: {success} and the "
                        f"archive_status directory is not readable "
                        f"({_privilege(wal.ready_error, version, ARCHIVE_STATUSDIR)})"))
        else:
            waiting_text = "segments waiting" if waiting else "nothing waiting"
    return out, f"archiving: {success}, {waiting_text}"


def check_wal(snapshot: PgSnapshot, cfg: WalConfig,
              previous: Optional[PgSnapshot] = None) -> CheckResult:
    """The `wal` verdict (see the module docstring)."""
    details: Dict[str, Any] = snapshot_details(snapshot)
    if not snapshot.answered:
        return CheckResult(WAL, Status.UNKNOWN,
                           f"PostgreSQL did not answer: {snapshot.error or 'no answer'}", details)
    if snapshot.in_recovery:
        return CheckResult(WAL, Status.UNKNOWN, "PostgreSQL is in recovery: the WAL of a primary "
                           "cannot be judged here (see postgres_role)", details)
    wal = snapshot.wal
    if wal is None:
        return CheckResult(WAL, Status.UNKNOWN, "the PostgreSQL probe read no WAL facts", details)
    if wal.error:
        details["error"] = wal.error
        return CheckResult(WAL, Status.UNKNOWN,
                           f"cannot read replication slots and pg_stat_archiver: {wal.error}",
                           details)
    prev_wal = previous.wal if previous is not None and previous.answered else None
    first_look = prev_wal is None

    findings: List[Tuple[Status, str]] = []
    for slot in wal.slots:
        findings.extend(_slot_findings(slot, snapshot, cfg, first_look))
    active = [s.name for s in wal.slots if s.active]
    ok_parts = [f"slots: {len(active)} active ({', '.join(active)})" if active
                else "no active slot"]
    if len(wal.slots) > len(active):
        ok_parts[0] += f", {len(wal.slots) - len(active)} inactive"
    unseen = (wal.slot_count or 0) - len(wal.slots)
    if unseen > 0:
        # Only the slots holding the most WAL are read: say that the rest were not judged.
        findings.append((Status.WARNING, f"{wal.slot_count} replication slots: only the "
                                         f"{len(wal.slots)} holding the most WAL were read"))

    details.update({
        "slots": [_slot_entry(s, snapshot, cfg) for s in wal.slots],
        "slot_count": wal.slot_count,
        "archive_mode": wal.archive_mode,
        "archive_command_set": wal.archive_command_set,
        "current_walfile": wal.current_walfile,
        "archiver": None,
        "ready_count": wal.ready_count,
        "oldest_ready_age": _round(wal.oldest_ready_age),
        "ready_error": wal.ready_error,
        "waldir_bytes": wal.waldir_bytes,
        "waldir_files": wal.waldir_files,
        "waldir_error": wal.waldir_error,
        "limits": {"slot_warning_bytes": cfg.slot_warning_bytes,
                   "slot_critical_bytes": cfg.slot_critical_bytes,
                   "archive_max_age": cfg.archive_max_age,
                   "dir_warning_bytes": cfg.dir_warning_bytes,
                   "dir_critical_bytes": cfg.dir_critical_bytes},
    })
    a = wal.archiver
    if a is not None:
        details["archiver"] = {
            "archived_count": a.archived_count, "last_archived_wal": a.last_archived_wal,
            "last_archived_age": _round(a.last_archived_age), "failed_count": a.failed_count,
            "last_failed_wal": a.last_failed_wal, "last_failed_age": _round(a.last_failed_age),
        }
    if wal.archiving:
        found, text = _archiver_findings(wal, prev_wal, cfg, details, snapshot.server_version)
        findings.extend(found)
        ok_parts.append(text)
    else:
        ok_parts.append(f"archive_mode {wal.archive_mode or 'unknown'}")

    if wal.waldir_bytes is not None:
        size = wal.waldir_bytes
        if size >= cfg.dir_warning_bytes:
            level = Status.CRITICAL if size >= cfg.dir_critical_bytes else Status.WARNING
            limit = cfg.dir_critical_bytes if level == Status.CRITICAL else cfg.dir_warning_bytes
            findings.append((level, f"WAL directory holds {format_bytes(size)} in "
                                    f"{wal.waldir_files} files (>= {format_bytes(limit)})"))
        ok_parts.append(f"WAL directory {format_bytes(size)} ({wal.waldir_files} files)")
    else:
        why = _privilege(wal.waldir_error, snapshot.server_version, WALDIR_FUNCTION)
        ok_parts.append(f"WAL directory size not readable ({why})")

    status = worst(s for s, _ in findings)
    if findings:
        ordered = sorted(findings, key=lambda f: -f[0].rank)
        summary = "; ".join(text for _, text in ordered)
    else:
        summary = "; ".join(p for p in ok_parts if p)
    return CheckResult(WAL, status, summary, details)


# ---------------------------------------------------------------- metrics


def _slot_samples(result: Optional[CheckResult], key: str) -> List[Sample]:
    entries = result.details.get("slots") if result is not None else None
    out: List[Sample] = []
    seen = set()
    for entry in entries if isinstance(entries, (list, tuple)) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        if entry["name"] in seen:
            continue
        seen.add(entry["name"])
        value = entry.get(key)
        if isinstance(value, bool):
            out.append(((entry["name"],), value))
        elif number(value) is not None:
            out.append(((entry["name"],), float(value)))
    return out


def _archiver_samples(result: Optional[CheckResult], key: str) -> List[Sample]:
    archiver = result.details.get("archiver") if result is not None else None
    value = number(archiver.get(key)) if isinstance(archiver, dict) else None
    return [] if value is None else [((), value)]


def metric_families(result: Optional[CheckResult]) -> Sequence[Family]:
    """The `ha_watchdog_wal_*` families from this cycle's result (README "Metrics")."""
    return [
        gauge("wal_slot_retained_bytes", "WAL kept on the primary for a replication slot.",
              ("slot",), _slot_samples(result, "retained_bytes")),
        gauge("wal_slot_active", "1 when the replication slot's consumer is connected.",
              ("slot",), _slot_samples(result, "active")),
        counter("wal_archive_failures", "Failed archive_command runs (pg_stat_archiver).", (),
                _archiver_samples(result, "failed_count")),
        gauge("wal_archive_last_success_age_seconds",
              "Seconds since the last WAL segment was archived.", (),
              _archiver_samples(result, "last_archived_age")),
        gauge("wal_archive_waiting_segments", "WAL segments waiting for archive_command.", (),
              detail(result, "ready_count")),
        gauge("wal_dir_bytes", "Size of the primary's WAL directory.", (),
              detail(result, "waldir_bytes")),
    ]


def perfdata(check: CheckResult) -> List[str]:
    """`--once --nagios` performance data: the largest slot retention, inactive slots, the
    WAL directory, archive failures and segments waiting (where each applies)."""
    d = check.details
    limits = d.get("limits") if isinstance(d.get("limits"), dict) else {}
    slots = [e for e in d.get("slots") or () if isinstance(e, dict)
             and e.get("ignored") is not True]
    held = [b for b in (num(e.get("retained_bytes")) for e in slots) if b is not None]
    out = []
    if slots:
        out.append(perf("wal_slot_retained_max", max(held) if held else None, "B",
                        fmt(num(limits.get("slot_warning_bytes"))),
                        fmt(num(limits.get("slot_critical_bytes")))))
        out.append(perf("wal_slots_inactive", sum(1 for e in slots if e.get("active") is False),
                        "", "", ""))
    if "waldir_bytes" in d:
        out.append(perf("wal_dir", num(d.get("waldir_bytes")), "B",
                        fmt(num(limits.get("dir_warning_bytes"))),
                        fmt(num(limits.get("dir_critical_bytes")))))
    archiver = d.get("archiver") if isinstance(d.get("archiver"), dict) else None
    if archiver is not None and d.get("archive_mode") in ("on", "always"):
        out.append(perf("wal_archive_failed", num(archiver.get("failed_count")), "c"))
        out.append(perf("wal_archive_waiting", num(d.get("ready_count"))))
    return out
