"""What an alert says beyond its headline: the few numbers that matter, and a first step.

Why a module of its own: a person woken at 3 a.m. needs three to five numbers in human
units (not every key of the check's details, not JSON) and one thing to do that fits *this*
failure: a standby that is not streaming is looked at on the standby, a DRBD split brain
needs DRBD's recovery steps, a paused replay needs a resume. The full numbers stay in
`--once --json` and the metrics.

Pure: the check's latest details in, lines of text out. Details come from JSON (the engine
persists them), so every value is checked before it is used: odd details give fewer
numbers, never an exception, a repr or a JSON dump.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from watchdog.alerts.advice_disks import (
    backup_log_numbers,
    backup_log_step,
    storage_numbers,
    storage_step,
    wal_numbers,
    wal_step,
)
from watchdog.alerts.detailtext import PG_LOG
from watchdog.alerts.detailtext import as_bytes as _bytes
from watchdog.alerts.detailtext import as_duration as _dur
from watchdog.alerts.detailtext import as_map as _map
from watchdog.alerts.detailtext import as_names as _names
from watchdog.alerts.detailtext import as_number as _num
from watchdog.alerts.detailtext import as_text as _text
from watchdog.alerts.detailtext import limits_text as _limits
from watchdog.model import (
    BACKUP_LOG,
    DRBD,
    POSTGRES_ROLE,
    REPLAY_LAG,
    SERVICES,
    STANDBYS,
    STORAGE,
    WAL,
)

MAX_NUMBERS = 5


# ---------------------------------------------------------------- numbers


def _replay_lag_numbers(d: Mapping[str, Any]) -> List[str]:
    out = []
    limits = _map(d.get("limits"))
    lag = _dur(d.get("lag_seconds"))
    if lag:
        out.append(f"replay lag {lag}" + _limits(("warning over", _dur(limits.get("warning"))),
                                                 ("critical over", _dur(limits.get("critical")))))
    gap = _bytes(d.get("lag_bytes"))
    if gap:
        out.append(f"{gap} received but not replayed"
                   + _limits(("warning over", _bytes(limits.get("warning_bytes"))),
                             ("critical over", _bytes(limits.get("critical_bytes")))))
    receiver = d.get("walreceiver")
    if isinstance(receiver, Mapping):
        host = _text(receiver.get("sender_host"))
        port = _num(receiver.get("sender_port"))
        source = f" from {host}" + (f":{int(port)}" if port is not None else "") if host else ""
        age = _dur(receiver.get("last_msg_receipt_age"))
        status = _text(receiver.get("status")) or "unknown state"
        text = f"WAL receiver {status}{source}"
        if age:
            text += f", last message from the primary {age} ago" + _limits(
                ("limit", _dur(d.get("max_receive_age"))))
        out.append(text)
    elif "walreceiver" in d:
        out.append("no WAL receiver: this standby is not connected to the primary")
    paused = _text(d.get("replay_paused"))
    if paused and paused != "not paused":
        out.append(f"replay {paused}")
    if d.get("relaxed") is True:
        out.append("backup limits in effect (a backup window or a running backup)")
    return out


def _standby_line(entry: Mapping[str, Any]) -> Optional[str]:
    name = _text(entry.get("application_name")) or "standby"
    addr = _text(entry.get("client_addr")) or "local socket"
    state = _text(entry.get("state")) or "state hidden (no pg_monitor?)"
    parts = [f"{name}@{addr}: {state}"]
    age = _dur(entry.get("reply_age"))
    if age:
        parts.append(f"last reply {age} ago")
    lag = _bytes(entry.get("replay_lag_bytes"))
    if lag:
        parts.append(f"replay {lag} behind")
    return ", ".join(parts)


def _standbys_numbers(d: Mapping[str, Any]) -> List[str]:
    out = []
    streaming = _num(d.get("streaming"))
    minimum = _num(d.get("min_streaming"))
    if streaming is not None:
        want = f" (at least {int(minimum)} wanted)" if minimum is not None else ""
        out.append(f"{int(streaming)} standby(s) streaming with a fresh reply{want}")
    entries = [e for e in d.get("standbys") or () if isinstance(e, Mapping)] \
        if isinstance(d.get("standbys"), (list, tuple)) else []
    if not entries and streaming is not None:
        out.append("no walsender at all: no standby is connected to this primary")
    for entry in entries[:3]:
        line = _standby_line(entry)
        if line:
            out.append(line)
    limit = _dur(d.get("max_reply_age"))
    if limit and entries:
        out.append(f"a reply older than {limit} counts as stale")
    return out


def _drbd_line(entry: Mapping[str, Any]) -> Optional[str]:
    name = _text(entry.get("name"))
    if not name:
        return None
    words = [_text(entry.get("cstate")) or "?",
             f"{_text(entry.get('role')) or '?'}/{_text(entry.get('peer_role')) or '?'}",
             f"{_text(entry.get('disk')) or '?'}/{_text(entry.get('peer_disk')) or '?'}"]
    text = f"{name}: " + " ".join(words)
    percent = _num(entry.get("sync_percent"))
    if percent is not None and percent < 100:
        eta = _dur(entry.get("eta_seconds"))
        text += f", resync {percent:.1f}%" + (f" (ETA {eta})" if eta else "")
    return text


def _drbd_numbers(d: Mapping[str, Any]) -> List[str]:
    entries = d.get("resources")
    out = [line for line in (_drbd_line(e) for e in entries if isinstance(e, Mapping))
           if line] if isinstance(entries, (list, tuple)) else []
    return out[:4]


_SERVICE_LISTS = (
    ("down", "down"),
    ("crash_looping", "crash-looping (up 0-1 s, a new pid each look)"),
    ("want_up", "down, want up"),
    ("errors", "not supervised (svstat error)"),
    ("paused", "paused"),
    ("stuck_stopping", "stuck in want down"),
)


def _services_numbers(d: Mapping[str, Any]) -> List[str]:
    out = []
    for key, label in _SERVICE_LISTS:
        names = _names(d.get(key))
        if names:
            out.append(f"{label}: {names}")
    services = d.get("services")
    if isinstance(services, (list, tuple)):
        items = [s for s in services if isinstance(s, Mapping)]
        up = sum(1 for s in items if s.get("state") == "up")
        out.append(f"{up} of {len(items)} services up")
    return out


def _version(number: Any) -> Optional[str]:
    value = _num(number)
    if value is None or value <= 0:
        return None
    value = int(value)
    if value >= 100000:
        return f"{value // 10000}.{value % 10000}"
    return f"{value // 10000}.{value // 100 % 100}.{value % 100}"


def _postgres_numbers(d: Mapping[str, Any]) -> List[str]:
    out = []
    if d.get("reachable") is False:
        out.append("PostgreSQL: not reachable")
    elif d.get("in_recovery") is True:
        out.append("PostgreSQL: in recovery (a standby)")
    elif d.get("in_recovery") is False:
        out.append("PostgreSQL: not in recovery (a primary)")
    role = _text(d.get("drbd_role"))
    if role:
        out.append(f"DRBD role: {role}")
    version = _version(d.get("server_version"))
    if version:
        out.append(f"server version {version}")
    return out


_NUMBERS: Dict[str, Callable[[Mapping[str, Any]], List[str]]] = {
    STORAGE: storage_numbers,
    REPLAY_LAG: _replay_lag_numbers,
    STANDBYS: _standbys_numbers,
    WAL: wal_numbers,
    DRBD: _drbd_numbers,
    SERVICES: _services_numbers,
    POSTGRES_ROLE: _postgres_numbers,
    BACKUP_LOG: backup_log_numbers,
}


def key_numbers(check: Optional[str], details: Any) -> List[str]:
    """At most MAX_NUMBERS short lines, human units, for the check's latest details."""
    d = _map(details)
    fn = _NUMBERS.get(check or "")
    try:
        out = fn(d) if fn is not None else []
    except Exception:  # noqa: BLE001 - odd details cost numbers, never the alert
        out = []
    error = _text(d.get("error"))
    if error and not any(error in line for line in out):
        out.append(f"error: {error}")
    return out[:MAX_NUMBERS]


# ---------------------------------------------------------------- first step


def _resources(d: Mapping[str, Any]) -> List[Mapping[str, Any]]:
    entries = d.get("resources")
    return [e for e in entries if isinstance(e, Mapping)] if isinstance(entries, (list, tuple)) else []


_SYNCING = ("SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT", "StartingSyncS",
            "StartingSyncT", "WFBitMapS", "WFBitMapT", "WFSyncUUID", "VerifyS", "VerifyT")


def split_brain_steps(resource: str) -> str:
    """DRBD's manual split-brain recovery (8.4 syntax), spelled out."""
    return (
        f"split brain on {resource}: DRBD will not reconnect by itself. 1) Decide which node's "
        "data survives (normally the one GreenArrow ran on as primary); copy out anything "
        "the other node wrote since the split, it will be discarded. 2) On the other node "
        f"(the victim): drbdadm disconnect {resource}; drbdadm secondary {resource}; "
        f"drbdadm connect --discard-my-data {resource}. 3) On the survivor, if it is "
        f"StandAlone too: drbdadm connect {resource}. 4) Watch the resync: cat /proc/drbd "
        "(or drbdadm status) on both nodes."
    )


def _resource_name(entry: Mapping[str, Any]) -> str:
    """The name drbdadm takes. /proc/drbd shows only minors (named `drbd0` here): then a
    placeholder that says where to find the resource's name."""
    name = _text(entry.get("name")) or ""
    if not name or re.match(r"^drbd\d+$", name):
        device = f"/dev/{name}" if name else "the device"
        return f"<resource of {device}: see drbdadm status>"
    return name


def _drbd_step(d: Mapping[str, Any], node: str) -> Optional[str]:
    resources = _resources(d)
    for entry in resources:
        if entry.get("cstate") == "StandAlone":
            return split_brain_steps(_resource_name(entry))
    for entry in resources:
        name = _resource_name(entry)
        if entry.get("role") == "Primary" and entry.get("peer_role") == "Primary":
            return (f"both nodes are Primary on {name}: make the node that must not serve "
                    "secondary (GreenArrow: hvmail_make_secondary on it), then check "
                    "drbdadm status on both; if they disconnected, follow the split-brain "
                    "recovery in DRBD's guide")
        cstate = _text(entry.get("cstate")) or ""
        if cstate in _SYNCING:
            return ("resync in progress: nothing to do but watch the ETA "
                    "(cat /proc/drbd or drbdadm status); it recovers by itself")
        if cstate and cstate != "Connected":
            return (f"{name} is {cstate}: the peer is not connected. On both nodes: "
                    "drbdadm status (or cat /proc/drbd); is the other node up, can the nodes "
                    f"reach each other on DRBD's port? Then drbdadm connect {name} on a node "
                    "that shows StandAlone")
        for key in ("disk", "peer_disk"):
            disk = _text(entry.get(key)) or ""
            if disk in ("Failed", "Diskless", "Outdated", "Inconsistent"):
                where = "this node's" if key == "disk" else "the peer's"
                return (f"{where} disk of {name} is {disk}: drbdadm status and the kernel "
                        "log (dmesg | grep -i drbd) on that node; a Failed/Diskless disk "
                        f"needs drbdadm attach {name} once the disk is repaired")
    return None


def _postgres_step(d: Mapping[str, Any], node: str) -> Optional[str]:
    if d.get("reachable") is False or (d.get("reachable") is True
                                       and d.get("in_recovery") is None):
        return (f"PostgreSQL on {node} does not answer: is it running (ps -C postgres -o "
                f"pid,args)? Its log: tail -n 100 {PG_LOG} (GreenArrow); then service "
                "greenarrow status")
    role = d.get("drbd_role")
    if role == "secondary" and d.get("in_recovery") is False:
        return (f"{node} is the DRBD secondary but its PostgreSQL is NOT in recovery: it was "
                "promoted, a second primary. Stop it before anything writes to it, then "
                "rebuild it as a standby of the primary. Compare SELECT pg_is_in_recovery() "
                "on both nodes")
    if role == "primary" and d.get("in_recovery") is True:
        return (f"{node} is the DRBD primary but its PostgreSQL is still a standby: the "
                "failover did not finish. Its log (tail -n 100 " + PG_LOG + "); on "
                "GreenArrow re-run hvmail_make_primary on this node once the cause is fixed")
    return None


def _standbys_step(d: Mapping[str, Any], node: str) -> Optional[str]:
    if _num(d.get("streaming")) is None:
        return None
    entries = d.get("standbys") if isinstance(d.get("standbys"), (list, tuple)) else []
    if not entries:
        return ("no standby is connected: look at the standby (the other node, the DRBD "
                "secondary), not this primary. There: is PostgreSQL running (ps -C postgres "
                f"-o pid,args), what does its log say (tail -n 100 {PG_LOG})? Then here: "
                'psql -x -c "SELECT application_name, client_addr, state, reply_time FROM '
                'pg_stat_replication"')
    return ("a standby is connected but not streaming with a fresh reply: on the standby "
            '(the other node) psql -x -c "SELECT * FROM pg_stat_wal_receiver" and its log '
            f"(tail -n 100 {PG_LOG}); a reply that stays old while connected means a hung "
            "standby (restart its PostgreSQL)")


def _replay_step(d: Mapping[str, Any], node: str) -> Optional[str]:
    receiver = d.get("walreceiver")
    paused = d.get("replay_paused")
    if isinstance(paused, str) and paused not in ("not paused", ""):
        return ("replay is paused: if nobody paused it on purpose, resume it: psql -c "
                '"SELECT pg_wal_replay_resume()" (9.x: pg_xlog_replay_resume())')
    streaming = isinstance(receiver, Mapping) and receiver.get("status") == "streaming"
    if not streaming and "walreceiver" in d:
        return (f"{node} does not receive WAL from the primary: here psql -x -c \"SELECT * "
                f"FROM pg_stat_wal_receiver\" and its log (tail -n 100 {PG_LOG}) for "
                "connection or authentication errors; on the primary (the other node): is "
                "PostgreSQL up, does pg_stat_replication list this standby?")
    return None


def _services_step(d: Mapping[str, Any], node: str) -> Optional[str]:
    for key in ("crash_looping", "down", "want_up", "errors"):
        names = d.get(key)
        if isinstance(names, (list, tuple)) and names and isinstance(names[0], str):
            name = names[0]
            if key == "crash_looping":
                return (f"{name} restarts over and over: its log under /var/hvmail/log/ says "
                        f"why it exits; svstat /service/{name} shows the uptime")
            if key == "errors":
                return (f"{name} is not supervised: is svscan running (ps -C svscan)? "
                        f"svstat /service/{name}")
            return (f"svstat /service/{name}; its log under /var/hvmail/log/; start it with "
                    f"svc -u /service/{name} (service greenarrow status shows them all)")
    return None


_STEPS: Dict[str, Callable[[Mapping[str, Any], str], Optional[str]]] = {
    STORAGE: storage_step,
    DRBD: _drbd_step,
    POSTGRES_ROLE: _postgres_step,
    STANDBYS: _standbys_step,
    REPLAY_LAG: _replay_step,
    SERVICES: _services_step,
    BACKUP_LOG: backup_log_step,
    WAL: wal_step,
}


def first_step(check: Optional[str], details: Any, node: str, status: str,
               fallback: str) -> str:
    """The step that fits this failure; `fallback` (the check's manual command) otherwise."""
    d = _map(details)
    fn = _STEPS.get(check or "")
    step = None
    if fn is not None:
        try:
            step = fn(d, node)
        except Exception:  # noqa: BLE001 - odd details cost the advice, never the alert
            step = None
    if status == "unknown" and step is None:
        step = (f"the check could not run; run ha-watchdog --once -v on {node} to see why, "
                f"then: {fallback}")
    return step or fallback


def subject_summary(summary: str, limit: int = 90) -> str:
    """The check's summary shortened for a title: its first clause, at most `limit`."""
    text = " ".join(summary.split())
    for mark in ("; ", ". "):
        if mark in text:
            text = text.split(mark, 1)[0]
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def joined(lines: Sequence[str]) -> str:
    return "; ".join(lines)
