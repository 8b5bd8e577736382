"""A notification: what the decision core emits and the delivery layer sends.

Kinds, severities and notify types are a public interface (alert routes match on them).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, Optional

# What happened (`kind`).
PROBLEM = "problem"
ESCALATION = "escalation"
DEESCALATION = "deescalation"
RECOVERY = "recovery"
REMINDER = "reminder"
ROLE_CHANGE = "role_change"
NO_LONGER_APPLIES = "no_longer_applies"
FLAPPING = "flapping"
INFO = "info"
TEST = "test"
DIGEST = "digest"
MAINTENANCE = "maintenance"
DAILY = "daily"
KINDS = (
    PROBLEM,
    ESCALATION,
    DEESCALATION,
    RECOVERY,
    REMINDER,
    ROLE_CHANGE,
    NO_LONGER_APPLIES,
    FLAPPING,
    INFO,
    TEST,
    DIGEST,
    MAINTENANCE,
    DAILY,
)

# Routing classes (`severity`), what `[[alerts.targets]] severities` lists.
SEV_WARNING = "warning"
SEV_CRITICAL = "critical"
SEV_RECOVERY = "recovery"
SEV_INFO = "info"

# apprise notify types: every channel renders them natively (PagerDuty's action=map
# resolves on "success").
TYPE_INFO = "info"
TYPE_SUCCESS = "success"
TYPE_WARNING = "warning"
TYPE_FAILURE = "failure"

_TYPE_FOR_SEVERITY = {
    SEV_WARNING: TYPE_WARNING,
    SEV_CRITICAL: TYPE_FAILURE,
    SEV_RECOVERY: TYPE_SUCCESS,
    SEV_INFO: TYPE_INFO,
}


def notify_type_for(severity: str) -> str:
    return _TYPE_FOR_SEVERITY[severity]


@dataclass(frozen=True)
class Notification:
    """One message to send.

    `severity` routes it; `problem_severity` is the severity of the problem a recovery,
    reminder or closure belongs to, so a target that took the PROBLEM (e.g. PagerDuty,
    critical only) also takes its RECOVERY and can resolve the incident.
    """

    id: str
    kind: str
    severity: str
    notify_type: str
    title: str
    body: str
    node: str
    created: float
    check: Optional[str] = None
    problem_severity: Optional[str] = None
    # What chat and email show as the title: what is wrong at a glance, starting with the
    # stable `title` ("[mail2] replay_lag CRITICAL: replay lag 6m52s"). None: the title.
    # Incident services key on `title` (see delivery.dedup_key), never on this.
    subject: Optional[str] = None

    def routes_to(self, severities: Iterable[str]) -> bool:
        wanted = set(severities)
        if self.severity in wanted:
            return True
        return self.problem_severity is not None and self.problem_severity in wanted

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Notification:
        """From `to_json()` output; ValueError (saying which field) for anything else, so a
        damaged outbox entry is set aside instead of crashing every delivery round."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        for key in ("id", "kind", "severity", "notify_type", "title", "body", "node"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"{key!r} is not a string")
        if not data["id"]:
            raise ValueError("'id' is empty")
        if data["severity"] not in _TYPE_FOR_SEVERITY:
            raise ValueError(f"unknown severity {data['severity'][:40]!r}")
        if data["notify_type"] not in _TYPE_FOR_SEVERITY.values():
            raise ValueError(f"unknown notify_type {data['notify_type'][:40]!r}")
        created = data.get("created")
        if (isinstance(created, bool) or not isinstance(created, (int, float))
                or not math.isfinite(created)):
            raise ValueError("'created' is not a time (seconds since the epoch)")
        for key in ("check", "problem_severity"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ValueError(f"{key!r} is not a string")
        if data.get("problem_severity") not in (None, *_TYPE_FOR_SEVERITY):
            raise ValueError(f"unknown problem_severity {data['problem_severity'][:40]!r}")
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["created"] = float(created)
        return cls(**fields)


def make_id(*parts: Any) -> str:
    """A stable id from the parts that make a notification unique (node, check, kind, time)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:16]


def title_for(node: str, check: Optional[str]) -> str:
    """Stable per node and check, so PagerDuty can resolve by it: `[mail1] replay_lag`."""
    return f"[{node}] {check}" if check else f"[{node}] ha-watchdog"


def shown_title(n: Notification) -> str:
    """The title a person reads: the subject when there is one."""
    return n.subject or n.title
