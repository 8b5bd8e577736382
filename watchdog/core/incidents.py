"""One check's incident: debounced level in, the event that tells its change out.

Why apart from engine.py: this is the rule book of one check (problem, escalation,
deescalation, recovery, holds by a relaxation, the graces of planned work, flapping), the
largest part of the decision core; engine.py runs the cycle around it (roles, reminders,
history, the daily schedule) and quiet.py applies maintenance. The rules themselves are
described in engine.py's docstring.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Optional

from watchdog.config import Config
from watchdog.core.debounce import (
    CRITICAL,
    OK,
    UNKNOWN,
    WARNING,
    Debounce,
    Timing,
    confirm_at,
    step,
    worse,
)
from watchdog.core.events import (
    DEESCALATION,
    ESCALATION,
    FLAPPING,
    PROBLEM,
    RECOVERY,
    Ceiling,
    CheckEvent,
    Event,  # noqa: F401 - what the engine emits (re-exported, as before)
    Flap,
    HeldBack,
    Reason,
    ReconnectGrace,
    RelaxationExpired,
    Relaxed,
    RoleChangeGrace,
    SettledAfterFlapping,
)
from watchdog.core.state import CheckState, ClosedIncident, EngineState, Incident, _jsonable
from watchdog.core.windows import Relaxation
from watchdog.model import CheckResult, Failure, Role, Status

# Confirmed levels a relaxation may hold back.
HOLDABLE = (WARNING, UNKNOWN)


class CheckRules:
    """The per-check part of the Engine (a base class of it: it shares its state)."""

    cfg: Config
    state: EngineState
    node: str
    # Checks that apply relaxed limits themselves (their own hard ceiling included; the
    # registry's `relaxes_itself`): the engine never holds their results.
    self_relaxing: FrozenSet[str]
    _due: Dict[str, float]

    def _closed(self, name: str, incident: Incident, until: float, how: str) -> None:
        self.state.history.append(
            ClosedIncident(
                name, incident.peak, incident.since, until, how, incident.told is not None
            )
        )


    # -- one check

    def _timing(self, name: str) -> Timing:
        return Timing.of(self.cfg.check(name))  # None (not a check): Timing()

    def _event(
        self,
        kind: str,
        name: str,
        cs: CheckState,
        now: float,
        at: float,
        since: float,
        new: Status,
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

    def _quiet_for(self, timing: Timing, level: Status) -> float:
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
    ) -> Optional[Reason]:
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
        cs.status = status
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
                db.streak_since, db.level, db.unknown_only, timing, failure, role_changed_at
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

        notes: List[Reason] = []
        if after_flapping:
            notes.append(SettledAfterFlapping(tuple(incident.flap_levels)))
        if target != OK:
            if relax.active and name in self.self_relaxing:
                notes.append(Relaxed(relax.reason, relax.since))
            elif relax.active and target == CRITICAL:
                notes.append(Ceiling(relax.reason, relax.since))
            elif relax.expired:
                notes.append(RelaxationExpired(relax.reason))

        holding = relax.active and name not in self.self_relaxing and target in HOLDABLE
        if holding and incident is None:
            if cs.held is None:
                cs.held = {"reason": relax.reason, "since": relax.since if relax.since else now}
            return []
        if holding and incident is not None and target.rank > incident.level.rank:
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
            kind = ESCALATION if target.rank > incident.level.rank else DEESCALATION

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
        old: Status,
        new: Status,
        timing: Timing,
    ) -> CheckEvent:
        levels = {old, new}
        for _, a, b in cs.history:
            levels.update((a, b))
        ordered = sorted(levels, key=lambda level: level.rank)
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
