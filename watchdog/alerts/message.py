"""Titles and bodies of the notifications the decision core emits.

Why here: the engine decides *that* something is sent; this module decides what a person
reads at 3 a.m.: what is wrong, since when, the few numbers that matter in human units, this
node's role and the first step that fits the failure (watchdog.alerts.advice). Two titles:
`title` is stable per node and check (`[mail1] replay_lag`): incidents (PagerDuty's dedup
key), digests and the outbox key on it; `subject` is what chat and email show, the stable
title followed by what is wrong (`[mail1] replay_lag CRITICAL: replay lag 6m52s`). The
apprise notify type carries the meaning (warning, failure, success, info). The ids made
here are (node, check, kind, transition time); watchdog.alerts.compose, which calls these
builders for the engine's events, adds the event's sequence number. The full numbers stay
in `--once --json` and the metrics, not in the alert.

Pure: no clock, no I/O; times are parameters and are printed in UTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional, Sequence, Tuple

from watchdog.alerts.advice import first_step, key_numbers, subject_summary
from watchdog.alerts.notification import (
    DEESCALATION,
    ESCALATION,
    FLAPPING,
    INFO,
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
from watchdog.model import Status
from watchdog.units import format_duration

ROLE_TITLE = "role"  # title_for(node, ROLE_TITLE) == "[mail1] role"



def first_look(check: Optional[str]) -> str:
    """The first thing to look at (the vendor HA guide's manual commands): each check's line
    lives in its registry entry (watchdog.checks.registry)."""
    from watchdog.checks import registry

    if check == ROLE_TITLE:
        return registry.ROLE_CHANGE_LOOK
    entry = registry.find(check)
    return entry.first_look if entry is not None else "ha-watchdog --once on this node"


def format_time(epoch: Optional[float]) -> str:
    """`2024-05-04 23:10:00 UTC`; never raises."""
    if isinstance(epoch, bool) or not isinstance(epoch, (int, float)) or not math.isfinite(epoch):
        return "an unknown time"
    try:
        return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return "an unknown time"


def severity_for(level: Status) -> str:
    """Routing class of a confirmed level: critical is critical, warning and unknown warn."""
    return SEV_CRITICAL if level == Status.CRITICAL else SEV_WARNING


@dataclass(frozen=True)
class Facts:
    """What the engine last saw of one check: the latest raw result, plus where it ran."""

    node: str
    check: str
    role: str
    status: Status = Status.OK
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


def _body(
    headline: str,
    facts: Facts,
    lines: Sequence[str],
    notes: Sequence[str] = (),
    with_numbers: bool = True,
    with_step: bool = True,
) -> str:
    out = [headline]
    if facts.summary:
        out.append(facts.summary)
    out.extend(lines)
    if facts.status == Status.UNKNOWN:
        out.append("The check could not run (UNKNOWN); see the reason above.")
    if with_numbers:
        numbers = key_numbers(facts.check, facts.details)
        if numbers:
            out.append("Numbers:")
            out.extend(f"  - {line}" for line in numbers)
    out.append(f"Role: {facts.node} is {_role_text(facts.role)}")
    out.extend(notes)
    if with_step:
        fallback = first_look(facts.check)
        out.append("First step: " + first_step(facts.check, facts.details, facts.node,
                                               facts.status.label, fallback))
    out.append(f"Full numbers: ha-watchdog --once --json on {facts.node} (or its metrics)")
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
    subject: Optional[str] = None,
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
        subject=subject,
    )


def subject_for(facts: Facts, what: str, with_summary: bool = True) -> str:
    """`[mail2] replay_lag CRITICAL: replay lag 6m52s, ...`: the stable title first (chat
    threads and filters keep working), then what is wrong."""
    text = f"{title_for(facts.node, facts.check)} {what}"
    summary = subject_summary(facts.summary) if with_summary else ""
    return f"{text}: {summary}" if summary else text


# ---------------------------------------------------------------- notifications


def problem(
    facts: Facts, level: Status, since: float, now: float, at: float, notes: Sequence[str] = ()
) -> Notification:
    """A confirmed problem (warning, critical or unknown)."""
    severity = severity_for(level)
    headline = f"PROBLEM {level.name}: {_where(facts)}"
    body = _body(headline, facts, [_since_line(since, now)], notes)
    subject = subject_for(facts, level.name)
    return _make(PROBLEM, severity, notify_type_for(severity), facts, body, now, at,
                 subject=subject)


def _level_change(
    kind: str,
    headline: str,
    facts: Facts,
    old: Status,
    new: Status,
    since: float,
    now: float,
    at: float,
    problem_severity: str,
    notes: Sequence[str],
) -> Notification:
    severity = severity_for(new)
    lines = [_since_line(since, now) + f"; {new.label} since {format_time(at)}"]
    body = _body(headline, facts, lines, notes)
    subject = subject_for(facts, f"{old.name} -> {new.name}")
    return _make(kind, severity, notify_type_for(severity), facts, body, now, at, problem_severity,
                 subject)


def escalation(
    facts: Facts,
    old: Status,
    new: Status,
    since: float,
    now: float,
    at: float,
    problem_severity: str,
    notes: Sequence[str] = (),
) -> Notification:
    """The open problem got worse (e.g. warning -> critical)."""
    headline = f"ESCALATION {old.name} -> {new.name}: {_where(facts)}"
    return _level_change(ESCALATION, headline, facts, old, new, since, now, at, problem_severity,
                         notes)


def deescalation(
    facts: Facts,
    old: Status,
    new: Status,
    since: float,
    now: float,
    at: float,
    problem_severity: str,
    notes: Sequence[str] = (),
) -> Notification:
    """The open problem got less bad (critical -> warning) but is not over."""
    headline = f"DEESCALATION {old.name} -> {new.name}: {_where(facts)} (not recovered yet)"
    return _level_change(
        DEESCALATION, headline, facts, old, new, since, now, at, problem_severity, notes
    )


def recovery(
    facts: Facts,
    since: float,
    ok_since: float,
    now: float,
    worst: Status,
    problem_severity: str,
    notes: Sequence[str] = (),
) -> Notification:
    """The problem is over; says how long it lasted."""
    lasted = format_duration(max(0.0, ok_since - since))
    headline = f"RECOVERY: {_where(facts)} is OK again after {lasted}"
    lines = [
        f"The problem (worst: {worst.label}) lasted {lasted}: from {format_time(since)} "
        f"to {format_time(ok_since)}."
    ]
    body = _body(headline, facts, lines, notes, with_step=False)
    subject = subject_for(facts, f"RECOVERED after {lasted}", with_summary=False)
    return _make(RECOVERY, SEV_RECOVERY, TYPE_SUCCESS, facts, body, now, ok_since, problem_severity,
                 subject)


def reminder(
    facts: Facts,
    level: Status,
    since: float,
    now: float,
    due: float,
    problem_severity: str,
    notes: Sequence[str] = (),
) -> Notification:
    """The problem is still open; keeps the problem's notify type."""
    severity = severity_for(level)
    open_for = format_duration(max(0.0, now - since))
    headline = f"REMINDER {level.name}: {_where(facts)} still not OK after {open_for}"
    body = _body(headline, facts, [_since_line(since, now)], notes)
    subject = subject_for(facts, f"still {level.name} after {open_for}")
    return _make(
        REMINDER, severity, notify_type_for(severity), facts, body, now, due, problem_severity,
        subject,
    )


def no_longer_applies(
    facts: Facts,
    level: Status,
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
        f"The open {level.label} problem (since {format_time(since)}) is closed because "
        f"{facts.check} is not checked on a {new_role}; it did NOT recover.",
        f"Last seen: {facts.summary}" if facts.summary else "",
    ]
    closed = Facts(facts.node, facts.check, new_role, Status.OK, "", {})
    body = _body(headline, closed, [line for line in lines if line], with_numbers=False,
                 with_step=False)
    subject = subject_for(facts, f"CLOSED, not recovered: no longer checked on a {new_role}",
                          with_summary=False)
    return _make(
        NO_LONGER_APPLIES, SEV_RECOVERY, TYPE_SUCCESS, facts, body, now, at, problem_severity,
        subject,
    )


def flapping(
    facts: Facts,
    levels: Sequence[Status],
    changes: int,
    window: float,
    quiet_for: float,
    level: Status,
    since: float,
    now: float,
    at: float,
    problem_severity: Optional[str],
) -> Notification:
    """Sent once instead of a page per flip; says what it flapped between."""
    severity = severity_for(level)
    between = join_and([x.label for x in levels])
    headline = f"FLAPPING {level.name}: {_where(facts)} flaps between {between}"
    lines = [
        f"{changes} changes within {format_duration(window)} (first problem {format_time(since)}).",
        f"Alerts for {facts.check} are paused until it stays stable for "
        f"{format_duration(quiet_for)}; then its recovery or its current state is sent.",
    ]
    body = _body(headline, facts, lines)
    subject = subject_for(facts, f"FLAPPING between {between}", with_summary=False)
    return _make(
        FLAPPING, severity, notify_type_for(severity), facts, body, now, at, problem_severity,
        subject,
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
    lines.append(f"First step: {first_look(ROLE_TITLE)}")
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
        subject=f"{title} CHANGE: now {new} (was {old})",
    )


def join_and(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------- the watchdog's own trouble

SELF_TITLE = "ha-watchdog"  # `[mail1] ha-watchdog`: notices about the watchdog itself


def self_problem(node: str, subject: str, lines: Sequence[str], at: float, now: float) -> Notification:
    """The watchdog itself is in trouble (it cannot save its state, a state file was
    damaged): a WARNING, so whoever gets problems hears that the alerting is impaired."""
    return Notification(
        id=make_id(node, SELF_TITLE, subject, PROBLEM, at),
        kind=PROBLEM,
        severity=SEV_WARNING,
        notify_type=notify_type_for(SEV_WARNING),
        title=title_for(node, SELF_TITLE),
        body="\n".join([f"PROBLEM WARNING: ha-watchdog on {node}: {subject}", *lines]),
        node=node,
        created=now,
        check=None,
        problem_severity=None,
    )


def self_recovery(node: str, subject: str, lines: Sequence[str], at: float, now: float) -> Notification:
    """The trouble `self_problem` reported is over (routed to whoever got the WARNING)."""
    return Notification(
        id=make_id(node, SELF_TITLE, subject, RECOVERY, at),
        kind=RECOVERY,
        severity=SEV_RECOVERY,
        notify_type=TYPE_SUCCESS,
        title=title_for(node, SELF_TITLE),
        body="\n".join([f"RECOVERY: ha-watchdog on {node}: {subject}", *lines]),
        node=node,
        created=now,
        check=None,
        problem_severity=SEV_WARNING,
    )


def self_notice(node: str, subject: str, lines: Sequence[str], at: float, now: float) -> Notification:
    """A one-off notice about the watchdog itself (a damaged state file was recovered from),
    routed like a WARNING so it reaches whoever gets problems; nothing to resolve later."""
    return Notification(
        id=make_id(node, SELF_TITLE, subject, "notice", at, *lines),  # two at once: two ids
        kind=INFO,
        severity=SEV_WARNING,
        notify_type=notify_type_for(SEV_WARNING),
        title=title_for(node, SELF_TITLE),
        body="\n".join([f"NOTICE: ha-watchdog on {node}: {subject}", *lines]),
        node=node,
        created=now,
        check=None,
        problem_severity=None,
    )
