"""Metric families as plain data (no prometheus_client, no I/O).

Why a module of its own: `watchdog.metrics` assembles the daemon's families and each check
contributes its own (a registry entry's `metrics`), so both need the data type without
importing each other. Names and labels are a public interface (README "Metrics").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Tuple

Sample = Tuple[Tuple[str, ...], float]  # (label values, value); bools and ints are fine

GAUGE = "gauge"
COUNTER = "counter"
PREFIX = "ha_watchdog_"


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


def gauge(name: str, text: str, labels: Tuple[str, ...], samples: Iterable[Sample]) -> Family:
    """A gauge named `ha_watchdog_<name>`."""
    return Family(f"{PREFIX}{name}", GAUGE, text, labels, tuple(samples))


def counter(name: str, text: str, labels: Tuple[str, ...], samples: Iterable[Sample]) -> Family:
    """A counter named `ha_watchdog_<name>` (exposed with `_total`)."""
    return Family(f"{PREFIX}{name}", COUNTER, text, labels, tuple(samples))


def number(value: Any) -> Optional[float]:
    """A finite number from JSON-ish details, else None (bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def detail(result: Any, key: str) -> List[Sample]:
    """One unlabelled sample from `result.details[key]` when it is a finite number; none
    when the check did not run this cycle (`result` is None) or the value is missing."""
    value = number(result.details.get(key)) if result is not None else None
    return [] if value is None else [((), value)]
