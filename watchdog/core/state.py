"""The engine's persisted state: one schema, loaded tolerantly and by version.

Why one module: engine.json outlives releases (an upgrade keeps the open incidents, so a
problem is not paged again and its recovery still goes out). Everything that is written is
defined here, with the loader that reads every version ever written:
- version 1 (releases up to f996f66): no notification numbers; loads with none.
- version 2: adds `seqs`, per subject (a check, the role, maintenance) the number of
  notifications emitted about it. A notification id includes its number, so ids are unique
  (two transitions of one check in one instant, or a clock stepped back, no longer share an
  id), and a cycle replayed from the same state after a crash re-creates the same ids. Per
  subject, not one counter: an extra event in the replay (a role change confirmed by then)
  must not renumber, and so re-send, the other checks' events.
A damaged or wrong-shaped part is dropped and named (`lost`), never an exception.
Levels are `model.Status` in memory and their labels ("ok", "critical", ...) in the file:
this module converts at the edge, so the file reads as it always did.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, NamedTuple, Optional

from watchdog.core.debounce import OK, Debounce, label_of, level_of
from watchdog.core.events import event_from_json
from watchdog.model import Role, Status

STATE_VERSION = 2
# Versions from_json reads (older ones are migrated on load).
READABLE_VERSIONS = (1, 2)
_ROLES = tuple(r.value for r in Role)

def _num(value: Any, default: Optional[float] = None) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    value = float(value)
    return value if math.isfinite(value) else default


def _level(value: Any, default: Optional[Status] = None) -> Optional[Status]:
    """A level from its JSON label; `default` for anything else."""
    level = level_of(value)
    return default if level is None else level


def _jsonable(details: Any) -> Dict[str, Any]:
    """Details as plain JSON (anything odd becomes its str)."""
    if not isinstance(details, Mapping):
        return {}
    try:
        return json.loads(json.dumps(dict(details), default=str))
    except (TypeError, ValueError):
        return {str(k): str(v) for k, v in details.items()}


@dataclass
class Incident:
    """What the outside world has been told about one check's current problem."""

    level: Status
    since: float  # when the problem began (its first bad sample)
    peak: Status  # worst level notified: follow-ups route to whoever got that
    last_sent: float  # time of the last notification about it (reminders count from here)
    flapping: bool = False
    flap_since: Optional[float] = None
    flap_levels: List[Status] = field(default_factory=list)
    # The level the outside world was last told (None: never paged, opened in maintenance).
    told: Optional[Status] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "level": self.level.label,
            "told": label_of(self.told),
            "since": self.since,
            "peak": self.peak.label,
            "last_sent": self.last_sent,
            "flapping": self.flapping,
            "flap_since": self.flap_since,
            "flap_levels": [level.label for level in self.flap_levels],
        }

    @classmethod
    def from_json(cls, data: Any) -> Optional[Incident]:
        if not isinstance(data, dict):
            return None
        level = _level(data.get("level"))
        since = _num(data.get("since"))
        if level is None or level == OK or since is None:
            return None
        flap_levels = data.get("flap_levels")
        if not isinstance(flap_levels, list):
            flap_levels = []
        flapping = bool(data.get("flapping", False))
        flap_since = _num(data.get("flap_since"))
        if flapping and flap_since is None:
            flapping = False
        return cls(
            level=level,
            since=since,
            peak=_level(data.get("peak"), level) or level,
            last_sent=_num(data.get("last_sent"), since) or since,
            flapping=flapping,
            flap_since=flap_since,
            flap_levels=[x for x in map(level_of, flap_levels) if x is not None],
            # States written before maintenance existed: everything open had been paged.
            told=_level(data.get("told")) if "told" in data else level,
        )


@dataclass
class CheckState:
    """One check: its debounce, the latest result it saw, its incident, a held problem and the
    recent notified transitions (for flapping)."""

    debounce: Debounce = field(default_factory=Debounce)
    status: Status = OK
    summary: str = ""
    details: Dict[str, Any] = field(default_factory=dict)
    incident: Optional[Incident] = None
    held: Optional[Dict[str, Any]] = None  # {"reason": str, "since": float}
    history: List[List[Any]] = field(default_factory=list)  # [time, old level, new level]

    def to_json(self) -> Dict[str, Any]:
        return {
            "debounce": self.debounce.to_json(),
            "status": self.status.label,
            "summary": self.summary,
            "details": self.details,
            "incident": self.incident.to_json() if self.incident else None,
            "held": self.held,
            "history": [[t, old.label, new.label] for t, old, new in self.history],
        }

    @classmethod
    def from_json(cls, data: Any) -> CheckState:
        if not isinstance(data, dict):
            raise ValueError("check state is not an object")
        held = data.get("held")
        if not (isinstance(held, dict) and isinstance(held.get("reason"), str)):
            held = None
        else:
            held = {"reason": held["reason"], "since": _num(held.get("since"))}
        history = []
        raw_history = data.get("history")
        for item in raw_history if isinstance(raw_history, list) else []:
            if (
                isinstance(item, list)
                and len(item) == 3
                and _num(item[0]) is not None
                and level_of(item[1]) is not None
                and level_of(item[2]) is not None
            ):
                history.append([float(item[0]), level_of(item[1]), level_of(item[2])])
        summary = data.get("summary")
        return cls(
            debounce=Debounce.from_json(data.get("debounce")),
            status=_level(data.get("status"), OK) or OK,
            summary=summary if isinstance(summary, str) else "",
            details=_jsonable(data.get("details")),
            incident=Incident.from_json(data.get("incident")),
            held=held,
            history=history,
        )


class ClosedIncident(NamedTuple):
    """An incident that ended: what the daily message lists."""

    check: str
    worst: Status  # the worst level it reached
    since: float
    until: float
    closed: str  # "recovered" or "no longer applies" (role changed)
    paged: bool  # False: it began and ended during maintenance

    def to_json(self) -> Dict[str, Any]:
        return dict(self._asdict(), worst=self.worst.label)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> ClosedIncident:
        return cls(**dict({k: data[k] for k in cls._fields}, worst=level_of(data["worst"])))

    def valid(self) -> bool:
        return (
            isinstance(self.check, str)
            and isinstance(self.worst, Status)
            and _num(self.since) is not None
            and _num(self.until) is not None
            and isinstance(self.closed, str)
            and isinstance(self.paged, bool)
        )


class RoleChangeSeen(NamedTuple):
    at: float
    old: str
    new: str

    def valid(self) -> bool:
        return _num(self.at) is not None and self.old in _ROLES and self.new in _ROLES


class MaintenanceEvent(NamedTuple):
    """One notification that came up during maintenance (held back unless `sent`), already
    in words: how version 1 recorded it, and what the maintenance summary lists."""

    at: float
    kind: str
    check: Optional[str]
    severity: str
    line: str  # the first line of its body
    sent: bool

    def valid(self) -> bool:
        return _num(self.at) is not None and isinstance(self.kind, str) and isinstance(
            self.line, str
        )


class HeldEvent(NamedTuple):
    """One event that came up during maintenance (held back unless `sent`), as the engine
    emitted it (a core.events CheckEvent or RoleChanged): alerts/ words it when it ends."""

    event: Any
    sent: bool


def _maintenance_events(items: Any) -> List[Any]:
    """Version 1 entries (MaintenanceEvent, with words) and version 2 ones (HeldEvent)."""
    out: List[Any] = []
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and "event" in item:
            try:
                out.append(HeldEvent(event_from_json(item["event"]), item.get("sent") is True))
            except (ValueError, TypeError):
                continue
        else:
            out.extend(_records(MaintenanceEvent, [item]))
    return out


@dataclass
class MaintenanceRecord:
    """A maintenance as the engine applies it: the request's facts and what happened."""

    id: str
    reason: str
    by: str
    started: float
    until: float
    events: List[Any] = field(default_factory=list)  # MaintenanceEvent or HeldEvent
    dropped: int = 0  # events beyond MAX_MAINTENANCE_EVENTS (counted, not kept)

    def to_json(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "reason": self.reason,
            "by": self.by,
            "started": self.started,
            "until": self.until,
            "events": [
                {"event": e.event.to_json(), "sent": e.sent} if isinstance(e, HeldEvent)
                else e._asdict()
                for e in self.events
            ],
            "dropped": self.dropped,
        }

    @classmethod
    def from_json(cls, data: Any) -> Optional[MaintenanceRecord]:
        if not isinstance(data, dict):
            return None
        texts = [data.get(k) for k in ("id", "reason", "by")]
        started, until = _num(data.get("started")), _num(data.get("until"))
        if not all(isinstance(t, str) for t in texts) or started is None or until is None:
            return None
        dropped = data.get("dropped")
        return cls(
            id=texts[0],
            reason=texts[1],
            by=texts[2],
            started=started,
            until=until,
            events=_maintenance_events(data.get("events")),
            dropped=dropped if isinstance(dropped, int) and not isinstance(dropped, bool) else 0,
        )


@dataclass
class EngineState:
    """Everything the engine remembers between cycles (and across restarts), as JSON."""

    version: int = STATE_VERSION
    role: Optional[str] = None
    role_since: Optional[float] = None
    role_pending: Optional[str] = None
    role_pending_since: Optional[float] = None
    last_known_role: Optional[str] = None
    checks: Dict[str, CheckState] = field(default_factory=dict)
    relax_memory: Dict[str, Any] = field(default_factory=dict)
    # The maintenance in effect as this engine applies it (see MaintenanceRecord), or None.
    maintenance: Optional[MaintenanceRecord] = None
    # Closed incidents and role changes of the last HISTORY_KEEP seconds (daily message).
    history: List[ClosedIncident] = field(default_factory=list)
    role_changes: List[RoleChangeSeen] = field(default_factory=list)
    # The daily message: when it is next due, and the schedule that computed it.
    digest_next: Optional[float] = None
    digest_schedule: Optional[str] = None
    # Per subject, notifications emitted so far: each id includes its number (module doc).
    seqs: Dict[str, int] = field(default_factory=dict)

    def next_seq(self, subject: str) -> int:
        """The number of the next notification about `subject` (and count it)."""
        self.seqs[subject] = self.seqs.get(subject, 0) + 1
        return self.seqs[subject]

    def to_json(self) -> Dict[str, Any]:
        return {
            "version": self.version,
            "role": self.role,
            "role_since": self.role_since,
            "role_pending": self.role_pending,
            "role_pending_since": self.role_pending_since,
            "last_known_role": self.last_known_role,
            "checks": {name: cs.to_json() for name, cs in sorted(self.checks.items())},
            "relax_memory": dict(self.relax_memory),
            "maintenance": self.maintenance.to_json() if self.maintenance else None,
            "history": [h.to_json() for h in self.history],
            "role_changes": [r._asdict() for r in self.role_changes],
            "digest_next": self.digest_next,
            "digest_schedule": self.digest_schedule,
            "seqs": dict(sorted(self.seqs.items())),
        }

    @classmethod
    def from_json(cls, data: Any, lost: Optional[List[str]] = None) -> EngineState:
        """Tolerant: a corrupt or foreign state gives a fresh state (or drops the bad parts),
        never an exception; an unknown version gives a fresh state. What could not be kept is
        appended to `lost` (one phrase each), so the caller can say it: a check whose state
        is lost may page again for a problem it had already reported."""
        lost = [] if lost is None else lost
        if not isinstance(data, dict):
            lost.append(f"the whole state (a JSON {type(data).__name__}, not an object)")
            return cls()
        version = data.get("version")
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            lost.append(f"the whole state (version {str(version)[:40]!r}, expected {STATE_VERSION})")
            return cls()
        state = cls()
        role = data.get("role")
        if role is not None and role not in _ROLES:
            lost.append("the role")
        if role in _ROLES:
            state.role = role
            state.role_since = _num(data.get("role_since"))
            pending = data.get("role_pending")
            pending_since = _num(data.get("role_pending_since"))
            if pending in _ROLES and pending != role and pending_since is not None:
                state.role_pending, state.role_pending_since = pending, pending_since
            known = data.get("last_known_role")
            if known in (Role.PRIMARY.value, Role.SECONDARY.value):
                state.last_known_role = known
        checks = data.get("checks")
        if checks is not None and not isinstance(checks, dict):
            lost.append("the state of every check")
        for name, raw in checks.items() if isinstance(checks, dict) else ():
            if not isinstance(name, str):
                continue
            try:
                state.checks[name] = CheckState.from_json(raw)
            except (TypeError, ValueError, KeyError, AttributeError):
                lost.append(f"the state of check {name[:60]!r}")
                continue
            incident = raw.get("incident") if isinstance(raw, dict) else None
            if incident is not None and state.checks[name].incident is None:
                lost.append(f"the open incident of check {name[:60]!r}")
        memory = data.get("relax_memory")
        if isinstance(memory, dict):
            state.relax_memory = {
                k: v for k, v in memory.items() if isinstance(k, str) and _num(v) is not None
            }
        state.maintenance = MaintenanceRecord.from_json(data.get("maintenance"))
        state.history = _records(ClosedIncident, data.get("history"))
        state.role_changes = _records(RoleChangeSeen, data.get("role_changes"))
        state.digest_next = _num(data.get("digest_next"))
        schedule = data.get("digest_schedule")
        state.digest_schedule = schedule if isinstance(schedule, str) else None
        # Version 1 had no numbers: start from none (its ids had none, so none can clash).
        seqs = data.get("seqs") if version >= 2 else {}
        for subject, number in seqs.items() if isinstance(seqs, dict) else ():
            if isinstance(subject, str) and type(number) is int and number >= 0:
                state.seqs[subject] = number
        if not isinstance(seqs, dict) or len(state.seqs) != len(seqs):
            lost.append("some notification numbers (those subjects count from 0 again)")
        return state


def _records(cls: Any, items: Any) -> List[Any]:
    """NamedTuples from JSON objects: each field typed as its default says; bad items dropped."""
    out = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict):
            continue
        try:
            if hasattr(cls, "from_json"):
                out.append(cls.from_json(item))
            else:
                out.append(cls(**{k: item[k] for k in cls._fields}))
        except (KeyError, TypeError):
            continue
    return [r for r in out if r.valid()]


