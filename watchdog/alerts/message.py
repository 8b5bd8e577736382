"""Titles and bodies of the notifications the decision core emits.

Why here: the engine decides *that* something is sent; this module decides what a person
reads at 3 a.m.: what is wrong, since when, the numbers, this node's role and the first
command to run (the manual checks of the vendor's HA guide). The title is stable per node and
check (`[mail1] replay_lag`) so PagerDuty and friends can resolve an incident by it; the apprise
notify type carries the meaning (warning, failure, success, info). Ids are deterministic
(node, check, kind, transition time) so a replayed cycle re-creates the same id.

Pure: no clock, no I/O; times are parameters and are printed in UTC.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from watchdog.alerts.notification import (
    DEESCALATION,
    ESCALATION,
    FLAPPING,
    NO_LONGER_APPLIES,
    PROBLEM,
    RECOVERY,
    REMINDER,
    ROLE_CHANGE,
    SEV_CRITICAL,
    SEV_INFO,
    SEV_RECOVERY,
    SEV_WARNING,
    TYPE_INFO,
    TYPE_SUCCESS,
    Notification,
    make_id,
    notify_type_for,
    title_for,
)
from watchdog.model import DRBD, POSTGRES_ROLE, REPLAY_LAG, SERVICES, STANDBYS
from watchdog.units import format_bytes, format_duration

ROLE_TITLE = "role"  # title_for(node, ROLE_TITLE) == "[mail1] role"

_MAX_DETAILS = 20
_MAX_VALUE = 200

_DRBD_LOOK = (
    "drbd-overview (DRBD 8.4; expect Connected Primary/Secondary UpToDate/UpToDate), "
    "or drbdadm status, or cat /proc/drbd; StandAlone means the nodes are not connected "
    "(split brain?)"
)

# The first thing to look at, per check: the manual commands of the vendor's HA guide.
FIRST_LOOK: Dict[str, str] = {
    DRBD: _DRBD_LOOK,
    SERVICES: (
        "service greenarrow status (abnormal services are shown in red; hvmail-qmail-smtpd3 "
        "and hvmail-dnscache are down by default)"
    ),
    STANDBYS: (
        'on the primary: psql -x -c "SELECT application_name, client_addr, state, sent_lsn, '
        'flush_lsn, replay_lsn, reply_time FROM pg_stat_replication" (one streaming row per '
        'standby)'
    ),
    REPLAY_LAG: (
        'on the secondary: psql -c "SELECT EXTRACT(EPOCH FROM now() - '
        'pg_last_xact_replay_timestamp())" and psql -x -c "SELECT * FROM pg_stat_wal_receiver" '
        "(no row: not connected to the primary; compare received and replayed LSNs)"
    ),
    POSTGRES_ROLE: (
        'psql -c "SELECT pg_is_in_recovery()" (t on the secondary, f on the primary) and the '
        "PostgreSQL log (GreenArrow: /var/hvmail/log/postgres/)"
    ),
    ROLE_TITLE: "on both nodes: " + _DRBD_LOOK + "; then service greenarrow status on the primary",
}


def first_look(check: Optional[str]) -> str:
    return FIRST_LOOK.get(check or "", "ha-watchdog --once on this node")


def format_time(epoch: Optional[float]) -> str:
    """`2024-05-04 23:10:00 UTC`; never raises."""
    if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or not math.isfinite(epoch):
        return "an unknown time"
    try:
        return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "an unknown time"


def severity_for(level: str) -> str:
    """Routing class of a confirmed level: critical is critical, warning and unknown warn."""
    return SEV_CRITICAL if level == "critical" else SEV_WARNING


@dataclass(frozen=True)
class Facts:
    """What the engine last saw of one check: the latest raw result, plus where it ran."""

    node: str
    check: str
    role: str
    status: str = "ok"
    summary: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- notes (relaxation)


def relaxed_note(reason: str, since: Optional[float]) -> str:
    """The check ran with its relaxed (backup) limits and still alerts."""
    return (
        f"Relaxed limits in effect ({reason}, since {format_time(since)}): "
        "the check used its backup limits and this result exceeds them."
    )


def ceiling_note(reason: str, since: Optional[float]) -> str:
    """A relaxed check that is not held: critical is the ceiling."""
    return f"Relaxed by {reason} since {format_time(since)}, but a critical problem is never held."


def expired_note(reason: str) -> str:
    return f"Backup relaxation over: {reason}."


def maintenance_note(reason: str, started: float, ended: float) -> str:
    """On a page held back by maintenance and sent when it ended."""
    return (
        f"Held back by maintenance ({reason}) from {format_time(started)} to "
        f"{format_time(ended)}; still open when it ended, so it is sent now."
    )


def first_line(text: str, limit: int = 300) -> str:
    """The first non-blank line of `text`, cut at `limit` characters."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def headline(note: Notification) -> str:
    """The first line of a notification's body (what it says in one line)."""
    return first_line(note.body)


def held_note(reason: str, since: Optional[float], released: str) -> str:
    return (
        f"Held by {reason} since {format_time(since)}; still there when {released}, "
        "so it is sent now."
    )


# ---------------------------------------------------------------- body parts


def _value_text(key: str, value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    elif isinstance(value, (dict, list, tuple)):
        try:
            text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
        except (TypeError, ValueError):
            text = str(value)
    else:
        text = str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        if key.endswith("_seconds") or key.endswith("_age") or key.endswith("_lag"):
            text += f" ({format_duration(float(value))})"
        elif key.endswith("_bytes"):
            text += f" ({format_bytes(value)})"
    if len(text) > _MAX_VALUE:
        text = text[: _MAX_VALUE - 3] + "..."
    return text


def details_lines(details: Mapping[str, Any]) -> List[str]:
    """The numbers, one `  key: value` line each (human units added for *_seconds/*_bytes)."""
    if not isinstance(details, Mapping):
        return []
    lines = []
    for index, (key, value) in enumerate(details.items()):
        if index == _MAX_DETAILS:
            lines.append(f"  ... {len(details) - _MAX_DETAILS} more")
            break
        lines.append(f"  {key}: {_value_text(str(key), value)}")
    return lines


def _body(
    headline: str,
    facts: Facts,
    lines: Sequence[str],
    notes: Sequence[str] = (),
    with_numbers: bool = True,
) -> str:
    out = [headline]
    if facts.summary:
        out.append(facts.summary)
    out.extend(lines)
    if facts.status == "unknown":
        out.append("The check could not run (UNKNOWN); see the reason above.")
    if with_numbers:
        numbers = details_lines(facts.details)
        if numbers:
            out.append("Numbers:")
            out.extend(numbers)
    out.append(f"Role: {facts.node} is {_role_text(facts.role)}")
    out.extend(notes)
    out.append(f"First look: {first_look(facts.check)}")
    return "\n".join(out)


def _role_text(role: str) -> str:
    if role in ("primary", "secondary"):
        return f"the {role}"
    return "of unknown role (DRBD role not readable)"


def _where(facts: Facts) -> str:
    return f"{facts.check} on {facts.node} ({facts.role})"


def _since_line(since: Optional[float], now: float) -> str:
    if since is None:
        return "Since: an unknown time"
    return f"Since: {format_time(since)} ({format_duration(max(0.0, now - since))} ago)"


def _make(
    kind: str,
    severity: str,
    notify_type: str,
    facts: Facts,
    body: str,
    now: float,
    at: float,
    problem_severity: Optional[str] = None,
) -> Notification:
    return Notification(
        id=make_id(facts.node, facts.check, kind, at),
        kind=kind,
        severity=severity,
        notify_type=notify_type,
        title=title_for(facts.node, facts.check),
        body=body,
        node=facts.node,
        created=now,
        check=facts.check,
        problem_severity=problem_severity,
    )


# ---------------------------------------------------------------- notifications


def problem(
    facts: Facts, level: str, since: float, now: float, at: float, notes: Sequence[str] = ()
) -> Notification:
    """A confirmed problem (warning, critical or unknown)."""
    severity = severity_for(level)
    headline = f"PROBLEM {level.upper()}: {_where(facts)}"
    body = _body(headline, facts, [_since_line(since, now)], notes)
    return _make(PROBLEM, severity, notify_type_for(severity), facts, body, now, at)


def _level_change(
    kind: str,
    headline: str,
    facts: Facts,
    new: str,
    since: float,
    now: float,
    at: float,
    problem_severity: str,
    notes: Sequence[str],
) -> Notification:
    severity = severity_for(new)
    lines = [_since_line(since, now) + f"; {new} since {format_time(at)}"]
    body = _body(headline, facts, lines, notes)
    return _make(kind, severity, notify_type_for(severity), facts, body, now, at, problem_severity)


def escalation(
    facts: Facts,
    old: str,
    new: str,
    since: float,
    now: float,
    at: float,
    problem_severity: str,
    notes: Sequence[str] = (),
) -> Notification:
    """The open problem got worse (e.g. warning -> critical)."""
    headline = f"ESCALATION {old.upper()} -> {new.upper()}: {_where(facts)}"
    return _level_change(ESCALATION, headline, facts, new, since, now, at, problem_severity, notes)


def deescalation(
    facts: Facts,
    old: str,
    new: str,
    since: float,
    now: float,
    at: float,
    problem_severity: str,
    notes: Sequence[str] = (),
) -> Notification:
    """The open problem got less bad (critical -> warning) but is not over."""
    headline = f"DEESCALATION {old.upper()} -> {new.upper()}: {_where(facts)} (not recovered yet)"
    return _level_change(
        DEESCALATION, headline, facts, new, since, now, at, problem_severity, notes
    )


def recovery(
    facts: Facts,
    since: float,
    ok_since: float,
    now: float,
    worst: str,
    problem_severity: str,
    notes: Sequence[str] = (),
) -> Notification:
    """The problem is over; says how long it lasted."""
    lasted = format_duration(max(0.0, ok_since - since))
    headline = f"RECOVERY: {_where(facts)} is OK again after {lasted}"
    lines = [
        f"The problem (worst: {worst}) lasted {lasted}: from {format_time(since)} "
        f"to {format_time(ok_since)}."
    ]
    body = _body(headline, facts, lines, notes)
    return _make(RECOVERY, SEV_RECOVERY, TYPE_SUCCESS, facts, body, now, ok_since, problem_severity)


def reminder(
    facts: Facts,
    level: str,
    since: float,
    now: float,
    due: float,
    problem_severity: str,
    notes: Sequence[str] = (),
) -> Notification:
    """The problem is still open; keeps the problem's notify type."""
    severity = severity_for(level)
    open_for = format_duration(max(0.0, now - since))
    headline = f"REMINDER {level.upper()}: {_where(facts)} still not OK after {open_for}"
    body = _body(headline, facts, [_since_line(since, now)], notes)
    return _make(
        REMINDER, severity, notify_type_for(severity), facts, body, now, due, problem_severity
    )


def no_longer_applies(
    facts: Facts,
    level: str,
    since: float,
    now: float,
    at: float,
    old_role: str,
    new_role: str,
    problem_severity: str,
) -> Notification:
    """The role changed and this check does not run on the new role: closed, not recovered."""
    headline = (
        f"NO LONGER APPLIES: {facts.check} on {facts.node}: role changed {old_role} -> {new_role}"
    )
    lines = [
        f"The open {level} problem (since {format_time(since)}) is closed because "
        f"{facts.check} is not checked on a {new_role}; it did NOT recover.",
        f"Last seen: {facts.summary}" if facts.summary else "",
    ]
    closed = Facts(facts.node, facts.check, new_role, "ok", "", {})
    body = _body(headline, closed, [line for line in lines if line], with_numbers=False)
    return _make(
        NO_LONGER_APPLIES, SEV_RECOVERY, TYPE_SUCCESS, facts, body, now, at, problem_severity
    )


def flapping(
    facts: Facts,
    levels: Sequence[str],
    changes: int,
    window: float,
    quiet_for: float,
    level: str,
    since: float,
    now: float,
    at: float,
    problem_severity: Optional[str],
) -> Notification:
    """Sent once instead of a page per flip; says what it flapped between."""
    severity = severity_for(level)
    between = join_and(levels)
    headline = f"FLAPPING {level.upper()}: {_where(facts)} flaps between {between}"
    lines = [
        f"{changes} changes within {format_duration(window)} (first problem {format_time(since)}).",
        f"Alerts for {facts.check} are paused until it stays stable for "
        f"{format_duration(quiet_for)}; then its recovery or its current state is sent.",
    ]
    body = _body(headline, facts, lines)
    return _make(
        FLAPPING, severity, notify_type_for(severity), facts, body, now, at, problem_severity
    )


def role_change(
    node: str,
    old: str,
    new: str,
    at: float,
    now: float,
    last_known: Optional[str] = None,
    graces: Sequence[Tuple[str, float]] = (),
) -> Notification:
    """This node's DRBD role changed (informational). `graces`: (check, seconds) of the
    checks that hold a missing peer for a while after a role change (role_change_grace)."""
    title = title_for(node, ROLE_TITLE)
    lines = [f"ROLE CHANGE: {node} is now {new} (was {old}) since {format_time(at)}"]
    if new == "unknown":
        lines.append("The DRBD role cannot be read; the drbd check says why.")
    elif old == "unknown" and last_known and last_known != new:
        lines.append(f"Last known role before that: {last_known}.")
    if new in ("primary", "secondary"):
        lines.append(f"Checks now run for the {new} role.")
    for check, grace in graces:
        lines.append(
            f"Grace after this change: {check} pages a standby that is not streaming only if "
            f"it is still missing at {format_time(at + grace)} ({format_duration(grace)}, "
            f"{check}.role_change_grace)."
        )
    lines.append(f"First look: {first_look(ROLE_TITLE)}")
    return Notification(
        id=make_id(node, ROLE_TITLE, ROLE_CHANGE, at),
        kind=ROLE_CHANGE,
        severity=SEV_INFO,
        notify_type=TYPE_INFO,
        title=title,
        body="\n".join(lines),
        node=node,
        created=now,
        check=None,
        problem_severity=None,
    )


def join_and(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
