"""`standbys` (primary): enough standbys really streaming, one entry per standby.

Better than `count(*) WHERE state = 'streaming'`, which counted one standby twice after a
walsender froze and the standby reconnected, and counted a hung standby until
wal_sender_timeout:
- rows are grouped per standby (application_name, client_addr): a frozen old walsender plus
  the reconnected one count once;
- only `streaming` counts (`startup`, `catchup` are not healthy yet, `stopping` is leaving);
  backups (state `backup`, or a backup application such as pg_basebackup's WAL stream) are
  listed but never counted;
- a walsender whose last reply (reply_time) is older than `max_reply_age` does not count.
  replay_lsn/reply_time are NULL for a moment after a standby connects: that is not a
  failure by itself, only once the walsender is older than `max_reply_age` without a reply.
- PostgreSQL before 12 has no reply_time. There a standby's life is derived from its flush
  position across cycles (probes.postgres.track; the canary makes the primary's WAL move
  every cycle): WAL waiting beyond a flush position that has not moved for longer than
  `max_reply_age` is a stalled standby ("flush position stalled"). Each entry's `evidence`
  says how it was judged. When nothing can be judged (no WAL moved: canary off or failing),
  the verdict is UNKNOWN naming the missing evidence, never a silent OK; a first look (no
  earlier cycle, e.g. `--once`) counts a streaming standby and says so.
Fewer than `min_streaming`: CRITICAL, typed for the decision core: Failure.HUNG when a
standby is connected but its replies are stale or its flush position stalled (max_reply_age
already was the wait), else Failure.MISSING (not connected, or not yet streaming), which the
core holds for `reconnect_grace` and, after a role change, `role_change_grace`.

A counted standby whose *flush* lag (WAL the primary has that the standby has not yet
written durably) exceeds `warning_bytes`: WARNING. Not replay lag: replay is held back on
purpose by queries on the standby (a pg_dump there), which only the secondary can see; its
`replay_lag` check judges replay with the backup limits. Judged here, the same lag paged
from the node that cannot see the backup. Replay lag bytes stay in the details.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple

from watchdog.config import StandbysConfig
from watchdog.families import Family, detail, gauge
from watchdog.model import STANDBYS, CheckResult, Failure, Status
from watchdog.nagios import fmt, num, perf
from watchdog.probes.postgres import PgSnapshot, WalSender, format_lsn, snapshot_details, track
from watchdog.units import format_bytes, format_duration

PRIVILEGE_HINT = "grant pg_monitor to the watchdog's database role"
#: PostgreSQL 9.5/9.6 have no pg_monitor: only a superuser sees other sessions' details.
PRIVILEGE_HINT_9 = "PostgreSQL 9.x shows walsender details only to a superuser: connect as one"

# Values of an entry's `evidence` (public: documented in the README).
EV_REPLY_TIME = "reply_time"
EV_MOVED = "flush position moved"
EV_WAITING = "flush position waiting"
EV_STALLED = "flush position stalled"
EV_IDLE = "no WAL moved"
EV_FIRST = "first look"


def privilege_hint(server_version: Optional[int]) -> str:
    if server_version is not None and server_version < 100000:
        return PRIVILEGE_HINT_9
    return PRIVILEGE_HINT


def _evidence(sender: WalSender, snapshot: PgSnapshot, cfg: StandbysConfig) -> str:
    """How this walsender's liveness was judged on this server (see the module doc)."""
    if snapshot.has_reply_time:
        return EV_REPLY_TIME
    if sender.flush_moved is None:
        return EV_FIRST
    if sender.flush_moved:
        return EV_MOVED
    stalled = _stalled_for(sender, snapshot)
    if stalled is not None:
        return EV_STALLED if stalled > cfg.max_reply_age else EV_WAITING
    return EV_IDLE


def _stalled_for(sender: WalSender, snapshot: PgSnapshot) -> Optional[float]:
    if sender.flush_waiting_since is None or snapshot.taken_at is None:
        return None
    return max(0.0, snapshot.taken_at - sender.flush_waiting_since)


def _why_not_counted(sender: WalSender, cfg: StandbysConfig,
                     snapshot: Optional[PgSnapshot] = None) -> Optional[str]:
    """None if this walsender is a healthy streaming standby, else the reason it is not."""
    snapshot = snapshot if snapshot is not None else PgSnapshot(reachable=True)
    if sender.state is None:
        return f"state not visible ({privilege_hint(snapshot.server_version)})"
    if sender.state != "streaming":
        return f"state {sender.state}"
    if not snapshot.has_reply_time:
        stalled = _stalled_for(sender, snapshot)
        if stalled is not None and stalled > cfg.max_reply_age:
            return (f"flush position stalled at {format_lsn(sender.flush_lsn)} for "
                    f"{format_duration(stalled)} while the primary's WAL is at "
                    f"{format_lsn(snapshot.current_lsn)} (limit "
                    f"{format_duration(cfg.max_reply_age)}; no reply_time before "
                    "PostgreSQL 12)")
        return None
    if sender.reply_age is not None:
        if sender.reply_age > cfg.max_reply_age:
            return (f"no reply for {format_duration(sender.reply_age)} "
                    f"(limit {format_duration(cfg.max_reply_age)})")
        return None
    if sender.backend_age is not None and sender.backend_age > cfg.max_reply_age:
        return f"no reply since it connected {format_duration(sender.backend_age)} ago"
    return None  # just connected: no reply yet is normal


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 3)


def _flush_lag(sender: WalSender, current_lsn: Optional[int]) -> Optional[int]:
    """Bytes of WAL this primary has that the standby has not yet flushed (None: unknown)."""
    if current_lsn is None or sender.flush_lsn is None:
        return None
    return max(0, current_lsn - sender.flush_lsn)


def _entry(rows: List[WalSender], cfg: StandbysConfig, snapshot: PgSnapshot) -> Dict[str, Any]:
    """One standby (all its walsender rows): its best row decides."""
    judged = [(row, _why_not_counted(row, cfg, snapshot)) for row in rows]
    # Healthy rows first, then the freshest reply.
    judged.sort(key=lambda rw: (rw[1] is not None, rw[0].reply_age if rw[0].reply_age
                                is not None else 0.0))
    best, reason = judged[0]
    entry: Dict[str, Any] = {
        "application_name": best.application_name,
        "client_addr": best.client_addr,
        "state": best.state,
        "reply_age": _round(best.reply_age),
        "replay_lag_bytes": best.replay_lag_bytes,
        "flush_lag_bytes": _flush_lag(best, snapshot.current_lsn),
        "replay_lsn": format_lsn(best.replay_lsn),
        "sync_state": best.sync_state,
        "pids": [row.pid for row, _ in judged],
        "counted": reason is None,
        "evidence": _evidence(best, snapshot, cfg),
    }
    if not snapshot.has_reply_time:
        entry["flush_lsn"] = format_lsn(best.flush_lsn)
        entry["flush_stalled_for"] = _round(_stalled_for(best, snapshot))
    if reason is not None:
        entry["reason"] = reason
    if len(rows) > 1:
        entry["rows"] = len(rows)
        entry["other_states"] = [row.state for row, _ in judged[1:]]
    return entry


def _version_text(server_version: Optional[int]) -> str:
    if server_version is None:
        return "this PostgreSQL"
    major = server_version // 10000
    if major < 10:
        return f"PostgreSQL {major}.{server_version // 100 % 100}"
    return f"PostgreSQL {major}"


def _describe(entry: Dict[str, Any]) -> str:
    label = f"{entry['application_name'] or '?'}@{entry['client_addr'] or 'local'}"
    if not entry["counted"]:
        return f"{label} {entry['reason']}"
    parts = [label]
    if entry["reply_age"] is not None:
        parts.append(f"reply {format_duration(entry['reply_age'])} ago")
    if entry["replay_lag_bytes"] is not None:
        parts.append(f"replay lag {format_bytes(entry['replay_lag_bytes'])}")
    if entry.get("flush_lag_bytes") is not None:
        parts.append(f"flush lag {format_bytes(entry['flush_lag_bytes'])}")
    if entry.get("rows"):
        parts.append(f"({entry['rows']} walsender rows)")
    return " ".join(parts)


def _recheck_in(counted: List[Dict[str, Any]], cfg: StandbysConfig, snapshot: PgSnapshot
                ) -> Optional[float]:
    """Seconds until the stalest counted standby would pass max_reply_age.

    The daemon runs an extra cycle then (CheckResult.recheck_in, watchdog.daemon), so a standby
    that hangs with its TCP connection open is caught when its reply goes stale, not up to
    a whole interval later. Without reply_time (before 12) the clock is the time WAL has
    waited beyond a standby's flush position; the canary just written starts one.
    """
    if not snapshot.has_reply_time:
        waits = [e["flush_stalled_for"] for e in counted if e.get("flush_stalled_for") is not None]
        canary = snapshot.canary
        if canary is not None and canary.ok and counted:
            waits.append(0.0)
        if not waits:
            return None
        return _round(max(0.0, cfg.max_reply_age - max(waits)))
    ages = [e["reply_age"] for e in counted if e["reply_age"] is not None]
    if not ages:
        return None
    return _round(max(0.0, cfg.max_reply_age - max(ages)))


def check_standbys(snapshot: PgSnapshot, cfg: StandbysConfig,
                   previous: Optional[PgSnapshot] = None) -> CheckResult:
    """See `_check_standbys`; the deadline it computed becomes the typed `recheck_in` too."""
    result = _check_standbys(snapshot, cfg, previous)
    recheck = result.details.get("recheck_in")
    return dataclasses.replace(result, recheck_in=None if recheck is None else float(recheck))


def _check_standbys(snapshot: PgSnapshot, cfg: StandbysConfig,
                   previous: Optional[PgSnapshot] = None) -> CheckResult:
    """Count the healthy streaming standbys of this primary.

    `previous`: the previous cycle's snapshot, needed before PostgreSQL 12 (no reply_time)
    to see whether each standby's flush position moves (see probes.postgres.track; a
    snapshot the runner has already tracked is used as it is).
    """
    snapshot = track(snapshot, previous)
    details = snapshot_details(snapshot)
    if not snapshot.answered:
        return CheckResult(STANDBYS, Status.UNKNOWN,
                           f"PostgreSQL unreachable: {snapshot.error} (see postgres_role)",
                           details)
    if snapshot.in_recovery:
        return CheckResult(
            STANDBYS, Status.UNKNOWN,
            "PostgreSQL is in recovery (a standby), not a primary: no standbys to count "
            "(see postgres_role)",
            details,
        )

    groups: Dict[Tuple[str, str], List[WalSender]] = {}
    backups = []
    for sender in snapshot.walsenders:
        if sender.is_backup:
            backups.append({"pid": sender.pid, "application_name": sender.application_name,
                            "client_addr": sender.client_addr, "state": sender.state})
            continue
        groups.setdefault(sender.key, []).append(sender)
    entries = [_entry(rows, cfg, snapshot) for rows in groups.values()]
    counted = [e for e in entries if e["counted"]]
    others = [e for e in entries if not e["counted"]]
    details.update({
        "streaming": len(counted),
        "min_streaming": cfg.min_streaming,
        "max_reply_age": cfg.max_reply_age,
        "warning_bytes": cfg.warning_bytes,
        "standbys": entries,
        "backup_walsenders": backups,
        "recheck_in": _recheck_in(counted, cfg, snapshot),
        "evidence": EV_REPLY_TIME if snapshot.has_reply_time else "flush position",
    })
    if not snapshot.has_reply_time and snapshot.canary is None:
        # Not asked for a canary: the runner asks on every cycle of a DRBD primary with
        # [canary] on. Said from the first cycle on, so the daemon's first log names it.
        details["advice"] = ("turn [canary] on (the default) on both nodes: "
                             f"{_version_text(snapshot.server_version)} has no reply_time, "
                             "so only WAL that moves shows a standby is alive")

    if len(counted) < cfg.min_streaming:
        if any(e["state"] is None for e in others):
            return CheckResult(
                STANDBYS, Status.UNKNOWN,
                f"cannot see walsender states: {privilege_hint(snapshot.server_version)}",
                details)
        if entries:
            listing = "; ".join(_describe(e) for e in entries)
            summary = (f"{len(counted)} of {cfg.min_streaming} required standbys streaming: "
                       f"{listing}")
        else:
            summary = (f"no standby connected (0 of {cfg.min_streaming} required "
                       "standbys streaming)")
        # Streaming but not counted can only be a stale reply or a stalled flush: hung.
        hung = any(e["state"] == "streaming" for e in others)
        return CheckResult(STANDBYS, Status.CRITICAL, summary, details,
                           failure=Failure.HUNG if hung else Failure.MISSING)

    lagging = [e for e in counted
               if e["flush_lag_bytes"] is not None and e["flush_lag_bytes"] > cfg.warning_bytes]
    tail = ""
    if others:
        tail = "; not counted: " + "; ".join(_describe(e) for e in others)
    if lagging:
        listing = "; ".join(
            f"{_describe(e)} > {format_bytes(cfg.warning_bytes)}" for e in lagging)
        return CheckResult(STANDBYS, Status.WARNING,
                           f"standby flush lag too large: {listing}{tail}", details)
    if not counted:
        return CheckResult(
            STANDBYS, Status.OK,
            f"no standby streaming (min_streaming {cfg.min_streaming}){tail}", details)
    unverified = [e for e in counted if e["evidence"] == EV_IDLE]
    if unverified and len(counted) - len(unverified) < cfg.min_streaming:
        version = _version_text(snapshot.server_version)
        advice = ("turn [canary] on (the default) on both nodes so the primary's WAL moves "
                  "every cycle")
        if snapshot.canary is not None and snapshot.canary.ok:
            advice = "the canary was written, but its WAL did not move the flush position"
        elif snapshot.canary is not None:
            advice = f"the canary write failed ({snapshot.canary.error})"
        details["advice"] = advice
        listing = ", ".join(f"{e['application_name'] or '?'}@{e['client_addr'] or 'local'}"
                            for e in unverified)
        return CheckResult(
            STANDBYS, Status.UNKNOWN,
            f"cannot tell whether {listing} still receives WAL: {version} has no reply_time "
            f"and no WAL moved since the last cycle; {advice}{tail}", details)
    noun = "standby" if len(counted) == 1 else "standbys"
    listing = "; ".join(_describe(e) for e in counted)
    if any(e["evidence"] == EV_FIRST for e in counted):
        tail += (f" (first look: {_version_text(snapshot.server_version)} has no reply_time, "
                 "a hang shows from the next cycle on)")
    return CheckResult(
        STANDBYS, Status.OK,
        f"{len(counted)} {noun} streaming (min {cfg.min_streaming}): {listing}{tail}", details)


def metric_families(result: Optional[CheckResult]) -> List[Family]:
    """`ha_watchdog_standbys_streaming` from this cycle's result."""
    return [gauge("standbys_streaming", "Standbys streaming with a fresh reply (primary).", (),
                  detail(result, "streaming"))]


def perfdata(check: CheckResult) -> List[str]:
    """`--once --nagios` performance data (watchdog.nagios): standbys streaming against
    the minimum, the oldest reply and the largest lag."""
    d = check.details
    minimum = num(d.get("min_streaming"))
    out = [perf("standbys_streaming", num(d.get("streaming")), "", "",
                f"{fmt(minimum)}:" if minimum else "")]
    entries = [e for e in d.get("standbys") or () if isinstance(e, Mapping)]
    ages = [a for a in (num(e.get("reply_age")) for e in entries) if a is not None]
    lags = [b for b in (num(e.get("replay_lag_bytes")) for e in entries) if b is not None]
    if entries:
        out.append(perf("standby_reply_age", max(ages) if ages else None, "s", "",
                        fmt(num(d.get("max_reply_age")))))
        out.append(perf("standby_replay_lag_bytes", max(lags) if lags else None, "B",
                        fmt(num(d.get("warning_bytes")))))
    return out
