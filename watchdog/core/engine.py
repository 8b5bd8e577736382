"""The per-cycle decision: raw check results in, events out (incidents).

Why a separate, pure engine: every alerting rule (debounce, escalation, flapping, reminders,
role changes, backup holds) lives here, driven by `now` (wall-clock epoch seconds) so it can
be tested with plain numbers and its whole state persisted as JSON after each cycle. After a
SIGKILL and a restart the daemon loads the state: an open problem is not paged again and its
recovery is still sent. It emits typed events (watchdog.core.events), never words:
watchdog.alerts.compose writes the notifications. Each event is numbered per subject (check,
role, maintenance) from counters kept in the state, so notification ids are unique, and a
cycle replayed after a crash (from the state written before it) produces the same ids (the
outbox drops duplicates).
The rules of one check live in incidents.py, maintenance in quiet.py, the state in state.py.

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
- Backup relaxation: checks that apply relaxed limits themselves (the registry's
  `relaxes_itself`: replay_lag) are never held.
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
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from watchdog.config import Config
from watchdog.core import daily
from watchdog.core.events import (
    NO_LONGER_APPLIES,
    RECOVERY,
    REMINDER,
    CheckEvent,
    RoleChanged,
    StillFlapping,
    StillOpen,
)
from watchdog.core.incidents import HOLDABLE, Event  # noqa: F401 - re-exported
from watchdog.core.maintenance import Maintenance
from watchdog.core.quiet import MAX_MAINTENANCE_EVENTS, MaintenanceRules  # noqa: F401
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
from watchdog.core.windows import relaxations as _relaxations
from watchdog.model import CheckResult, Role, Status

DAY = 86400.0
# Closed incidents and role changes are kept this long (the daily message shows one day).
HISTORY_KEEP = 2 * DAY
_ROLES = tuple(r.value for r in Role)


class OpenProblem(NamedTuple):
    """For status lines: one open incident."""

    check: str
    severity: Status  # the level: warning, unknown or critical
    since: float


# ---------------------------------------------------------------- the engine


class Engine(MaintenanceRules):
    """Feed it one cycle at a time; it returns the events to tell (core.events)."""

    def __init__(
        self,
        cfg: Config,
        state: Optional[EngineState] = None,
        self_relaxing: Optional[Iterable[str]] = None,
    ):
        """`self_relaxing`: the checks that apply relaxed limits themselves (default: those
        the check registry marks `relaxes_itself`)."""
        self.cfg = cfg
        self.state = state if state is not None else EngineState()
        self.node = cfg.node_name
        if self_relaxing is None:
            from watchdog.checks.registry import self_relaxing as registered  # late: it imports us

            self_relaxing = registered()
        self.self_relaxing = frozenset(self_relaxing)
        # Per check: when a problem held by a grace falls due (wall clock; this cycle only).
        self._due: Dict[str, float] = {}

    # -- relaxation

    def relaxation(self, now: float, check: str, backups_seen: Sequence[BackupSeen]) -> Relaxation:
        """Is `check` relaxed now (backup window or detected backup)? Call before the check."""
        return _relaxation(now, check, self.cfg, backups_seen, self.state.relax_memory)

    def relaxations(
        self, now: float, checks: Sequence[str], backups_seen: Sequence[BackupSeen]
    ) -> Dict[str, Relaxation]:
        """Which of this cycle's `checks` are relaxed: once per cycle, before the checks."""
        return _relaxations(now, checks, self.cfg, backups_seen, self.state.relax_memory)

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
            sent = event.kind in (RECOVERY, NO_LONGER_APPLIES) and (
                told_before.get(check) is not None)
            self._record_event(event, sent)
            if sent:
                out.append(event)
        return self._numbered(out)

    def _numbered(self, events: List[Event]) -> List[Event]:
        """Each event gets the next number of its subject (its check, the role, maintenance),
        which its notification id includes: unique even for two transitions of one check in
        one instant, the same when a cycle is replayed from the same state (a crash before
        the state was written). ":" never occurs in a check name."""
        out = []
        for e in events:
            if isinstance(e, CheckEvent):
                subject = e.check
            else:
                subject = ":role" if isinstance(e, RoleChanged) else ":maintenance"
            out.append(dataclasses.replace(e, seq=self.state.next_seq(subject)))
        return out

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
