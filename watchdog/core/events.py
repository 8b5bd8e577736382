"""What the decision core emits: typed events, no words.

Why: the engine decides *that* something is told (and when, about which levels, why it was
held back); watchdog.alerts.compose turns each event into the notification a person reads.
A wording change is then never an engine change, and engine tests can assert on facts.

Every emitted event carries `seq`, its number among the events about its subject (its
check, the role, maintenance), counted in the persisted state: the notification id is made
from it, so ids are unique per event and the same when a cycle is replayed from the same
state (see watchdog.core.state).

Events held back by maintenance are kept (as JSON) in the maintenance record, so the
summary sent when it ends can say what happened: hence to_json/event_from_json here. Levels
are `model.Status`; the JSON holds their labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, NamedTuple, Optional, Tuple, Union

from watchdog.core.debounce import label_of, level_of
from watchdog.core.maintenance import Maintenance
from watchdog.model import Status

if TYPE_CHECKING:  # core.state imports this module
    from watchdog.core.state import MaintenanceRecord

# Kinds of check and role events: the same strings as the notification kinds (public).
PROBLEM = "problem"
ESCALATION = "escalation"
DEESCALATION = "deescalation"
RECOVERY = "recovery"
REMINDER = "reminder"
NO_LONGER_APPLIES = "no_longer_applies"
FLAPPING = "flapping"
ROLE_CHANGE = "role_change"
CHECK_KINDS = (PROBLEM, ESCALATION, DEESCALATION, RECOVERY, REMINDER, NO_LONGER_APPLIES, FLAPPING)


# ---------------------------------------------------------------- reasons (why, typed)


class Relaxed(NamedTuple):
    """The check ran with its relaxed (backup) limits and still exceeds them."""

    reason: str
    since: Optional[float]


class Ceiling(NamedTuple):
    """A critical result during a relaxation: never held."""

    reason: str
    since: Optional[float]


class RelaxationExpired(NamedTuple):
    """The relaxation reached backup.max_duration."""

    reason: str


class HeldBack(NamedTuple):
    """The problem was held by a relaxation from `since` and is still there now it is over."""

    reason: str
    since: Optional[float]
    expired: bool  # True: backup.max_duration was reached; False: the relaxation ended


class HeldByMaintenance(NamedTuple):
    """Held back by maintenance and still open when it ended."""

    reason: str
    started: float
    ended: float


class SettledAfterFlapping(NamedTuple):
    levels: Tuple[Status, ...]


class StillFlapping(NamedTuple):
    levels: Tuple[Status, ...]


class RoleChangeGrace(NamedTuple):
    """A missing standby paged only after the role_change_grace that followed a role change."""

    check: str
    grace: float
    changed_at: float


class ReconnectGrace(NamedTuple):
    """A missing standby paged only after its reconnect_grace."""

    check: str
    grace: float


#: Why an event went out as it did (each reason is worded by watchdog.alerts.compose).
Reason = Union[Relaxed, Ceiling, RelaxationExpired, HeldBack, HeldByMaintenance,
               SettledAfterFlapping, StillFlapping, RoleChangeGrace, ReconnectGrace]

REASONS = {
    cls.__name__: cls
    for cls in (Relaxed, Ceiling, RelaxationExpired, HeldBack, HeldByMaintenance,
                SettledAfterFlapping, StillFlapping, RoleChangeGrace, ReconnectGrace)
}


class Flap(NamedTuple):
    """What a FLAPPING event says: the levels, how many changes within what window, and how
    long the check must stay stable before it is reported again."""

    levels: Tuple[Status, ...]
    changes: int
    window: float
    quiet_for: float


class StillOpen(NamedTuple):
    """An incident open when maintenance began or ended (or when a report is written)."""

    check: str
    level: Status
    since: float
    summary: str
    paging: bool = False  # a page goes out now (it was held back during maintenance)


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class CheckEvent:
    """A change the outside world is told about one check's incident.

    `old`/`new`: the levels before and after (`new` is the incident's level for PROBLEM,
    REMINDER and FLAPPING; "ok" for RECOVERY); `since`: when the incident began; `at`: the
    transition time (a reminder: when it fell due); `peak`: the worst level notified before
    (follow-ups route like it), None for a first page; `role`: the role it was checked for.
    """

    kind: str
    node: str
    check: str
    role: str
    now: float
    at: float
    since: float
    new: Status
    old: Optional[Status] = None
    peak: Optional[Status] = None
    status: Status = Status.OK
    summary: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    reasons: Tuple[Reason, ...] = ()
    flap: Optional[Flap] = None
    new_role: Optional[str] = None  # NO_LONGER_APPLIES: the role it no longer runs for
    seq: int = 0

    def to_json(self) -> Dict[str, Any]:
        return {
            "type": "check",
            "kind": self.kind, "node": self.node, "check": self.check, "role": self.role,
            "now": self.now, "at": self.at, "since": self.since, "new": self.new.label,
            "old": label_of(self.old), "peak": label_of(self.peak), "status": self.status.label,
            "summary": self.summary,
            "details": dict(self.details),
            "reasons": [[type(r).__name__, *map(_labels, r)] for r in self.reasons],
            "flap": [_labels(self.flap.levels), *self.flap[1:]] if self.flap is not None else None,
            "new_role": self.new_role, "seq": self.seq,
        }


@dataclass(frozen=True)
class RoleChanged:
    """This node's DRBD role changed. `graces`: (check, seconds) of the checks that hold a
    missing peer for a while after a role change."""

    node: str
    old: str
    new: str
    at: float
    now: float
    last_known: Optional[str] = None
    graces: Tuple[Tuple[str, float], ...] = ()
    seq: int = 0
    kind: str = ROLE_CHANGE

    def to_json(self) -> Dict[str, Any]:
        return {
            "type": "role", "node": self.node, "old": self.old, "new": self.new, "at": self.at,
            "now": self.now, "last_known": self.last_known,
            "graces": [list(g) for g in self.graces], "seq": self.seq,
        }


@dataclass(frozen=True)
class MaintenanceStarted:
    node: str
    maintenance: Maintenance
    now: float
    open_now: Tuple[StillOpen, ...]
    role: Optional[str]
    seq: int = 0


@dataclass(frozen=True)
class MaintenanceChanged:
    """The running maintenance got a new end or reason."""

    node: str
    maintenance: Maintenance
    now: float
    seq: int = 0


@dataclass(frozen=True)
class MaintenanceEnded:
    """`record` holds what happened meanwhile."""

    node: str
    record: MaintenanceRecord
    how: str
    ended: float
    now: float
    still_open: Tuple[StillOpen, ...]
    role: Optional[str]
    seq: int = 0


#: What the engine emits.
Event = Union[CheckEvent, RoleChanged, MaintenanceStarted, MaintenanceChanged, MaintenanceEnded]


# ---------------------------------------------------------------- JSON (held events)


def _num(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _labels(value: Any) -> Any:
    """A reason's field as JSON: a tuple of levels becomes their labels."""
    if isinstance(value, tuple) and value and all(isinstance(v, Status) for v in value):
        return [v.label for v in value]
    return value


def _levels(items: Any) -> Tuple[Status, ...]:
    """Levels from their labels; anything else is dropped."""
    found = (level_of(x) for x in items)
    return tuple(level for level in found if level is not None)


def _reasons(items: Any) -> Tuple[Reason, ...]:
    out: List[Reason] = []
    for item in items if isinstance(items, list) else ():
        if not (isinstance(item, list) and item and item[0] in REASONS):
            continue
        cls = REASONS[item[0]]
        try:
            reason = cls(*item[1:])
        except TypeError:
            continue
        if any(isinstance(v, list) for v in reason):
            reason = cls(*(_levels(v) if isinstance(v, list) else v for v in reason))
        out.append(reason)
    return tuple(out)


def event_from_json(data: Any) -> Any:
    """A CheckEvent or RoleChanged from to_json() output; ValueError for anything else."""
    if not isinstance(data, dict):
        raise ValueError("event is not an object")
    if data.get("type") == "role":
        texts = [_str(data.get(k)) for k in ("node", "old", "new")]
        at, now = _num(data.get("at")), _num(data.get("now"))
        if None in texts or at is None or now is None:
            raise ValueError("role event lacks a field")
        graces = tuple(
            (g[0], float(g[1])) for g in data.get("graces") or ()
            if isinstance(g, list) and len(g) == 2 and isinstance(g[0], str)
            and _num(g[1]) is not None
        )
        return RoleChanged(texts[0], texts[1], texts[2], at, now, _str(data.get("last_known")),
                           graces)
    if data.get("type") != "check":
        raise ValueError("unknown event type")
    texts = [_str(data.get(k)) for k in ("kind", "node", "check", "role")]
    times = [_num(data.get(k)) for k in ("now", "at", "since")]
    new = level_of(data.get("new"))
    if None in texts or None in times or new is None or texts[0] not in CHECK_KINDS:
        raise ValueError("check event lacks a field")
    flap = data.get("flap")
    if isinstance(flap, list) and len(flap) == 4 and isinstance(flap[0], list):
        flap = Flap(_levels(flap[0]), int(flap[1]), float(flap[2]), float(flap[3]))
    else:
        flap = None
    details = data.get("details")
    return CheckEvent(
        kind=texts[0], node=texts[1], check=texts[2], role=texts[3], new=new,
        now=times[0], at=times[1], since=times[2],
        old=level_of(data.get("old")), peak=level_of(data.get("peak")),
        status=level_of(data.get("status")) or Status.OK,
        summary=_str(data.get("summary")) or "",
        details=details if isinstance(details, dict) else {},
        reasons=_reasons(data.get("reasons")), flap=flap, new_role=_str(data.get("new_role")),
    )
