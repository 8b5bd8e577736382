"""Human output of a report: a compact table, coloured only on a terminal."""

from __future__ import annotations

import json
import shutil
from typing import Any, List, Mapping, Optional, Sequence

from watchdog.model import Report, Status

_COLOURS = {
    Status.OK: "\033[32m",
    Status.WARNING: "\033[33m",
    Status.CRITICAL: "\033[31;1m",
    Status.UNKNOWN: "\033[35m",
}
_RESET = "\033[0m"


def _paint(text: str, status: Status, colour: bool) -> str:
    return f"{_COLOURS[status]}{text}{_RESET}" if colour else text


def render_table(
    report: Report, colour: bool = False, width: int = 0, notes: Sequence[str] = ()
) -> str:
    """The `--once` table: one header line (and `notes` under it), one row per check,
    summaries wrapped to width."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    name_w = max([len("CHECK")] + [len(c.name) for c in report.checks])
    status_w = len("CRITICAL")
    lead = name_w + status_w + 4
    summary_w = max(30, width - lead)
    overall = report.status
    lines: List[str] = [
        f"{report.node}  role={report.role.value}  status="
        + _paint(overall.name, overall, colour),
        *notes,
        f"{'CHECK'.ljust(name_w)}  {'STATUS'.ljust(status_w)}  SUMMARY",
    ]
    for check in report.checks:
        chunks = _wrap(check.summary, summary_w)
        status = _paint(check.status.name.ljust(status_w), check.status, colour)
        lines.append(f"{check.name.ljust(name_w)}  {status}  {chunks[0]}")
        lines.extend(" " * lead + chunk for chunk in chunks[1:])
    return "\n".join(lines)


def _wrap(text: str, width: int) -> List[str]:
    words = text.split()
    if not words:
        return [""]
    out, current = [], words[0]
    for word in words[1:]:
        if len(current) + 1 + len(word) > width:
            out.append(current)
            current = word
        else:
            current += " " + word
    out.append(current)
    return out


def render_json(report: Report, extra: Optional[Mapping[str, Any]] = None) -> str:
    """The report's JSON, plus `extra` top-level keys (e.g. "maintenance")."""
    data = report.to_json()
    data.update(extra or {})
    return json.dumps(data, indent=2, sort_keys=False, default=str)
