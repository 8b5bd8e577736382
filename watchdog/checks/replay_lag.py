"""`replay_lag` (secondary): how far behind the standby is, without the two classic mistakes.

1. `now() - pg_last_xact_replay_timestamp()` grows without bound on an idle primary although
   the standby is caught up. So the time lag counts only while received WAL is not yet
   replayed (receive LSN > replay LSN) or replay is paused; otherwise it is 0.
2. "receive LSN = replay LSN, so lag 0" also holds when the primary is dead or the link
   hangs. So liveness is checked on its own (and the time lag is then unknown, not 0): no WAL receiver, a receiver that is not
   `streaming`, or no message from the primary for longer than `max_receive_age` is
   CRITICAL "not receiving WAL" (keepalives keep last_msg_receipt_time fresh on an idle pair;
   ages up to ~15 s were seen with PostgreSQL's defaults).

Replay paused by an operator (pg_wal_replay_pause) is reported as such and is at least a
WARNING. Both the time lag (seconds) and the byte lag (received, not replayed) are reported
and compared with their limits.

`relaxed=True` (a backup is running) applies backup_warning/backup_critical instead of
warning/critical to the time lag, scales the byte limits by the same factors
(backup_warning / warning and backup_critical / critical, never below 1; e.g. the defaults
64 MiB / 1 GiB become 7.5 GiB / 72 GiB), and does not raise a WARNING for the pause alone
(replay is often paused on purpose during a dump on the standby); the pause is still named.
"not receiving WAL" stays CRITICAL: a pg_basebackup does not stop the walreceiver.

After a long idle period, the first WAL to arrive can be seen a few ms before it is
replayed, and in that moment the time lag reads the whole idle time. The probe reads such a
standby a second time 0.25 s later (probes.postgres.RESAMPLE_AFTER; `resampled` in the
details); a lag still there then is real. If even that catches a fresh arrival, the check's
`for` debounce (default 2m) absorbs it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from watchdog.config import ReplayLagConfig
from watchdog.model import REPLAY_LAG, CheckResult, Status, worst
from watchdog.probes.postgres import PgSnapshot, format_lsn, snapshot_details
from watchdog.units import format_bytes, format_duration

PAUSED_STATES = ("paused", "pause requested")


def limits(cfg: ReplayLagConfig, relaxed: bool = False) -> Dict[str, float]:
    """The four limits in force: time (s) and bytes, normal or backup ones."""
    if not relaxed:
        return {"warning": cfg.warning, "critical": cfg.critical,
                "warning_bytes": cfg.warning_bytes, "critical_bytes": cfg.critical_bytes}
    warn_factor = max(1.0, cfg.backup_warning / cfg.warning) if cfg.warning > 0 else 1.0
    crit_factor = max(1.0, cfg.backup_critical / cfg.critical) if cfg.critical > 0 else 1.0
    return {
        "warning": cfg.backup_warning,
        "critical": cfg.backup_critical,
        "warning_bytes": int(cfg.warning_bytes * warn_factor),
        "critical_bytes": int(cfg.critical_bytes * crit_factor),
    }


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)


def _over_limit(value: float, warning: float, critical: float, fmt: Any, text: str
                ) -> List[Tuple[Status, str]]:
    """One finding when `value` reaches the critical or else the warning limit."""
    for status, limit in ((Status.CRITICAL, critical), (Status.WARNING, warning)):
        if value >= limit:
            return [(status, text.format(value=fmt(value), limit=fmt(limit)))]
    return []


def _receiver_problem(snapshot: PgSnapshot, cfg: ReplayLagConfig) -> Tuple[Status, Optional[str]]:
    receiver = snapshot.walreceiver
    if receiver is None:
        return Status.CRITICAL, "not receiving WAL: no WAL receiver process"
    if receiver.status is None:
        return Status.UNKNOWN, ("cannot see the WAL receiver's state: grant pg_monitor to the "
                                "watchdog's database role")
    if receiver.status != "streaming":
        return Status.CRITICAL, f"not receiving WAL: WAL receiver is {receiver.status}"
    age = receiver.last_msg_receipt_age
    if age is not None and age > cfg.max_receive_age:
        return Status.CRITICAL, (f"not receiving WAL: no message from the primary for "
                                 f"{format_duration(age)} (limit "
                                 f"{format_duration(cfg.max_receive_age)})")
    return Status.OK, None


def check_replay_lag(snapshot: PgSnapshot, cfg: ReplayLagConfig, relaxed: bool = False
                     ) -> CheckResult:
    """Replay lag of this standby, in seconds and bytes, plus WAL-receiver liveness."""
    details = snapshot_details(snapshot)
    if not snapshot.answered:
        return CheckResult(REPLAY_LAG, Status.UNKNOWN,
                           f"PostgreSQL unreachable: {snapshot.error} (see postgres_role)",
                           details)
    if not snapshot.in_recovery:
        return CheckResult(
            REPLAY_LAG, Status.UNKNOWN,
            "PostgreSQL is not in recovery (not a standby): no replay lag to measure "
            "(see postgres_role)",
            details,
        )

    lim = limits(cfg, relaxed)
    gap = snapshot.replay_gap_bytes
    paused = snapshot.replay_paused in PAUSED_STATES
    pending = gap is not None and gap > 0
    receiver_status, receiver_text = _receiver_problem(snapshot, cfg)
    receiving = receiver_status == Status.OK
    lag_seconds: Optional[float] = snapshot.last_replay_age if (pending or paused) else 0.0
    if not receiving and not (pending or paused):
        # Everything received is replayed, but what the primary has is unknown: not 0.
        lag_seconds = None

    findings: List[Tuple[Status, str]] = []
    if receiver_text:
        findings.append((receiver_status, receiver_text))
    if paused:
        findings.append((Status.OK if relaxed else Status.WARNING,
                         f"replay {snapshot.replay_paused} by an operator "
                         "(pg_wal_replay_resume() resumes it)"))
    if lag_seconds is not None:
        findings.extend(_over_limit(lag_seconds, lim["warning"], lim["critical"],
                                    format_duration, "replay lag {value} >= {limit}"))
    if gap is not None:
        findings.extend(_over_limit(gap, lim["warning_bytes"], lim["critical_bytes"],
                                    format_bytes, "{value} received but not replayed >= {limit}"))

    status = worst(s for s, _ in findings)
    if lag_seconds is not None:
        measured = f"lag {format_duration(lag_seconds)}"
    elif not receiving:
        measured = "lag unknown"
    else:
        measured = "lag unknown (no transaction replayed since the standby started)"
    measured += f", {format_bytes(gap)} not replayed" if gap is not None else ", bytes unknown"
    receiver = snapshot.walreceiver
    if status == Status.OK and not findings:
        summary = f"replay {measured}"
        if receiver is not None and receiver.sender_host:
            summary += f"; streaming from {receiver.sender_host}:{receiver.sender_port}"
        if receiver is not None and receiver.last_msg_receipt_age is not None:
            summary += f", last message {format_duration(receiver.last_msg_receipt_age)} ago"
    else:
        ordered = sorted(findings, key=lambda f: -f[0].rank)
        summary = "; ".join(text for _, text in ordered) + f" ({measured})"
    if relaxed:
        summary += " [backup limits applied]"

    age = receiver.last_msg_receipt_age if receiver is not None else None
    details.update({
        # When the primary's silence would pass max_receive_age: the daemon re-checks then.
        "recheck_in": _round(max(0.0, cfg.max_receive_age - age))
        if receiving and age is not None else None,
        "lag_seconds": _round(lag_seconds),
        "lag_bytes": gap,
        "naive_lag_seconds": _round(snapshot.last_replay_age),
        "receive_lsn": format_lsn(snapshot.receive_lsn),
        "replay_lsn": format_lsn(snapshot.replay_lsn),
        "replay_paused": snapshot.replay_paused,
        "resampled": snapshot.resampled,
        "walreceiver": _receiver_details(snapshot),
        "limits": lim,
        "max_receive_age": cfg.max_receive_age,
        "relaxed": relaxed,
        "backup_limits_applied": relaxed,
        "backups": [{"pid": b.pid, "application_name": b.application_name, "kind": b.kind,
                     "age": _round(b.age)} for b in snapshot.backups],
    })
    return CheckResult(REPLAY_LAG, status, summary, details)


def _receiver_details(snapshot: PgSnapshot) -> Optional[Dict[str, Any]]:
    receiver = snapshot.walreceiver
    if receiver is None:
        return None
    return {
        "pid": receiver.pid,
        "status": receiver.status,
        "sender_host": receiver.sender_host,
        "sender_port": receiver.sender_port,
        "last_msg_receipt_age": _round(receiver.last_msg_receipt_age),
        "received_lsn": format_lsn(receiver.received_lsn),
    }
