"""Messages about the watchdog itself: maintenance start/change/end and the daily report.

Why apart from `message`: those are about one check's incident; these summarise a node
(what is open, what happened in a period, what could not be delivered). All are `info`
routing (never a page); the daily report's notify type is `success` when all is clear and
`warning` otherwise, so a chat channel shows at a glance which node needs a look.

Pure: no clock, no I/O; times are parameters and are printed in UTC.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from watchdog.alerts.message import format_time
from watchdog.alerts.notification import (
    DAILY,
    MAINTENANCE,
    SEV_INFO,
    TYPE_INFO,
    TYPE_SUCCESS,
    TYPE_WARNING,
    Notification,
    make_id,
    title_for,
)
from watchdog.core.events import StillOpen
from watchdog.core.maintenance import Maintenance
from watchdog.core.state import ClosedIncident, MaintenanceRecord, RoleChangeSeen
from watchdog.model import CheckResult, Status
from watchdog.units import format_duration

MAINTENANCE_TITLE = "maintenance"  # "[mail1] maintenance"
DAILY_TITLE = "daily report"  # "[mail1] daily report"
# A daily report sent this long after it was due says so (the daemon was not running).
LATE_AFTER = 600.0


def _role(role: Optional[str]) -> str:
    return f"the {role}" if role in ("primary", "secondary") else "of unknown role"


def _open_line(item: StillOpen, now: float) -> str:
    text = (
        f"- {item.check} {item.level.label} since {format_time(item.since)} "
        f"({format_duration(max(0.0, now - item.since))})"
    )
    return text + (f": {item.summary}" if getattr(item, "summary", "") else "")


def _info(node: str, kind: str, title: str, body: str, now: float, id_parts: Sequence[Any],
          notify_type: str = TYPE_INFO) -> Notification:
    return Notification(
        id=make_id(node, *id_parts),
        kind=kind,
        severity=SEV_INFO,
        notify_type=notify_type,
        title=title_for(node, title),
        body=body,
        node=node,
        created=now,
    )


# ---------------------------------------------------------------- maintenance


def maintenance_started(node: str, m: Maintenance, now: float, open_now: Sequence[StillOpen],
                        role: Optional[str] = None) -> Notification:
    """One message when maintenance begins: who asked, why, until when, what is open."""
    lines = [
        f"MAINTENANCE ON: {node} until {format_time(m.until)} "
        f"({format_duration(max(0.0, m.until - now))} from now), asked by {m.by}: {m.reason}",
        "Checks keep running and problems are tracked, but nothing pages until it ends; then "
        "one message lists what happened, and problems still open page as usual.",
    ]
    if role:
        lines.append(f"Role: {node} is {_role(role)}.")
    if open_now:
        lines.append("Open now (already paged):")
        lines.extend(_open_line(p, now) for p in open_now)
    else:
        lines.append("Open now: nothing.")
    lines.append("End it early: ha-watchdog maintenance off")
    return _info(node, MAINTENANCE, MAINTENANCE_TITLE, "\n".join(lines), now,
                 (MAINTENANCE_TITLE, "start", m.id))


def maintenance_changed(node: str, m: Maintenance, now: float) -> Notification:
    """The running maintenance got a new end or reason (`maintenance on` again)."""
    body = (
        f"MAINTENANCE CHANGED: {node} is now in maintenance until {format_time(m.until)} "
        f"({format_duration(max(0.0, m.until - now))} from now), asked by {m.by}: {m.reason}\n"
        "End it early: ha-watchdog maintenance off"
    )
    return _info(node, MAINTENANCE, MAINTENANCE_TITLE, body, now,
                 (MAINTENANCE_TITLE, "change", m.id, m.until, m.reason))


def maintenance_ended(node: str, record: MaintenanceRecord, how: str, ended: float, now: float,
                      still_open: Sequence[StillOpen], role: Optional[str] = None) -> Notification:
    """One message when maintenance ends: what happened meanwhile, what is still open."""
    lines = [
        f"MAINTENANCE OVER: {node} ({_role(role)}), {how} at {format_time(ended)} after "
        f"{format_duration(max(0.0, ended - record.started))}",
        f"It was asked by {record.by}: {record.reason}.",
    ]
    events = list(record.events)
    if events or record.dropped:
        count = len(events) + record.dropped
        lines.append(f"While it was on ({count} notification(s); held back unless marked sent):")
        for event in events:
            mark = "sent" if event.sent else "held back"
            lines.append(f"- {format_time(event.at)}: {event.line} [{mark}]")
        if record.dropped:
            lines.append(f"- ... and {record.dropped} more")
    else:
        lines.append("While it was on: nothing happened.")
    if still_open:
        lines.append("Still open:")
        for item in still_open:
            tail = " - paging now" if item.paging else " - paged before maintenance"
            lines.append(_open_line(item, now) + tail)
    else:
        lines.append("Still open: nothing.")
    return _info(node, MAINTENANCE, MAINTENANCE_TITLE, "\n".join(lines), now,
                 (MAINTENANCE_TITLE, "end", record.id))


# ---------------------------------------------------------------- daily report


def daily(
    node: str,
    now: float,
    due: float,
    role: Optional[str],
    checks: Sequence[CheckResult],
    open_now: Sequence[StillOpen],
    closed: Sequence[ClosedIncident],
    role_changes: Sequence[RoleChangeSeen],
    undelivered: Sequence[str],
    maintenance: Optional[Maintenance] = None,
) -> Notification:
    """The daily report: silence means something only if a healthy node says so daily.

    `checks`: this cycle's CheckResults; `open_now`: open incidents (check, level, since);
    `closed`: incidents closed in the last 24 h (ClosedIncident); `role_changes`: the same
    period's (RoleChangeSeen); `undelivered`: one line per delivery problem.
    """
    not_ok = [c for c in checks if c.status != Status.OK]
    clear = not open_now and not not_ok and not undelivered
    if clear:
        verdict = "all checks OK"
    else:
        parts = []
        if open_now:
            parts.append(f"{len(open_now)} problem(s) open")
        if not_ok and not open_now:
            parts.append(f"{len(not_ok)} check(s) not OK")
        if undelivered:
            parts.append("alerts not delivered")
        verdict = ", ".join(parts)
    lines = [f"DAILY REPORT: {node} is {_role(role)}; {verdict}"]
    if checks:
        lines.append("Checks now: " + ", ".join(f"{c.name} {c.status.label}" for c in checks))
    if open_now:
        lines.append("Open:")
        lines.extend(_open_line(p, now) for p in open_now)
    elif not_ok:
        lines.append("Not OK now (not confirmed as a problem yet):")
        lines.extend(f"- {c.name} {c.status.label}: {c.summary}" for c in not_ok)
    if closed:
        lines.append(f"Last 24 hours: {len(closed)} incident(s) closed:")
        for item in sorted(closed, key=lambda h: h.since):
            lasted = format_duration(max(0.0, item.until - item.since))
            quiet = "" if item.paged else " (during maintenance, not paged)"
            lines.append(
                f"- {item.check} {item.worst.label}, {lasted}: {format_time(item.since)} to "
                f"{format_time(item.until)}, {item.closed}{quiet}"
            )
    else:
        lines.append("Last 24 hours: no incident closed.")
    for change in role_changes:
        lines.append(f"Role change at {format_time(change.at)}: {change.old} -> {change.new}")
    if undelivered:
        lines.append("Alerts that failed to deliver:")
        lines.extend(f"- {line}" for line in undelivered)
    else:
        lines.append("Alerts that failed to deliver: none.")
    if maintenance is not None:
        lines.append(
            f"Maintenance is on until {format_time(maintenance.until)}, asked by "
            f"{maintenance.by}: {maintenance.reason}"
        )
    if now - due > LATE_AFTER:
        lines.append(f"Sent late: it was due at {format_time(due)} (the watchdog was not running).")
    return _info(node, DAILY, DAILY_TITLE, "\n".join(lines), now, (DAILY_TITLE, due),
                 TYPE_SUCCESS if clear else TYPE_WARNING)
