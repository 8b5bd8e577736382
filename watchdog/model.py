"""Typed results shared by checks, the decision core, alerts and the CLI.

The string values here (statuses, roles, check names, JSON keys) are a public interface:
monitoring systems and alert routes match on them. Do not rename them casually.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional


class Status(enum.IntEnum):
    """Nagios plugin states; the int value is the `--once` exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def rank(self) -> int:
        """Severity for "worst of": ok < warning < unknown < critical.

        UNKNOWN outranks WARNING (we could not verify, which is worse than a known
        degradation) but not CRITICAL (a known outage is worse than an unknown).
        """
        return _RANK[self]

    @classmethod
    def parse(cls, text: str) -> Status:
        return cls[text.strip().upper()]


_RANK = {Status.OK: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.CRITICAL: 3}


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status; OK for an empty input."""
    result = Status.OK
    for status in statuses:
        if status.rank > result.rank:
            result = status
    return result


class Role(str, enum.Enum):
    """This node's role, as DRBD says."""

    PRIMARY = "primary"
    SECONDARY = "secondary"
    UNKNOWN = "unknown"


# Stable check names (public interface).
DRBD = "drbd"
POSTGRES_ROLE = "postgres_role"
SERVICES = "services"
STANDBYS = "standbys"
REPLAY_LAG = "replay_lag"
STORAGE = "storage"
WAL = "wal"
BACKUP_LOG = "backup_log"


def __getattr__(name: str) -> Any:
    """`CHECK_NAMES`: every check's name, from the check registry (the one list of checks;
    looked up late because the registry imports this module)."""
    if name == "CHECK_NAMES":
        from watchdog.checks.registry import names

        return names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Failure(str, enum.Enum):
    """What kind of failure a non-OK result is, when the decision core must time it apart.

    MISSING: a peer is simply not there (no standby streaming). Expected for a few seconds
    when a connection is re-made and for longer while a standby is rebuilt after a role
    change, so the core holds it for a grace (see watchdog.core.debounce) before paging.
    HUNG: the peer is connected but silent past its own liveness limit (`max_reply_age`):
    that limit already is the wait, so no grace is added.
    """

    MISSING = "missing"
    HUNG = "hung"


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict: what a person reads (`summary`) and the numbers (`details`).

    `failure` tells the decision core which kind of failure a non-OK status is (None: an
    ordinary one, timed by the check's `for` alone). `recheck_in`: seconds from now when a
    liveness deadline of this check falls due (the daemon runs an extra cycle just after
    it); None when there is none. Checks also show it in `details` (JSON output).
    """

    name: str
    status: Status
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)
    failure: Optional[Failure] = None
    recheck_in: Optional[float] = None

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.label,
            "summary": self.summary,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Report:
    """The result of one cycle: role plus every check that applies to it."""

    node: str
    role: Role
    checks: List[CheckResult]

    @property
    def status(self) -> Status:
        return worst(c.status for c in self.checks)

    def to_json(self) -> Dict[str, Any]:
        return {
            "node": self.node,
            "role": self.role.value,
            "status": self.status.label,
            "checks": [c.to_json() for c in self.checks],
        }

    def summary_line(self) -> str:
        """One ASCII line: what a cycle log, STATUS= and the demo print."""
        parts = [f"{c.name}={c.status.label}" for c in self.checks]
        return f"{self.node} {self.role.value} {self.status.label}: " + " ".join(parts)
