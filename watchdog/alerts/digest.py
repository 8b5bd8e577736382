"""What to send for a target's pending notifications (pure): one message each, or a digest.

Backlogs collapse: when a target has several notifications pending (after an outage, or
several checks changing in one cycle) it gets ONE digest listing the latest state per
title, with earlier facts (a PROBLEM that has since recovered) kept in the text. Incident
services (PagerDuty and the like) key incidents on the title, so a digest titled
"ha-watchdog digest" would open an incident nobody resolves; they get instead one message
per title, the latest one, whose stable title triggers or resolves the right incident.
A message sent late (outbox, retries, a restart) says so under its headline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

from watchdog.alerts.message import first_line, format_time
from watchdog.alerts.notification import (
    SEV_CRITICAL,
    SEV_RECOVERY,
    SEV_WARNING,
    TYPE_FAILURE,
    TYPE_INFO,
    TYPE_SUCCESS,
    TYPE_WARNING,
    Notification,
    shown_title,
)
from watchdog.units import format_duration


@dataclass(frozen=True)
class Message:
    """What one send carries, and which outbox entries it settles. `dedup`: the incident
    key (PagerDuty's dedup_key), derived from the stable title, never from what is shown."""

    title: str
    body: str
    notify_type: str
    ids: Tuple[str, ...]
    digest: bool = False
    dedup: Optional[str] = None


def dedup_key(stable_title: str) -> str:
    """PagerDuty's dedup_key for a node+check: sha256 of the stable title. apprise >= 2.1
    (action=map) derives the same key from a body whose first line is that title, which is
    what ha-watchdog sent before titles carried a subject: incidents opened then still
    resolve after an upgrade."""
    import hashlib

    return hashlib.sha256(stable_title.strip().encode("utf-8")).hexdigest()


def _single(n: Notification, subjects: bool) -> Message:
    title = shown_title(n) if subjects else n.title
    return Message(title, n.body, n.notify_type, (n.id,), dedup=dedup_key(n.title))


_TYPE_RANK = {TYPE_SUCCESS: 0, TYPE_INFO: 1, TYPE_WARNING: 2, TYPE_FAILURE: 3}


def _fact(n: Notification) -> str:
    """One past event in one line: `PROBLEM (critical) at <time>: <first body line>`."""
    text = first_line(n.body)
    return f"{n.kind.upper()} ({n.severity}) at {format_time(n.created)}" + (f": {text}" if text else "")


def collapse(items: Sequence[Notification]) -> List[List[Notification]]:
    """Group by title, each group oldest first, groups ordered by their first appearance."""
    groups: Dict[str, List[Notification]] = {}
    for n in sorted(items, key=lambda n: n.created):
        groups.setdefault(n.title, []).append(n)
    return list(groups.values())


def _state(latest: Notification) -> Tuple[int, str]:
    """(sort rank, label) of a title's current state from its latest notification."""
    if latest.severity == SEV_CRITICAL:
        return 0, "OPEN critical"
    if latest.severity == SEV_WARNING:
        return 1, "OPEN warning"
    if latest.severity == SEV_RECOVERY:
        return 3, "RESOLVED"
    return 2, "INFO"


def digest_notify_type(groups: Sequence[Sequence[Notification]]) -> str:
    """The worst still-open severity; `success` when everything recovered."""
    open_types = []
    informational = False
    for group in groups:
        latest = group[-1]
        if latest.severity == SEV_CRITICAL:
            open_types.append(TYPE_FAILURE)
        elif latest.severity == SEV_WARNING:
            open_types.append(TYPE_WARNING)
        elif latest.severity != SEV_RECOVERY:
            informational = True
    if open_types:
        return max(open_types, key=_TYPE_RANK.__getitem__)
    return TYPE_INFO if informational else TYPE_SUCCESS


def build_digest(node: str, items: Sequence[Notification]) -> Message:
    """ONE message for a backlog: the latest state per title, earlier facts kept as text."""
    groups = collapse(items)
    ordered = sorted(groups, key=lambda g: (_state(g[-1])[0], g[-1].created))
    oldest = min(n.created for n in items)
    lines = [
        f"ha-watchdog on {node}: {len(items)} notifications for {len(groups)} subject(s) "
        f"were pending for this channel, the oldest from {format_time(oldest)}. "
        "Latest state per subject:",
        "",
    ]
    for group in ordered:
        latest = group[-1]
        lines.append(f"* {latest.title}: {_state(latest)[1]} - {_fact(latest)}")
        for earlier in reversed(group[:-1]):
            lines.append(f"    earlier: {_fact(earlier)}")
    return Message(
        title=f"[{node}] ha-watchdog digest",
        body="\n".join(lines),
        notify_type=digest_notify_type(groups),
        ids=tuple(n.id for n in items),
        digest=True,
    )


def build_latest(group: Sequence[Notification], subjects: bool = False) -> Message:
    """One title's backlog as its latest notification, earlier facts appended to the body."""
    latest = group[-1]
    body = latest.body
    if len(group) > 1:
        earlier = "\n".join(f"- {_fact(n)}" for n in group[:-1])
        body = f"{body}\n\nEarlier, while this channel was unreachable:\n{earlier}"
    title = shown_title(latest) if subjects else latest.title
    return Message(title, body, latest.notify_type, tuple(n.id for n in group),
                   dedup=dedup_key(latest.title))


def plan_messages(
    node: str, items: Sequence[Notification], incident: bool = False, backlog: bool = True,
    subjects: bool = True,
) -> List[Message]:
    """What to send for a target's pending `items` (oldest first).

    Without a `backlog` (the target has not been failing) each notification goes out as
    itself: two checks changing in the same cycle are two alerts, not a digest.
    `subjects`: titles say what is wrong (chat, email, PagerDuty with its dedup key); off
    for incident services that key on the title itself.
    """
    if not items:
        return []
    if len(items) == 1 or not backlog:
        return [_single(n, subjects) for n in items]
    if incident:
        return [build_latest(group, subjects) for group in collapse(items)]
    return [build_digest(node, items)]


# A message sent this long after its notification was made says so in its body.
LATE_AFTER = 60.0


def _clock_text(epoch: float, now: float) -> str:
    """`21:53:10 UTC`, with the date when it is not the day of `now`."""
    from datetime import datetime, timezone

    try:
        at = datetime.fromtimestamp(epoch, timezone.utc)
        today = datetime.fromtimestamp(now, timezone.utc).date()
    except (OverflowError, OSError, ValueError):
        return "an unknown time"
    return at.strftime("%H:%M:%S UTC" if at.date() == today else "%Y-%m-%d %H:%M:%S UTC")


def late_line(created: float, now: float) -> str:
    """`Delivered late: queued since 21:53:10 UTC, delivered 21:56:02 UTC (2m52s later).`"""
    return (
        f"Delivered late: queued since {_clock_text(created, now)}, delivered "
        f"{_clock_text(now, now)} ({format_duration(max(0.0, now - created))} later; "
        "this channel could not be reached until now)."
    )


def mark_late(message: Message, sources: Sequence[Notification], now: float,
              late_after: float = LATE_AFTER) -> Message:
    """`message` with a "Delivered late" line under its headline when its oldest
    notification waited at least LATE_AFTER (outbox, retries, a restart). A digest says
    when its oldest item was made already."""
    if message.digest or not sources:
        return message
    created = min(n.created for n in sources)
    if now - created < late_after:
        return message
    head, sep, rest = message.body.partition("\n")
    body = f"{head}\n{late_line(created, now)}" + (f"\n{rest}" if sep else "")
    return replace(message, body=body)
