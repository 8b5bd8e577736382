"""The per-cycle decision: raw check results in, notifications out (incidents).

Why a separate, pure engine: every alerting rule (debounce, escalation, flapping, reminders,
role changes, backup holds) lives here, driven by `now` (wall-clock epoch seconds) so it can
be tested with plain numbers and its whole state persisted as JSON after each cycle. After a
SIGKILL and a restart the daemon loads the state: an open problem is not paged again and its
recovery is still sent. Notification ids depend only on (node, check, kind, transition time)
so a cycle replayed after a crash produces the same ids (the outbox drops duplicates).

Per check, an *incident* is what the outside world has been told: opened by PROBLEM (or
FLAPPING), changed by ESCALATION / DEESCALATION, closed by RECOVERY or NO_LONGER_APPLIES.
Each cycle the debounced level is reconciled with the incident, so exactly one notification
goes out per confirmed change, whatever happened in between.

Rules beyond plain debounce:
- Flapping: when a worsening (PROBLEM, ESCALATION) would be the `daemon.flap_changes`-th
  (or later) notified transition within `daemon.flap_window`, one FLAPPING goes out instead
  (it opens or keeps the incident at the worst level seen; recoveries and deescalations are
  always sent) and the check stays quiet until its raw level has been stable for its
  recover_for (OK) or for (a problem), and at least flap_window / flap_changes, so "stable"
  means slower than flapping. Then the current state is reconciled (RECOVERY, ESCALATION, ...).
- Backup relaxation: checks that apply relaxed limits themselves (replay_lag) are never held.
  For other relaxed checks a confirmed warning/unknown that would open a problem is held (no
  PROBLEM); when the relaxation ends or expires and the problem is still there, the PROBLEM
  goes out then, saying what held it. A confirmed critical is never held.
- Roles: debounced with drbd's `for`. The first role is recorded silently; a later change
  sends ROLE CHANGE, and on a change to a known role the open problems of checks that no
  longer run close as NO_LONGER_APPLIES. Checks not observed in a cycle keep an open
  incident (reminders continue) but otherwise forget their pending state.
- Planned work: a result typed Failure.MISSING (no standby streaming) is held for the
  check's reconnect_grace, and until role_change_grace after this node's last role change
  (counted from when the new role was first seen, so also while the change is still being
  debounced); the ROLE CHANGE names that grace. `deadlines()` tells the daemon when such a
  held problem falls due, so it is confirmed then and not a whole interval later.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from watchdog.config import Config
from watchdog.core import daily
from watchdog.core.debounce import (
    CRITICAL,
    OK,
    UNKNOWN,
    WARNING,
    Debounce,
    Timing,
    confirm_at,
    rank,
    step,
    worse,
)
from watchdog.core.events import (
    DEESCALATION,
    ESCALATION,
    FLAPPING,
    NO_LONGER_APPLIES,
    PROBLEM,
    RECOVERY,
    REMINDER,
    Ceiling,
    CheckEvent,
    Flap,
    HeldBack,
    HeldByMaintenance,
    MaintenanceChanged,
    MaintenanceEnded,
    MaintenanceStarted,
    ReconnectGrace,
    RelaxationExpired,
    Relaxed,
    RoleChanged,
    RoleChangeGrace,
    SettledAfterFlapping,
    StillFlapping,
    StillOpen,
)
from watchdog.core.maintenance import Maintenance
from watchdog.core.state import (  # noqa: F401 - re-exported: the state's old import path
    STATE_VERSION,
    CheckState,
    ClosedIncident,
    EngineState,
    HeldEvent,
    Incident,
    MaintenanceEvent,
    MaintenanceRecord,
    RoleChangeSeen,
    _jsonable,
)
from watchdog.core.windows import NOT_RELAXED, BackupSeen, Relaxation
from watchdog.core.windows import relaxation as _relaxation
from watchdog.model import CHECK_NAMES, REPLAY_LAG, CheckResult, Failure, Role, Status

DAY = 86400.0
# Closed incidents and role changes are kept this long (the daily message shows one day).
HISTORY_KEEP = 2 * DAY
# Events kept per maintenance for its end message; more are only counted.
MAX_MAINTENANCE_EVENTS = 100

# Checks that apply relaxed limits themselves when called with relaxed=True (their own hard
# ceiling included): the engine never holds their results.
SELF_RELAXING = frozenset({REPLAY_LAG})
# Confirmed levels a relaxation may hold back.
HOLDABLE = (WARNING, UNKNOWN)
_ROLES = tuple(r.value for r in Role)


class OpenProblem(NamedTuple):
    """For status lines: one open incident."""

    check: str
    severity: str  # the level: warning, unknown or critical
    since: float


# ---------------------------------------------------------------- the engine


# What observe() returns: events for watchdog.alerts.compose to put into words.
Event = Any  # CheckEvent, RoleChanged, MaintenanceStarted, MaintenanceChanged, MaintenanceEnded


class Engine:
    """Feed it one cycle at a time; it returns the events to tell (core.events)."""

    def __init__(self, cfg: Config, state: Optional[EngineState] = None):
        self.cfg = cfg
        self.state = state if state is not None else EngineState()
        self.node = cfg.node_name
        # Per check: when a problem held by a grace falls due (wall clock; this cycle only).
        self._due: Dict[str, float] = {}

    # -- relaxation

    def relaxation(self, now: float, check: str, backups_seen: Sequence[BackupSeen]) -> Relaxation:
        """Is `check` relaxed now (backup window or detected backup)? Call before the check."""
        return _relaxation(now, check, self.cfg, backups_seen, self.state.relax_memory)

    # -- status lines

    def open_problems(self) -> List[OpenProblem]:
        out = []
        for name, cs in sorted(self.state.checks.items()):
            if cs.incident is not None:
                out.append(OpenProblem(name, cs.incident.level, cs.incident.since))
        return out

    def open_incidents(self) -> List[StillOpen]:
        """Open incidents with their latest summary (for the maintenance and daily messages)."""
        return [
            StillOpen(name, cs.incident.level, cs.incident.since, cs.summary)
            for name, cs in sorted(self.state.checks.items())
            if cs.incident is not None
        ]

    # -- the cycle

    def observe(
        self,
        now: float,
        role: Role,
        results: Sequence[CheckResult],
        relaxations: Mapping[str, Relaxation],
        maintenance: Optional[Maintenance] = None,
    ) -> List[Event]:
        """One cycle: this role's raw results (and relaxations) at `now`.

        `maintenance` is the current request (or None). While it is active every
        notification is kept back and recorded, except the recovery or closure of a problem
        that was paged before it began (so PagerDuty incidents still resolve).
        """
        now = float(now)
        role = Role(role)
        relaxations = relaxations or {}
        seen: Dict[str, CheckResult] = {}
        for result in results:
            seen[result.name] = result
        silenced = maintenance is not None and maintenance.active(now)

        out = self._maintenance_edges(now, maintenance, silenced)
        self._due = {}
        told_before = {
            name: cs.incident.told for name, cs in self.state.checks.items() if cs.incident
        }
        produced = self._observe_role(now, role, seen)
        for name, result in seen.items():
            relax = relaxations.get(name) or NOT_RELAXED
            produced.extend(self._observe_check(now, role, name, result, relax))

        for name in list(self.state.checks):
            cs = self.state.checks[name]
            if name not in seen and cs.incident is None:
                del self.state.checks[name]

        produced.extend(self._reminders(now, {getattr(e, "check", None) for e in produced}))
        self._prune(now)
        if not silenced:
            for cs in self.state.checks.values():
                if cs.incident is not None:
                    cs.incident.told = cs.incident.level
            return self._numbered(out + produced)
        for event in produced:
            check = getattr(event, "check", None)
            sent = event.kind in (RECOVERY, NO_LONGER_APPLIES) and told_before.get(check)
            self._record_event(event, bool(sent))
            if sent:
                out.append(event)
        return self._numbered(out)

    def _numbered(self, events: List[Event]) -> List[Event]:
        """Each event gets its number in the persisted sequence, which its notification id
        includes: unique even for two transitions of one check in one instant, the same
        when a cycle is replayed from the same state (a crash before the state was written)."""
        return [dataclasses.replace(e, seq=self.state.next_seq()) for e in events]

    def deadlines(self) -> List[float]:
        """When problems held by a grace (see Failure.MISSING) fall due, as of the last cycle:
        the daemon runs a cycle then, so the grace, not the interval, sets the delay."""
        return sorted(self._due.values())

    def _reminders(self, now: float, touched: Any) -> List[Event]:
        renotify = float(self.cfg.alerts.renotify or 0.0)
        out: List[Event] = []
        if renotify <= 0:
            return out
        for name, cs in sorted(self.state.checks.items()):
            incident = cs.incident
            if incident is None or name in touched:
                continue
            due = incident.last_sent + renotify
            if now >= due:
                reasons = (StillFlapping(tuple(incident.flap_levels)),) if incident.flapping else ()
                out.append(self._event(
                    REMINDER, name, cs, now, due, incident.since, incident.level,
                    peak=incident.peak, reasons=reasons,
                ))
                incident.last_sent = now
        return out

    # -- history (the daily message)

    def _closed(self, name: str, incident: Incident, until: float, how: str) -> None:
        self.state.history.append(
            ClosedIncident(
                name, incident.peak, incident.since, until, how, incident.told is not None
            )
        )

    def _prune(self, now: float) -> None:
        st = self.state
        st.history = [h for h in st.history if now - h.until <= HISTORY_KEEP]
        st.role_changes = [r for r in st.role_changes if now - r.at <= HISTORY_KEEP]

    def recent(self, now: float, window: float = DAY) -> Tuple[List[ClosedIncident], List[RoleChangeSeen]]:
        """Incidents closed and role changes within `window` before `now`."""
        st = self.state
        return (
            [h for h in st.history if now - h.until <= window],
            [r for r in st.role_changes if now - r.at <= window],
        )

    # -- the daily message

    def daily_due(self, now: float) -> Optional[float]:
        """When the daily message is due now: the time it was due (and the next is scheduled).

        The first time (or after the schedule changed) only schedules the next one, so a
        restart or a reload never sends an extra message; one that fell due while the daemon
        was down is sent late, once.
        """
        digest, st = self.cfg.digest, self.state
        if digest.at is None:
            st.digest_next = st.digest_schedule = None
            return None
        key = f"{digest.at.isoformat()} {digest.timezone}"
        if st.digest_schedule != key or st.digest_next is None:
            st.digest_schedule = key
            st.digest_next = daily.next_at(now, digest.at, digest.timezone)
            return None
        if now < st.digest_next:
            return None
        due = st.digest_next
        st.digest_next = daily.next_at(now, digest.at, digest.timezone)
        return due

    # -- maintenance

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
        kind = ESCALATION if rank(level) > rank(told) else DEESCALATION
        return self._event(kind, name, cs, now, at, incident.since, level, old=told,
                           peak=incident.peak, reasons=(note,))

    # -- roles

    def _observe_role(self, now: float, role: Role, seen: Mapping[str, Any]) -> List[Event]:
        st = self.state
        value = role.value
        if st.role is None:
            st.role, st.role_since = value, now
            st.role_pending = st.role_pending_since = None
            if role != Role.UNKNOWN:
                st.last_known_role = value
            return []
        if value == st.role:
            st.role_pending = st.role_pending_since = None
            return []
        if st.role_pending != value or st.role_pending_since is None or st.role_pending_since > now:
            st.role_pending, st.role_pending_since = value, now
        if now - st.role_pending_since < float(self.cfg.drbd.for_):
            return []

        old, at = st.role, st.role_pending_since
        st.role, st.role_since = value, at
        st.role_pending = st.role_pending_since = None
        out: List[Event] = []
        if not (old == Role.UNKNOWN.value and st.last_known_role is None):
            graces = []
            if role != Role.UNKNOWN:
                for name in sorted(seen):
                    grace = self._timing(name).role_change_grace
                    if grace > 0:
                        graces.append((name, grace))
            out.append(
                RoleChanged(self.node, old, value, at, now, st.last_known_role, tuple(graces))
            )
            st.role_changes.append(RoleChangeSeen(at, old, value))
        if role != Role.UNKNOWN:
            previous_known = st.last_known_role or old
            st.last_known_role = value
            for name in sorted(st.checks):
                cs = st.checks[name]
                if name in seen or cs.incident is None:
                    continue
                incident = cs.incident
                self._closed(name, incident, at, "no longer applies")
                out.append(self._event(
                    NO_LONGER_APPLIES, name, cs, now, at, incident.since, incident.level,
                    old=incident.level, peak=incident.peak, role=previous_known, new_role=value,
                ))
                del st.checks[name]
        return out

    # -- one check

    def _timing(self, name: str) -> Timing:
        section = None
        if name in CHECK_NAMES:
            try:
                section = self.cfg.check(name)
            except AttributeError:
                section = None
        return Timing.of(section)

    def _event(
        self,
        kind: str,
        name: str,
        cs: CheckState,
        now: float,
        at: float,
        since: float,
        new: str,
        role: Optional[str] = None,
        **more: Any,
    ) -> CheckEvent:
        """An event about check `name`, with the latest result it saw."""
        return CheckEvent(
            kind=kind, node=self.node, check=name,
            role=role or self.state.role or Role.UNKNOWN.value,
            now=now, at=at, since=since, new=new,
            status=cs.status, summary=cs.summary, details=cs.details, **more,
        )

    def _quiet_for(self, timing: Timing, level: str) -> float:
        daemon = self.cfg.daemon
        floor = float(daemon.flap_window) / max(2, int(daemon.flap_changes))
        hold = timing.recover_for if level == OK else timing.for_
        return max(hold, floor)

    def _role_changed_at(self, role: Role) -> Optional[float]:
        """When this node's current role was first seen after a real role change (one a
        ROLE CHANGE is or will be sent for); None in the first role ever recorded."""
        st = self.state
        if st.role_pending == role.value and st.role_pending_since is not None:
            if st.role == Role.UNKNOWN.value and st.last_known_role is None:
                return None
            return st.role_pending_since
        if st.role == role.value and st.role_changes and st.role_changes[-1].new == role.value:
            return st.role_changes[-1].at
        return None

    def _grace_note(
        self,
        name: str,
        timing: Timing,
        failure: Optional[Failure],
        at: float,
        role_changed_at: Optional[float],
    ) -> Optional[Any]:
        """Why a MISSING problem paged only now: the grace it outlasted."""
        if failure != Failure.MISSING:
            return None
        steady = at + max(timing.for_, timing.reconnect_grace)
        if role_changed_at is not None and role_changed_at + timing.role_change_grace > steady:
            return RoleChangeGrace(name, timing.role_change_grace, role_changed_at)
        if timing.reconnect_grace > timing.for_:
            return ReconnectGrace(name, timing.reconnect_grace)
        return None

    def _observe_check(
        self, now: float, role: Role, name: str, result: CheckResult, relax: Relaxation
    ) -> List[Event]:
        cs = self.state.checks.get(name)
        if cs is None:
            cs = self.state.checks[name] = CheckState()
        timing = self._timing(name)
        try:
            status = Status(result.status)
        except ValueError:
            status = Status.UNKNOWN
        failure = getattr(result, "failure", None)
        if not isinstance(failure, Failure):
            failure = None
        role_changed_at = self._role_changed_at(role) if failure is not None else None
        cs.status = status.label
        cs.summary = str(result.summary)
        cs.details = _jsonable(result.details)
        cs.debounce, _change = step(cs.debounce, now, status, timing, failure, role_changed_at)
        db = cs.debounce
        if (
            failure == Failure.MISSING
            and db.pending
            and db.level not in (None, OK)
            and db.streak_since is not None
        ):
            self._due[name] = confirm_at(
                db.streak_since, str(db.level), db.unknown_only, timing, failure, role_changed_at
            )
        target = db.confirmed
        if target is None or db.confirmed_since is None:
            return []
        incident = cs.incident

        after_flapping = False
        if incident is not None and incident.flapping:
            if not self._flap_settled(db, incident, now, timing):
                return []
            incident.flapping = False
            cs.history = []
            after_flapping = True

        notes: List[Any] = []  # the reasons (core.events)
        if after_flapping:
            notes.append(SettledAfterFlapping(tuple(incident.flap_levels)))
        if target != OK:
            if relax.active and name in SELF_RELAXING:
                notes.append(Relaxed(relax.reason, relax.since))
            elif relax.active and target == CRITICAL:
                notes.append(Ceiling(relax.reason, relax.since))
            elif relax.expired:
                notes.append(RelaxationExpired(relax.reason))

        holding = relax.active and name not in SELF_RELAXING and target in HOLDABLE
        if holding and incident is None:
            if cs.held is None:
                cs.held = {"reason": relax.reason, "since": relax.since if relax.since else now}
            return []
        if holding and incident is not None and rank(target) > rank(incident.level):
            return []  # no escalation to a holdable level while relaxed

        if target == OK:
            cs.held = None
            if incident is None:
                return []
            kind = RECOVERY
        elif incident is None:
            kind = PROBLEM
            if cs.held is not None and not relax.active:
                notes.insert(0, HeldBack(cs.held["reason"], cs.held["since"], relax.expired))
            cs.held = None
        elif target == incident.level:
            return []
        else:
            kind = ESCALATION if rank(target) > rank(incident.level) else DEESCALATION

        old_level = incident.level if incident is not None else OK
        at = db.confirmed_since
        worsening = kind in (PROBLEM, ESCALATION)
        if worsening and not after_flapping and self._would_flap(cs, now):
            return [self._start_flapping(name, cs, role.value, now, at, old_level, target, timing)]
        cs.history.append([now, old_level, target])

        if kind in (PROBLEM, ESCALATION):
            grace = self._grace_note(name, timing, failure, at, role_changed_at)
            if grace is not None:
                notes.append(grace)
        reasons = tuple(notes)
        if kind == PROBLEM:
            cs.incident = Incident(level=target, since=at, peak=target, last_sent=now)
            return [self._event(PROBLEM, name, cs, now, at, at, target, role.value,
                                reasons=reasons)]
        assert incident is not None
        if kind == RECOVERY:
            cs.incident = None
            self._closed(name, incident, at, "recovered")
            return [self._event(RECOVERY, name, cs, now, at, incident.since, OK, role.value,
                                old=incident.level, peak=incident.peak, reasons=reasons)]
        peak = incident.peak
        incident.level = target
        incident.peak = worse(incident.peak, target)
        incident.last_sent = now
        return [self._event(kind, name, cs, now, at, incident.since, target, role.value,
                            old=old_level, peak=peak, reasons=reasons)]

    # -- flapping

    def _would_flap(self, cs: CheckState, now: float) -> bool:
        """Would one more transition now be the flap_changes-th (or later) within flap_window?

        Only a worsening (PROBLEM, ESCALATION) turns into FLAPPING: a recovery or
        deescalation is still sent, so what people were told last is never worse than true.
        """
        window = float(self.cfg.daemon.flap_window)
        cs.history = [h for h in cs.history if now - h[0] < window and h[0] <= now]
        return len(cs.history) + 1 >= int(self.cfg.daemon.flap_changes)

    def _start_flapping(
        self,
        name: str,
        cs: CheckState,
        role: str,
        now: float,
        at: float,
        old: str,
        new: str,
        timing: Timing,
    ) -> CheckEvent:
        levels = {old, new}
        for _, a, b in cs.history:
            levels.update((a, b))
        ordered = sorted(levels, key=rank)
        worst = ordered[-1]
        changes = len(cs.history) + 1
        incident = cs.incident
        peak = incident.peak if incident else None
        if incident is None:
            incident = cs.incident = Incident(level=worst, since=at, peak=worst, last_sent=now)
        else:
            incident.level = worse(incident.level, worst)
            incident.peak = worse(incident.peak, worst)
            incident.last_sent = now
        incident.flapping = True
        incident.flap_since = now
        incident.flap_levels = ordered
        cs.held = None
        flap = Flap(tuple(ordered), changes, float(self.cfg.daemon.flap_window),
                    self._quiet_for(timing, new))
        return self._event(FLAPPING, name, cs, now, at, incident.since, incident.level, role,
                           peak=peak, flap=flap)

    def _flap_settled(self, db: Debounce, incident: Incident, now: float, timing: Timing) -> bool:
        if db.pending or db.level is None or db.level_since is None or incident.flap_since is None:
            return False
        if now <= incident.flap_since:
            return False
        base = max(db.level_since, incident.flap_since)
        return now - base >= self._quiet_for(timing, db.level)
