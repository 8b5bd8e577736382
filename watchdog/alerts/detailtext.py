"""Details values as short text for alerts (pure): numbers, durations, sizes, names.

Details come from JSON (the engine persists them), so each helper checks its value and
gives None (or nothing) for anything odd: never an exception, a repr or a JSON dump. Shared
by `advice` and `advice_disks`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from watchdog.units import format_bytes, format_duration

# GreenArrow's PostgreSQL logs through multilog into this directory (its `current` file).
PG_LOG = "/var/hvmail/log/postgres/current"
_TEXT = 80  # longest text value quoted from details


def as_number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def as_text(value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value.strip():
        return None
    value = " ".join(value.split())
    return value if len(value) <= _TEXT else value[: _TEXT - 3] + "..."


def as_duration(value: Any) -> Optional[str]:
    number = as_number(value)
    return format_duration(number) if number is not None else None


def as_bytes(value: Any) -> Optional[str]:
    number = as_number(value)
    return format_bytes(number) if number is not None and number >= 0 else None


def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_names(value: Any, limit: int = 6) -> Optional[str]:
    if not isinstance(value, (list, tuple)):
        return None
    names = [n for n in (as_text(v) for v in value) if n]
    if not names:
        return None
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def limits_text(*pairs: Any) -> str:
    shown = [f"{label} {text}" for label, text in pairs if text]
    return f" ({', '.join(shown)})" if shown else ""
