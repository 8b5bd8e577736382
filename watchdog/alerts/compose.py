"""Events in, notifications out: the one place that turns the core's decisions into words.

Why: watchdog.core.engine emits typed events (watchdog.core.events) and never words; this
module picks the message builder for each (message for a check's incident and role changes,
summaries for maintenance), renders each typed reason as its sentence, and makes the id:
the event's identity (node, check, kind, transition time) plus its sequence number, so two
events never share an id and a cycle replayed from the same state re-creates the same ids.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Iterable, List, Sequence, Union

from watchdog.alerts import message, summaries
from watchdog.alerts.message import Facts
from watchdog.alerts.notification import ROLE_CHANGE, Notification, make_id
from watchdog.core import events as ev
from watchdog.core.state import HeldEvent, MaintenanceEvent, MaintenanceRecord
from watchdog.model import Status
from watchdog.units import format_duration


def reason_text(reason: ev.Reason) -> str:
    """The sentence a reason adds to a notification's body."""
    if isinstance(reason, ev.Relaxed):
        return message.relaxed_note(reason.reason, reason.since)
    if isinstance(reason, ev.Ceiling):
        return message.ceiling_note(reason.reason, reason.since)
    if isinstance(reason, ev.RelaxationExpired):
        return message.expired_note(reason.reason)
    if isinstance(reason, ev.HeldBack):
        released = "backup.max_duration was reached" if reason.expired else "the relaxation ended"
        return message.held_note(reason.reason, reason.since, released)
    if isinstance(reason, ev.HeldByMaintenance):
        return message.maintenance_note(reason.reason, reason.started, reason.ended)
    if isinstance(reason, ev.SettledAfterFlapping):
        return f"Stable again after flapping between {_levels(reason.levels)}."
    if isinstance(reason, ev.StillFlapping):
        return "Still flapping between " + _levels(reason.levels) + "."
    if isinstance(reason, ev.RoleChangeGrace):
        return (
            f"Still missing {format_duration(reason.grace)} after this node's role change at "
            f"{message.format_time(reason.changed_at)} ({reason.check}.role_change_grace)."
        )
    if isinstance(reason, ev.ReconnectGrace):
        return (
            f"Missing for longer than {reason.check}.reconnect_grace "
            f"({format_duration(reason.grace)}): not a reconnect."
        )
    raise TypeError(f"not a reason: {reason!r}")


def _levels(levels: Sequence[Status]) -> str:
    """`ok and critical`: levels in words."""
    return message.join_and([level.label for level in levels])


def _check(e: ev.CheckEvent) -> Notification:
    facts = Facts(e.node, e.check, e.role, e.status, e.summary, e.details)
    notes = [reason_text(r) for r in e.reasons]
    peak = message.severity_for(e.peak) if e.peak is not None else None
    if e.kind == ev.PROBLEM:
        return message.problem(facts, e.new, e.since, e.now, e.at, notes)
    if e.kind == ev.ESCALATION:
        return message.escalation(facts, e.old or Status.OK, e.new, e.since, e.now, e.at,
                                  peak or "warning", notes)
    if e.kind == ev.DEESCALATION:
        return message.deescalation(facts, e.old or Status.OK, e.new, e.since, e.now, e.at,
                                    peak or "warning", notes)
    if e.kind == ev.RECOVERY:
        return message.recovery(facts, e.since, e.at, e.now, e.peak or e.old or Status.WARNING,
                                peak or "warning", notes)
    if e.kind == ev.REMINDER:
        return message.reminder(facts, e.new, e.since, e.now, e.at, peak or "warning", notes)
    if e.kind == ev.NO_LONGER_APPLIES:
        return message.no_longer_applies(facts, e.new, e.since, e.now, e.at, e.role,
                                         e.new_role or "unknown", peak or "warning")
    if e.kind == ev.FLAPPING and e.flap is not None:
        f = e.flap
        return message.flapping(facts, f.levels, f.changes, f.window, f.quiet_for, e.new,
                                e.since, e.now, e.at, peak)
    raise ValueError(f"cannot compose a {e.kind!r} event")


def held_line(item: Union[HeldEvent, MaintenanceEvent]) -> MaintenanceEvent:
    """A maintenance record entry in words: a HeldEvent becomes the MaintenanceEvent the
    summary lists (when, kind, check, severity, first line); older entries already are."""
    if not isinstance(item, HeldEvent):
        return item
    note = compose(item.event)
    return MaintenanceEvent(note.created, note.kind, note.check, note.severity,
                            message.headline(note), item.sent)


def held_lines_json(items: Any) -> List[Dict[str, Any]]:
    """The entries of a maintenance record as engine.json holds them, each as the object
    `maintenance status` shows (at, kind, check, severity, line, sent); unreadable ones
    dropped."""
    out = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        if "event" in item:
            try:
                item = held_line(HeldEvent(ev.event_from_json(item["event"]),
                                           item.get("sent") is True))._asdict()
            except (ValueError, TypeError):
                continue
        out.append(item)
    return out


def _summary_record(record: MaintenanceRecord) -> MaintenanceRecord:
    """The maintenance record with its held events in words (as the summary lists them)."""
    return dataclasses.replace(record, events=[held_line(item) for item in record.events])


def compose(event: ev.Event) -> Notification:
    """The notification for one event; its id includes the event's sequence number."""
    if isinstance(event, ev.CheckEvent):
        note = _check(event)
        parts: List[Any] = [event.node, event.check, event.kind, event.at]
    elif isinstance(event, ev.RoleChanged):
        note = message.role_change(event.node, event.old, event.new, event.at, event.now,
                                   event.last_known, event.graces)
        parts = [event.node, message.ROLE_TITLE, ROLE_CHANGE, event.at]
    elif isinstance(event, ev.MaintenanceStarted):
        m = event.maintenance
        note = summaries.maintenance_started(event.node, m, event.now, event.open_now, event.role)
        parts = [event.node, summaries.MAINTENANCE_TITLE, "start", m.id]
    elif isinstance(event, ev.MaintenanceChanged):
        m = event.maintenance
        note = summaries.maintenance_changed(event.node, m, event.now)
        parts = [event.node, summaries.MAINTENANCE_TITLE, "change", m.id, m.until, m.reason]
    elif isinstance(event, ev.MaintenanceEnded):
        note = summaries.maintenance_ended(
            event.node, _summary_record(event.record), event.how, event.ended, event.now,
            event.still_open, event.role,
        )
        parts = [event.node, summaries.MAINTENANCE_TITLE, "end", event.record.id]
    else:
        raise TypeError(f"not an event: {event!r}")
    return dataclasses.replace(note, id=make_id(*parts, event.seq))


def compose_all(events: Iterable[ev.Event]) -> List[Notification]:
    return [compose(e) for e in events]
