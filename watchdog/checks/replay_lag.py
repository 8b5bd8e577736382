"""`replay_lag` (secondary): how far behind the standby is, without the two classic mistakes.

1. `now() - pg_last_xact_replay_timestamp()` grows without bound on an idle primary although
   the standby is caught up. So the time lag counts only while received WAL is not yet
   replayed (receive LSN > replay LSN) or replay is paused; otherwise it is 0.
2. "receive LSN = replay LSN, so lag 0" also holds when the primary is dead or the link
   hangs. So liveness is checked on its own (and the time lag is then unknown, not 0): no WAL receiver, a receiver that is not
   `streaming`, or no message from the primary for longer than `max_receive_age` is
   CRITICAL "not receiving WAL" (keepalives keep last_msg_receipt_time fresh on an idle pair;
   ages up to ~15 s were seen with PostgreSQL's defaults).

3. What proves WAL still arrives differs by version, and `evidence` in the details names
   what was used:
   - `canary`: the primary's watchdog commits a tiny transaction every cycle ([canary]), so
     the last replayed transaction here (pg_last_xact_replay_timestamp(), every version) is
     at most about one interval old while replication works. With everything received
     replayed, a canary older than `max_receive_age` means nothing arrives: receiver gone,
     stalled, primary dead or unreachable (CRITICAL), unless pg_stat_wal_receiver shows a
     streaming receiver with fresh messages, which only leaves the primary's canary itself
     missing (said in the summary). A negative age (this clock behind the primary's) is
     reported as clock skew (WARNING past CLOCK_SKEW_TOLERANCE).
   - `pg_stat_wal_receiver` (9.6+): the rules of point 2.
   - `process title` (9.5 has no pg_stat_wal_receiver): the WAL receiver process found in
     /proc (gone, stopped, or a state other than streaming is CRITICAL); it cannot show
     that messages still arrive, so without the canary only a recently replayed
     transaction can (`last replayed transaction`); else the verdict is UNKNOWN naming the
     missing evidence (turn the canary on).

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

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple

from watchdog.config import ReplayLagConfig
from watchdog.families import Family, detail, gauge
from watchdog.model import REPLAY_LAG, CheckResult, Status, worst
from watchdog.nagios import fmt, num, perf
from watchdog.probes.postgres import PgSnapshot, format_lsn, snapshot_details
from watchdog.units import format_bytes, format_duration

PAUSED_STATES = ("paused", "pause requested")
#: A last replayed transaction this far "in the future" is reported as clock skew.
CLOCK_SKEW_TOLERANCE = 1.0
# Values of details["evidence"] (public: documented in the README), joined with " + ".
EV_CANARY = "canary"
EV_VIEW = "pg_stat_wal_receiver"
EV_TITLE = "process title"
EV_RECENT = "last replayed transaction"
ENABLE_CANARY = "turn [canary] on (the default) on both nodes"


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


def _receiver_problem(snapshot: PgSnapshot, cfg: ReplayLagConfig
                      ) -> Tuple[Status, Optional[str], Optional[str]]:
    """What the WAL receiver shows: (status, problem or None, evidence name or None).

    OK with evidence pg_stat_wal_receiver proves messages arrive; OK with evidence
    `process title` (9.5) only that a receiver runs and says it streams.
    """
    if not snapshot.walreceiver_view:
        return _process_problem(snapshot)
    receiver = snapshot.walreceiver
    if receiver is None:
        return Status.CRITICAL, "not receiving WAL: no WAL receiver process", EV_VIEW
    if receiver.status is None:
        return Status.UNKNOWN, ("cannot see the WAL receiver's state: "
                                f"{_privilege_hint(snapshot)}"), None
    if receiver.status != "streaming":
        return (Status.CRITICAL, f"not receiving WAL: WAL receiver is {receiver.status}",
                EV_VIEW)
    age = receiver.last_msg_receipt_age
    if age is not None and age > cfg.max_receive_age:
        return Status.CRITICAL, (f"not receiving WAL: no message from the primary for "
                                 f"{format_duration(age)} (limit "
                                 f"{format_duration(cfg.max_receive_age)})"), EV_VIEW
    return Status.OK, None, EV_VIEW


def _privilege_hint(snapshot: PgSnapshot) -> str:
    if snapshot.server_version is not None and snapshot.server_version < 100000:
        return "PostgreSQL 9.x shows it only to a superuser: connect as one"
    return "grant pg_monitor to the watchdog's database role"


def _process_problem(snapshot: PgSnapshot) -> Tuple[Status, Optional[str], Optional[str]]:
    """9.5: the WAL receiver process as /proc shows it."""
    process = snapshot.receiver_process
    if process is None or process.error is not None:
        return Status.OK, None, None  # nothing known: other evidence must decide
    if not process.found:
        return (Status.CRITICAL, "not receiving WAL: no WAL receiver process (process titles "
                "of the postmaster's children)", EV_TITLE)
    if process.state in ("T", "t", "Z", "X"):
        what = {"Z": "a zombie", "X": "dead"}.get(process.state, "stopped")
        return (Status.CRITICAL, f"not receiving WAL: the WAL receiver process {process.pid} "
                f"is {what} (process state {process.state})", EV_TITLE)
    if process.status is not None and process.status != "streaming":
        return (Status.CRITICAL, f"not receiving WAL: WAL receiver is {process.status} "
                "(process title)", EV_TITLE)
    return Status.OK, None, EV_TITLE


def _canary_age(snapshot: PgSnapshot) -> Tuple[Optional[float], Optional[str]]:
    """How old the last replayed transaction is (None: none replayed since the start) and,
    if it is none at all, since when the server has been waiting for one."""
    if snapshot.last_replay_age is not None:
        return snapshot.last_replay_age, None
    started = snapshot.server_age
    return None, (f"no transaction replayed since the standby started "
                  f"{format_duration(started)} ago" if started is not None else
                  "no transaction replayed since the standby started")


def check_replay_lag(snapshot: PgSnapshot, cfg: ReplayLagConfig, relaxed: bool = False,
                     canary: bool = False) -> CheckResult:
    """See `_check_replay_lag`; the deadline it computed becomes the typed `recheck_in` too."""
    result = _check_replay_lag(snapshot, cfg, relaxed, canary)
    recheck = result.details.get("recheck_in")
    return dataclasses.replace(result, recheck_in=None if recheck is None else float(recheck))


def _check_replay_lag(snapshot: PgSnapshot, cfg: ReplayLagConfig, relaxed: bool = False,
                     canary: bool = False) -> CheckResult:
    """Replay lag of this standby, in seconds and bytes, plus proof that WAL still arrives.

    `canary`: the primary writes the canary ([canary] enabled), so the age of the last
    replayed transaction is evidence of life (see point 3 of the module doc).
    """
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
    receiver_status, receiver_text, receiver_evidence = _receiver_problem(snapshot, cfg)
    evidence: List[str] = []
    notes: List[Tuple[Status, str]] = []
    advice: Optional[str] = None
    age, never = _canary_age(snapshot)
    skew = -age if age is not None and age < 0 else None
    if skew is not None and skew > CLOCK_SKEW_TOLERANCE:
        notes.append((Status.WARNING, f"clock skew: this standby's clock is at least "
                      f"{format_duration(skew)} behind the primary's (its last replayed "
                      "transaction is in the future here); ages and lags are off by as much"))
    # A stale last-replayed transaction says nothing while replay itself is behind or
    # paused (the time lag covers that); only with everything received replayed.
    caught_up = not (pending or paused)
    canary_stale: Optional[str] = None
    if canary and caught_up:
        if age is None:
            if snapshot.server_age is not None and snapshot.server_age > cfg.max_receive_age:
                canary_stale = f"{never} (limit {format_duration(cfg.max_receive_age)})"
        elif age > cfg.max_receive_age:
            canary_stale = (f"the primary's last canary replayed here is "
                            f"{format_duration(age)} old (limit "
                            f"{format_duration(cfg.max_receive_age)})")
    view_alive = receiver_evidence == EV_VIEW and receiver_status == Status.OK
    canary_fresh = canary and age is not None and age <= cfg.max_receive_age
    receiving = receiver_status == Status.OK
    if receiver_status == Status.CRITICAL:
        evidence.append(receiver_evidence or EV_VIEW)
    elif canary_stale is not None:
        if view_alive:
            evidence.append(EV_VIEW)
            notes.append((Status.OK, f"WAL streams, but {canary_stale}: is the primary's "
                          "watchdog running with [canary] on?"))
        else:
            receiving = False
            receiver_status = Status.CRITICAL
            receiver_text = f"not receiving WAL: {canary_stale}"
            evidence.append(EV_CANARY)
            if receiver_evidence:
                evidence.append(receiver_evidence)
    elif receiver_status == Status.UNKNOWN:
        if canary_fresh:
            # The view is hidden (privileges), but the canary proves WAL arrives.
            notes.append((Status.OK, receiver_text or ""))
            receiver_status, receiver_text, receiving = Status.OK, None, True
            evidence.append(EV_CANARY)
    else:
        if canary and (age is not None or caught_up):
            evidence.append(EV_CANARY)
        if receiver_evidence:
            evidence.append(receiver_evidence)
        if not view_alive and not canary:
            # 9.5 without the canary: only a recent transaction proves WAL arrives.
            if age is not None and 0 <= age <= cfg.max_receive_age:
                evidence.append(EV_RECENT)
            elif caught_up:
                receiving = False
                receiver_status = Status.UNKNOWN
                what = ("PostgreSQL 9.5 has no pg_stat_wal_receiver"
                        if not snapshot.walreceiver_view else "no visible WAL receiver state")
                process = snapshot.receiver_process
                if process is not None and process.error:
                    what += f" and the process title is unknown ({process.error})"
                advice = ENABLE_CANARY
                receiver_text = (f"cannot tell whether WAL still arrives: {what}, [canary] is "
                                 f"off and no transaction was replayed within "
                                 f"{format_duration(cfg.max_receive_age)}; {advice}")
    lag_seconds: Optional[float] = snapshot.last_replay_age if (pending or paused) else 0.0
    if lag_seconds is not None and lag_seconds < 0:
        lag_seconds = 0.0  # clock skew, reported above
    if not receiving and not (pending or paused):
        # Everything received is replayed, but what the primary has is unknown: not 0.
        lag_seconds = None

    findings: List[Tuple[Status, str]] = []
    if receiver_text:
        findings.append((receiver_status, receiver_text))
    findings.extend(n for n in notes if n[0] != Status.OK)
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
        if EV_CANARY in evidence and age is not None and age >= 0:
            summary += f"; canary {format_duration(age)} old"
        elif EV_TITLE in evidence and snapshot.receiver_process is not None:
            summary += f"; WAL receiver {snapshot.receiver_process.status or 'running'}"
            summary += " (process title)"
        for _, text in notes:
            summary += f"; {text}"
    else:
        ordered = sorted(findings, key=lambda f: -f[0].rank)
        summary = "; ".join(text for _, text in ordered) + f" ({measured})"
    if relaxed:
        summary += " [backup limits applied]"

    rechecks = []
    msg_age = receiver.last_msg_receipt_age if receiver is not None else None
    if receiving and msg_age is not None:
        rechecks.append(max(0.0, cfg.max_receive_age - msg_age))
    if receiving and EV_CANARY in evidence and age is not None and caught_up:
        rechecks.append(max(0.0, cfg.max_receive_age - max(0.0, age)))
    if advice is None and not canary and not snapshot.walreceiver_view:
        advice = ENABLE_CANARY + " (PostgreSQL 9.5 has no pg_stat_wal_receiver)"
    if advice:
        details["advice"] = advice
    details.update({
        # When the primary's silence would pass max_receive_age: the daemon re-checks then.
        "recheck_in": _round(min(rechecks)) if rechecks else None,
        "evidence": " + ".join(evidence) if evidence else None,
        "canary": canary,
        "canary_age": _round(age) if canary else None,
        "canary_stale": canary_stale is not None if canary else None,
        "clock_skew_seconds": _round(skew),
        "lag_seconds": _round(lag_seconds),
        "lag_bytes": gap,
        "naive_lag_seconds": _round(snapshot.last_replay_age),
        "receive_lsn": format_lsn(snapshot.receive_lsn),
        "replay_lsn": format_lsn(snapshot.replay_lsn),
        "replay_paused": snapshot.replay_paused,
        "resampled": snapshot.resampled,
        "walreceiver": _receiver_details(snapshot),
        "walreceiver_process": _process_details(snapshot),
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


def _process_details(snapshot: PgSnapshot) -> Optional[Dict[str, Any]]:
    process = snapshot.receiver_process
    if process is None:
        return None
    return {"found": process.found, "pid": process.pid, "status": process.status,
            "state": process.state, "lsn": format_lsn(process.lsn), "error": process.error}


def metric_families(result: Optional[CheckResult]) -> List[Family]:
    """`ha_watchdog_replay_lag_seconds` and `_bytes` from this cycle's result."""
    return [
        gauge("replay_lag_seconds", "Replay lag of this standby in time (secondary).", (),
              detail(result, "lag_seconds")),
        gauge("replay_lag_bytes", "WAL received but not replayed yet (secondary).", (),
              detail(result, "lag_bytes")),
    ]


def perfdata(check: CheckResult) -> List[str]:
    """`--once --nagios` performance data (watchdog.nagios): replay lag in seconds and
    bytes against the limits in force, and the primary's silence."""
    d = check.details
    limits = d.get("limits") if isinstance(d.get("limits"), Mapping) else {}
    out = [
        perf("replay_lag", num(d.get("lag_seconds")), "s", fmt(num(limits.get("warning"))),
             fmt(num(limits.get("critical")))),
        perf("replay_lag_bytes", num(d.get("lag_bytes")), "B",
             fmt(num(limits.get("warning_bytes"))), fmt(num(limits.get("critical_bytes")))),
    ]
    receiver = d.get("walreceiver") if isinstance(d.get("walreceiver"), Mapping) else {}
    out.append(perf("last_receive_age", num(receiver.get("last_msg_receipt_age")), "s", "",
                    fmt(num(d.get("max_receive_age")))))
    return out
