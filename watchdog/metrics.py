"""What the daemon exposes to Prometheus, as plain data (pure; no prometheus_client here).

The daemon builds one `MetricsView` after each cycle from what it already has (the cycle's
report, the engine's confirmed states, the deliverer's counters); `families()` turns it into
metric families. The edge (`watchdog.exporter`) serves them over HTTP and writes the
node_exporter textfile. Metric names and labels are a public interface (README "Metrics").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Sequence, Tuple

from watchdog.checks import registry
from watchdog.families import COUNTER, GAUGE, Family, Sample, counter, gauge
from watchdog.model import CheckResult, Status

__all__ = ["COUNTER", "GAUGE", "Family", "MetricsView", "families", "info_family", "with_node"]


@dataclass(frozen=True)
class MetricsView:
    """The state one scrape shows; built by the daemon after every completed cycle."""

    node: str
    version: str
    role: str  # primary / secondary / unknown (this cycle's, as --once reports it)
    checks: Sequence[CheckResult] = ()  # this cycle's raw results, exactly as --once --json
    # check -> debounced level ("ok", "warning", "critical", "unknown"); a check whose level
    # is not confirmed yet (just started) is absent.
    confirmed: Mapping[str, str] = field(default_factory=dict)
    open_incidents: int = 0
    outbox_length: int = 0
    outbox_oldest_age: float = 0.0  # seconds; 0 when the outbox is empty
    # (target, outcome) -> count since the daemon started; outcome: delivered, failed, expired
    deliveries: Mapping[Tuple[str, str], int] = field(default_factory=dict)
    cycle_duration: float = 0.0  # seconds, the last completed cycle
    last_cycle: float = 0.0  # epoch seconds when the last cycle completed
    cycles: int = 0  # completed cycles since the daemon started
    maintenance_active: bool = False
    maintenance_until: Optional[float] = None  # epoch seconds, when active
    state_write_failures: int = 0  # failed writes of engine.json since the daemon started


ROLES = ("primary", "secondary", "unknown")


def families(view: MetricsView) -> List[Family]:
    """Every family that applies to `view`; a family without samples is left out, so a
    series that stops applying (replay lag after a failover) disappears, never goes stale."""
    node = view.node
    checks = {c.name: c for c in view.checks}
    until = view.maintenance_until if view.maintenance_active else None
    out = [
        info_family(view.version),
        gauge("role", "This node's role as DRBD reports it: 1 for the current role.", ("role",),
               [((role,), role == view.role) for role in ROLES]),
        gauge("check_status",
               "Last raw result of each check: 0 ok, 1 warning, 2 critical, 3 unknown.",
               ("check",), [((name,), int(c.status)) for name, c in checks.items()]),
        gauge("check_confirmed_status",
               "Debounced (alerted) level of each check: 0 ok, 1 warning, 2 critical, 3 unknown.",
               ("check",), _confirmed(view.confirmed)),
        *_per_check(checks),
        gauge("incidents_open", "Incidents alerted and not recovered yet.", (),
               [((), view.open_incidents)]),
        gauge("outbox_length", "Alerts waiting in the outbox for a retry.", (),
               [((), view.outbox_length)]),
        gauge("outbox_oldest_age_seconds", "Age of the oldest outbox entry (0: empty).", (),
               [((), view.outbox_oldest_age)]),
        counter("deliveries", "Alert deliveries per target and outcome "
                 "(delivered, failed, expired) since the daemon started.", ("target", "outcome"),
                 [((target, outcome), n) for (target, outcome), n in view.deliveries.items()]),
        counter("cycles", "Check cycles completed since the daemon started.", (),
                 [((), view.cycles)]),
        counter("state_write_failures", "Failed writes of the state file (engine.json) since "
                 "the daemon started; alerts are still queued when it fails.", (),
                 [((), view.state_write_failures)]),
        gauge("cycle_duration_seconds", "Duration of the last completed cycle.", (),
               [((), view.cycle_duration)]),
        gauge("last_cycle_timestamp_seconds", "When the last cycle completed (Unix time).", (),
               [((), view.last_cycle)]),
        gauge("maintenance_active", "1 while maintenance mode holds alerts back.", (),
               [((), view.maintenance_active)]),
        gauge("maintenance_end_timestamp_seconds", "When maintenance mode ends (Unix time).",
               (), [((), until)] if until is not None else []),
    ]
    return [with_node(f, node) for f in out if f.samples]


def info_family(version: str) -> Family:
    """`ha_watchdog_info` without its `node` label: alone, what a scrape shows before the
    first cycle completes."""
    return gauge("info", "ha-watchdog running on this node (value 1).", ("version",),
                  [((version,), 1)])


def with_node(family: Family, node: str) -> Family:
    """Prefix every sample with the `node` label (each family has it first)."""
    samples = tuple(((node, *values), float(value)) for values, value in family.samples)
    return Family(family.name, family.type, family.help, ("node", *family.labels), samples)










def _confirmed(confirmed: Mapping[str, str]) -> List[Sample]:
    codes = {s.label: int(s) for s in Status}
    return [((check,), codes[level]) for check, level in confirmed.items()
            if isinstance(level, str) and level in codes]


def _per_check(checks: Mapping[str, CheckResult]) -> List[Family]:
    """Each registered check's own families, in registry order (a check that did not run
    this cycle gets None, and its families come back empty, so they are left out)."""
    out: List[Family] = []
    for check in registry.CHECKS:
        if check.metrics is not None:
            out.extend(check.metrics(checks.get(check.name)))
    return out
