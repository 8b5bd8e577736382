"""`--once --nagios`: one line in the Nagios plugin format, for NRPE, Icinga and friends.

    SERVICE STATUS: text | 'label'=value[UOM];[warn];[crit];[min];[max] ...

(Nagios plugin development guidelines). The text says the node, its role and what is not
OK; the performance data carries the numbers monitoring systems graph, with the thresholds
the checks used (replay lag against the relaxed limits while a backup runs, since those
are the ones in force). Exit codes stay those of `--once`. Pure: a Report in, a line out.

Each check's performance data comes from its registry entry (`perfdata`, a function in the
check's module built with `perf`, `num` and `fmt` from here), as its metrics do: this module
names no check.
"""

from __future__ import annotations

import math
import re
from typing import Any, List, Optional, Sequence

from watchdog.model import Report, Status

PREFIX = "HA-WATCHDOG"
# Nagios plugins should keep the first line short (NRPE's buffer is 1 KiB by default).
MAX_TEXT = 300


def num(value: Any) -> Optional[float]:
    """A finite number from a details value; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: Optional[float]) -> str:
    """A number as a threshold field: no trailing zeros; "" for None."""
    if value is None:
        return ""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


def perf(label: str, value: Optional[float], uom: str = "", warn: str = "", crit: str = "",
         minimum: Optional[float] = 0, maximum: Optional[float] = None) -> str:
    """One performance datum; `U` when the value is unknown (as the guidelines say)."""
    if re.search(r"[\s'=]", label):
        label = "'" + label.replace("'", "''") + "'"
    shown = "U" if value is None else fmt(value) + uom
    fields = [shown, warn, crit, fmt(minimum), fmt(maximum)]
    while len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return f"{label}=" + ";".join(fields)


def render_nagios(report: Report, notes: Sequence[str] = ()) -> str:
    """The whole plugin output: one line, text then `|` then performance data."""
    status = report.status
    bad = [c for c in report.checks if c.status is not Status.OK]
    if bad:
        bad.sort(key=lambda c: -c.status.rank)
        what = "; ".join(f"{c.name} {c.status.name}: {c.summary}" for c in bad)
    else:
        what = "all checks OK (" + ", ".join(c.name for c in report.checks) + ")"
    text = f"{PREFIX} {status.name} - {report.node} {report.role.value}: {what}"
    for note in notes:
        text += f"; {note}"
    text = " ".join(text.replace("|", "/").split())  # `|` starts the perf data
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 3] + "..."
    from watchdog.checks.registry import find

    data: List[str] = []
    for check in report.checks:
        entry = find(check.name)
        fn = entry.perfdata if entry is not None else None
        if fn is None:
            continue
        try:
            data.extend(fn(check))
        except Exception:  # noqa: BLE001 - odd details never cost the status line
            continue
    return text + (" | " + " ".join(data) if data else "")
