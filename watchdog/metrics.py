"""What the daemon exposes to Prometheus, as plain data (pure; no prometheus_client here).

The daemon builds one `MetricsView` after each cycle from what it already has (the cycle's
report, the engine's confirmed states, the deliverer's counters); `families()` turns it into
metric families. The edge (`watchdog.exporter`) serves them over HTTP and writes the
node_exporter textfile. Metric names and labels are a public interface (README "Metrics").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from watchdog.model import DRBD, REPLAY_LAG, STANDBYS, CheckResult, Status


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


Sample = Tuple[Tuple[str, ...], float]  # (label values, value); bools and ints are fine

GAUGE = "gauge"
COUNTER = "counter"
ROLES = ("primary", "secondary", "unknown")
# Every DRBD format's parser reports a live link as cstate "Connected" (8.4's `cs:` word and
# DRBD 9's connection-state alike); "Established" is a replication state, never a cstate.
_CONNECTED = "Connected"
_UPTODATE = "UpToDate"
# drbd_resource_info label -> key of a drbd details["resources"] entry (describe_resource)
_DRBD_INFO = {"connection": "cstate", "role": "role", "peer_role": "peer_role", "disk": "disk",
              "peer_disk": "peer_disk"}


@dataclass(frozen=True)
class Family:
    """One metric family as plain data.

    `name` is the family name; a counter's samples are exposed as `name + "_total"` (what
    prometheus_client's CounterMetricFamily wants, and OpenMetrics' naming).
    """

    name: str
    type: str  # GAUGE or COUNTER
    help: str
    labels: Tuple[str, ...]
    samples: Tuple[Sample, ...]

    @property
    def sample_name(self) -> str:
        return f"{self.name}_total" if self.type == COUNTER else self.name


def families(view: MetricsView) -> List[Family]:
    """Every family that applies to `view`; a family without samples is left out, so a
    series that stops applying (replay lag after a failover) disappears, never goes stale."""
    node = view.node
    checks = {c.name: c for c in view.checks}
    until = view.maintenance_until if view.maintenance_active else None
    out = [
        info_family(view.version),
        _gauge("role", "This node's role as DRBD reports it: 1 for the current role.", ("role",),
               [((role,), role == view.role) for role in ROLES]),
        _gauge("check_status",
               "Last raw result of each check: 0 ok, 1 warning, 2 critical, 3 unknown.",
               ("check",), [((name,), int(c.status)) for name, c in checks.items()]),
        _gauge("check_confirmed_status",
               "Debounced (alerted) level of each check: 0 ok, 1 warning, 2 critical, 3 unknown.",
               ("check",), _confirmed(view.confirmed)),
        *_replay_lag(checks.get(REPLAY_LAG)),
        _gauge("standbys_streaming", "Standbys streaming with a fresh reply (primary).", (),
               _detail(checks.get(STANDBYS), "streaming")),
        *_drbd(checks.get(DRBD)),
        _gauge("incidents_open", "Incidents alerted and not recovered yet.", (),
               [((), view.open_incidents)]),
        _gauge("outbox_length", "Alerts waiting in the outbox for a retry.", (),
               [((), view.outbox_length)]),
        _gauge("outbox_oldest_age_seconds", "Age of the oldest outbox entry (0: empty).", (),
               [((), view.outbox_oldest_age)]),
        _counter("deliveries", "Alert deliveries per target and outcome "
                 "(delivered, failed, expired) since the daemon started.", ("target", "outcome"),
                 [((target, outcome), n) for (target, outcome), n in view.deliveries.items()]),
        _counter("cycles", "Check cycles completed since the daemon started.", (),
                 [((), view.cycles)]),
        _counter("state_write_failures", "Failed writes of the state file (engine.json) since "
                 "the daemon started; alerts are still queued when it fails.", (),
                 [((), view.state_write_failures)]),
        _gauge("cycle_duration_seconds", "Duration of the last completed cycle.", (),
               [((), view.cycle_duration)]),
        _gauge("last_cycle_timestamp_seconds", "When the last cycle completed (Unix time).", (),
               [((), view.last_cycle)]),
        _gauge("maintenance_active", "1 while maintenance mode holds alerts back.", (),
               [((), view.maintenance_active)]),
        _gauge("maintenance_end_timestamp_seconds", "When maintenance mode ends (Unix time).",
               (), [((), until)] if until is not None else []),
    ]
    return [with_node(f, node) for f in out if f.samples]


def info_family(version: str) -> Family:
    """`ha_watchdog_info` without its `node` label: alone, what a scrape shows before the
    first cycle completes."""
    return _gauge("info", "ha-watchdog running on this node (value 1).", ("version",),
                  [((version,), 1)])


def with_node(family: Family, node: str) -> Family:
    """Prefix every sample with the `node` label (each family has it first)."""
    samples = tuple(((node, *values), float(value)) for values, value in family.samples)
    return Family(family.name, family.type, family.help, ("node", *family.labels), samples)


def _gauge(name: str, text: str, labels: Tuple[str, ...], samples: Iterable[Sample]) -> Family:
    return Family(f"ha_watchdog_{name}", GAUGE, text, labels, tuple(samples))


def _counter(name: str, text: str, labels: Tuple[str, ...], samples: Iterable[Sample]) -> Family:
    return Family(f"ha_watchdog_{name}", COUNTER, text, labels, tuple(samples))


def _number(value: Any) -> Optional[float]:
    """A finite number from JSON-ish details, else None (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _detail(result: Optional[CheckResult], key: str) -> List[Sample]:
    value = _number(result.details.get(key)) if result is not None else None
    return [] if value is None else [((), value)]


def _confirmed(confirmed: Mapping[str, str]) -> List[Sample]:
    codes = {s.label: int(s) for s in Status}
    return [((check,), codes[level]) for check, level in confirmed.items()
            if isinstance(level, str) and level in codes]


def _replay_lag(result: Optional[CheckResult]) -> List[Family]:
    return [
        _gauge("replay_lag_seconds", "Replay lag of this standby in time (secondary).", (),
               _detail(result, "lag_seconds")),
        _gauge("replay_lag_bytes", "WAL received but not replayed yet (secondary).", (),
               _detail(result, "lag_bytes")),
    ]


def _drbd(result: Optional[CheckResult]) -> List[Family]:
    entries = result.details.get("resources") if result is not None else None
    info: List[Sample] = []
    connected: List[Sample] = []
    uptodate: List[Sample] = []
    synced: List[Sample] = []
    seen = set()
    for entry in entries if isinstance(entries, (list, tuple)) else ():
        fields = _drbd_fields(entry)
        if fields is None or fields["name"] in seen:
            continue
        name = fields["name"]
        seen.add(name)
        info.append(((name, *(fields[label] for label in _DRBD_INFO)), 1))
        connected.append(((name,), fields["connection"] == _CONNECTED))
        both = fields["disk"] == _UPTODATE and fields["peer_disk"] == _UPTODATE
        uptodate.append(((name,), both))
        percent = _number(entry.get("sync_percent"))
        if percent is not None and 0 <= percent <= 100:
            synced.append(((name,), percent))
        elif both:
            synced.append(((name,), 100))
    return [
        _gauge("drbd_resource_info", "DRBD resource state as words (value 1).",
               ("resource", *_DRBD_INFO), info),
        _gauge("drbd_connected", "1 when the DRBD resource is connected to its peer.",
               ("resource",), connected),
        _gauge("drbd_uptodate", "1 when both disks of the DRBD resource are UpToDate.",
               ("resource",), uptodate),
        _gauge("drbd_sync_percent", "DRBD resync progress (100: in sync).", ("resource",), synced),
    ]


def _drbd_fields(entry: Any) -> Optional[Dict[str, str]]:
    """The label values of one details["resources"] entry; None when it is malformed."""
    if not isinstance(entry, dict):
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        return None
    fields = {"name": name}
    for label, key in _DRBD_INFO.items():
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            return None
        fields[label] = value or ""
    return fields
