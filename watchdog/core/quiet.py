"""Maintenance as the engine applies it: events held back and recorded, one summary at the
start, a change and the end, then the pages still-open problems need.

Why apart from engine.py: it is one rule (nothing pages during planned work, except the
recovery or closure of a problem paged before it began) with its own record in the state.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from watchdog.core.events import (
    DEESCALATION,
    ESCALATION,
    PROBLEM,
    HeldByMaintenance,
    MaintenanceChanged,
    MaintenanceEnded,
    MaintenanceStarted,
    StillOpen,
)
from watchdog.core.incidents import CheckRules, Event
from watchdog.core.maintenance import Maintenance
from watchdog.core.state import CheckState, HeldEvent, Incident, MaintenanceRecord

# Events kept per maintenance for its end message; more are only counted.
MAX_MAINTENANCE_EVENTS = 100


class MaintenanceRules(CheckRules):
    """The maintenance part of the Engine (a base class of it)."""

    open_incidents: Callable[[], List[StillOpen]]

    def _record_event(self, event: Event, sent: bool) -> None:
        record = self.state.maintenance
        if record is None:
            return
        if len(record.events) >= MAX_MAINTENANCE_EVENTS:
            record.dropped += 1
            return
        record.events.append(HeldEvent(event, sent))

    def _maintenance_edges(
        self, now: float, request: Optional[Maintenance], active: bool
    ) -> List[Event]:
        """Start, change or end of a maintenance, as seen at this cycle."""
        st = self.state
        out: List[Event] = []
        record = st.maintenance
        if record is not None and not (active and request is not None and request.id == record.id):
            out.extend(self._end_maintenance(now, record, request))
            record = None
        if not active or request is None:
            return out
        if record is None:
            st.maintenance = MaintenanceRecord(
                request.id, request.reason, request.by, request.started, request.until
            )
            out.append(MaintenanceStarted(
                self.node, request, now, tuple(self.open_incidents()), self.state.role
            ))
        elif (record.until, record.reason) != (request.until, request.reason):
            record.until, record.reason = request.until, request.reason
            out.append(MaintenanceChanged(self.node, request, now))
        return out

    def _end_maintenance(
        self, now: float, record: MaintenanceRecord, request: Optional[Maintenance]
    ) -> List[Event]:
        """One summary of what happened, then the pages still-open problems need."""
        if request is not None and request.id == record.id:
            how, ended = request.how_it_ended(now), request.end_time()
        elif request is None:
            how, ended = "its request was removed", now
        else:
            how, ended = "replaced by a new request", now
        ended = min(ended, now)
        pages: List[Event] = []
        still_open: List[StillOpen] = []
        note = HeldByMaintenance(record.reason, record.started, ended)
        for name, cs in sorted(self.state.checks.items()):
            incident = cs.incident
            if incident is None:
                continue
            page = self._catch_up(name, cs, incident, now, note)
            if page is not None:
                pages.append(page)
            still_open.append(
                StillOpen(name, incident.level, incident.since, cs.summary, page is not None)
            )
        self.state.maintenance = None
        summary = MaintenanceEnded(
            self.node, record, how, ended, now, tuple(still_open), self.state.role
        )
        return [summary] + pages

    def _catch_up(
        self, name: str, cs: CheckState, incident: Incident, now: float, note: HeldByMaintenance
    ) -> Optional[Event]:
        """The event that tells the world an incident's level it was not told."""
        told, level = incident.told, incident.level
        incident.told = level
        if told == level:
            return None
        incident.last_sent = now
        if told is None:
            return self._event(PROBLEM, name, cs, now, incident.since, incident.since, level,
                               reasons=(note,))
        at = cs.debounce.confirmed_since or now
        kind = ESCALATION if level.rank > told.rank else DEESCALATION
        return self._event(kind, name, cs, now, at, incident.since, level, old=told,
                           peak=incident.peak, reasons=(note,))

