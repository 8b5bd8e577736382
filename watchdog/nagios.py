"""`--once --nagios`: one line in the Nagios plugin format, for NRPE, Icinga and friends.

    SERVICE STATUS: text | 'label'=value[UOM];[warn];[crit];[min];[max] ...

(Nagios plugin development guidelines). The text says the node, its role and what is not
OK; the performance data carries the numbers monitoring systems graph, with the thresholds
the checks used (replay lag against the relaxed limits while a backup runs, since those
are the ones in force). Exit codes stay those of `--once`. Pure: a Report in, a line out.
"""

from __future__ import annotations

import math
import re
from typing import Any, List, Mapping, Optional, Sequence

from watchdog.model import DRBD, REPLAY_LAG, SERVICES, STANDBYS, WAL, CheckResult, Report, Status

PREFIX = "HA-WATCHDOG"
# Nagios plugins should keep the first line short (NRPE's buffer is 1 KiB by default).
MAX_TEXT = 300


def _num(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Optional[float]) -> str:
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
    shown = "U" if value is None else _fmt(value) + uom
    fields = [shown, warn, crit, _fmt(minimum), _fmt(maximum)]
    while len(fields) > 1 and fields[-1] == "":
        fields.pop()
    return f"{label}=" + ";".join(fields)


def _replay_lag(check: CheckResult) -> List[str]:
    d = check.details
    limits = d.get("limits") if isinstance(d.get("limits"), Mapping) else {}
    out = [
        perf("replay_lag", _num(d.get("lag_seconds")), "s", _fmt(_num(limits.get("warning"))),
             _fmt(_num(limits.get("critical")))),
        perf("replay_lag_bytes", _num(d.get("lag_bytes")), "B",
             _fmt(_num(limits.get("warning_bytes"))), _fmt(_num(limits.get("critical_bytes")))),
    ]
    receiver = d.get("walreceiver") if isinstance(d.get("walreceiver"), Mapping) else {}
    out.append(perf("last_receive_age", _num(receiver.get("last_msg_receipt_age")), "s", "",
                    _fmt(_num(d.get("max_receive_age")))))
    return out


def _standbys(check: CheckResult) -> List[str]:
    d = check.details
    minimum = _num(d.get("min_streaming"))
    out = [perf("standbys_streaming", _num(d.get("streaming")), "", "",
                f"{_fmt(minimum)}:" if minimum else "")]
    entries = [e for e in d.get("standbys") or () if isinstance(e, Mapping)]
    ages = [a for a in (_num(e.get("reply_age")) for e in entries) if a is not None]
    lags = [b for b in (_num(e.get("replay_lag_bytes")) for e in entries) if b is not None]
    if entries:
        out.append(perf("standby_reply_age", max(ages) if ages else None, "s", "",
                        _fmt(_num(d.get("max_reply_age")))))
        out.append(perf("standby_replay_lag_bytes", max(lags) if lags else None, "B",
                        _fmt(_num(d.get("warning_bytes")))))
    return out


def _services(check: CheckResult) -> List[str]:
    services = [s for s in check.details.get("services") or () if isinstance(s, Mapping)]
    if not services:
        return []
    up = sum(1 for s in services if s.get("state") == "up")
    bad = sum(1 for s in services if s.get("verdict") not in ("ok", None))
    return [perf("services_up", up, "", "", "", 0, len(services)),
            perf("services_unhealthy", bad, "", "", "0")]


def _drbd(check: CheckResult) -> List[str]:
    out = []
    for entry in check.details.get("resources") or ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        percent = _num(entry.get("sync_percent"))
        if percent is None and entry.get("disk") == "UpToDate" == entry.get("peer_disk"):
            percent = 100.0
        name = entry["name"]
        label = name if name.startswith("drbd") else f"drbd_{name}"  # /proc/drbd says drbd0
        out.append(perf(f"{label}_synced", percent, "%", "", "", 0, 100))
    return out


def _wal(check: CheckResult) -> List[str]:
    d = check.details
    limits = d.get("limits") if isinstance(d.get("limits"), Mapping) else {}
    slots = [e for e in d.get("slots") or () if isinstance(e, Mapping)
             and e.get("ignored") is not True]
    held = [b for b in (_num(e.get("retained_bytes")) for e in slots) if b is not None]
    out = []
    if slots:
        out.append(perf("wal_slot_retained_max", max(held) if held else None, "B",
                        _fmt(_num(limits.get("slot_warning_bytes"))),
                        _fmt(_num(limits.get("slot_critical_bytes")))))
        out.append(perf("wal_slots_inactive", sum(1 for e in slots if e.get("active") is False),
                        "", "", ""))
    if "waldir_bytes" in d:
        out.append(perf("wal_dir", _num(d.get("waldir_bytes")), "B",
                        _fmt(_num(limits.get("dir_warning_bytes"))),
                        _fmt(_num(limits.get("dir_critical_bytes")))))
    archiver = d.get("archiver") if isinstance(d.get("archiver"), Mapping) else None
    if archiver is not None and d.get("archive_mode") in ("on", "always"):
        out.append(perf("wal_archive_failed", _num(archiver.get("failed_count")), "c"))
        out.append(perf("wal_archive_waiting", _num(d.get("ready_count"))))
    return out


_PERF = {REPLAY_LAG: _replay_lag, STANDBYS: _standbys, SERVICES: _services, DRBD: _drbd,
         WAL: _wal}


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
    data: List[str] = []
    for check in report.checks:
        fn = _PERF.get(check.name)
        if fn is None:
            continue
        try:
            data.extend(fn(check))
        except Exception:  # noqa: BLE001 - odd details never cost the status line
            continue
    return text + (" | " + " ".join(data) if data else "")
