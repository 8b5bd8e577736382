"""`storage` (both roles): free bytes and inodes of the watched filesystems, and when they
will run out at the rate of the last hours.

Why inodes as well as bytes: GreenArrow's qmail queues are many small files, so a mail
server's disk can run out of inodes with bytes to spare, and then nothing can be written.
Why a forecast: a fixed limit pages when the disk is nearly full, which is too late for a
volume filling at gigabytes an hour (an inactive replication slot keeping WAL, a runaway
log); "full in ~3h at the rate of the last 2h" pages while there is time to act.

Per filesystem (watchdog.probes.storage says which and why):
- unreadable (stat failed or hung, /proc/mounts unreadable): UNKNOWN with the reason;
- free bytes or free inodes at or below `critical_free`/`critical_free_inodes`: CRITICAL,
  at or below the `warning_*` ones: WARNING (a limit is a percent of the usable space,
  like df's Use%, or an amount);
- the forecast (watchdog.checks.forecast, least squares over `forecast_window` of the
  daemon's own samples) says full within `critical_full_in`: CRITICAL, within
  `warning_full_in`: WARNING. During a backup window or a running backup (`[backup]
  checks` naming `storage`) only `critical_full_in` applies: a dump fills its disk at a
  rate that ends with the backup, but a dump that will fill the disk before it ends is
  still paged.
The check's status is the worst filesystem's. Nothing to watch (a secondary has no DRBD
device mounted, no data directory here, no paths configured) is OK and says so.

Pure: the snapshot and the section in, a CheckResult out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from watchdog.checks.forecast import Forecast, time_to_full
from watchdog.config.schema import CheckTiming, _dur, _f, _timeout, check_section
from watchdog.families import Family, gauge, number
from watchdog.model import STORAGE, CheckResult, Status, worst
from watchdog.nagios import num, perf
from watchdog.probes.storage import FsReading, StorageSnapshot
from watchdog.units import format_bytes, format_duration, parse_size

_PERCENT = re.compile(r"^[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*%[ \t]*$")


@dataclass(frozen=True)
class FreeLimit:
    """A free-space limit: a percent of the usable space, or an amount (bytes or inodes).
    A limit of 0 (either form) is off."""

    percent: Optional[float] = None
    amount: Optional[int] = None

    @property
    def off(self) -> bool:
        return not self.percent and not self.amount

    def reached(self, free: float, usable: float) -> bool:
        if self.off or usable <= 0:
            return False
        if self.percent is not None:
            return free * 100.0 <= self.percent * usable
        return free <= (self.amount or 0)

    def text(self, unit: str) -> str:
        if self.percent is not None:
            return f"{self.percent:g}%"
        return format_bytes(self.amount or 0) if unit == "bytes" else f"{self.amount} inodes"


def _percent(value: str) -> Optional[FreeLimit]:
    match = _PERCENT.match(value)
    if not match:
        return None
    percent = float(match.group(1))
    if not percent < 100.0:
        raise ValueError(f"must be below 100% (100% would always alert), got {value!r}")
    return FreeLimit(percent=percent)


def parse_free_bytes(value: Any) -> FreeLimit:
    """`"10%"` of the usable space, or a size (`"5GiB"`); ValueError says why not."""
    if isinstance(value, str):
        limit = _percent(value)
        if limit is not None:
            return limit
    try:
        return FreeLimit(amount=parse_size(value))
    except ValueError as exc:
        raise ValueError(f'{exc}; or a percent of the filesystem like "10%"') from None


def parse_free_inodes(value: Any) -> FreeLimit:
    """`"10%"` of the filesystem's inodes, or a count (`50000`)."""
    if isinstance(value, str):
        limit = _percent(value)
        if limit is not None:
            return limit
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f'expected a percent like "10%" or a count of inodes like 50000, '
                         f"got {value!r}")
    return FreeLimit(amount=value)


_FULL_IN_WHY = "a month ahead is no forecast"


@check_section(for_="2m", recover_for="10m", unknown_as="warning")
class StorageConfig(CheckTiming):
    """[storage]: what to watch, the free-space limits, the forecast."""

    paths: Tuple[str, ...] = _f("strlist", ())
    drbd_mounts: bool = _f("bool", True)
    postgres_data: str = _f("str", "/var/hvmail/postgres/default/data")
    warning_free: FreeLimit = _f("custom", FreeLimit(percent=10.0), parse=parse_free_bytes)
    critical_free: FreeLimit = _f("custom", FreeLimit(percent=5.0), parse=parse_free_bytes)
    warning_free_inodes: FreeLimit = _f("custom", FreeLimit(percent=10.0),
                                        parse=parse_free_inodes)
    critical_free_inodes: FreeLimit = _f("custom", FreeLimit(percent=5.0),
                                         parse=parse_free_inodes)
    # Short values work (the demo forecasts over a minute) but are noisy on a real disk.
    forecast_window: float = _dur("2h", "1m", "7d", why_low="a window needs several samples",
                                  why_high="a week-old rate says nothing about today")
    forecast_min: float = _dur("20m", "1s", "7d", why_low="one sample is no rate")
    warning_full_in: float = _dur("12h", "0s", "30d", why_high=_FULL_IN_WHY)  # 0s: off
    critical_full_in: float = _dur("3h", "0s", "30d", why_high=_FULL_IN_WHY)
    timeout: float = _timeout("5s", "a hung mount would block the cycle that long")

    def problems(self) -> List[Tuple[str, str]]:
        """Values that cannot work together (the config loader reports them located)."""
        out = []
        relative = [p for p in self.paths if not p.startswith("/")]
        if relative:
            out.append(("paths", f"must be absolute paths (the daemon runs in /), got "
                        f"{', '.join(repr(p) for p in relative[:3])}"))
        if self.postgres_data and not self.postgres_data.startswith("/"):
            out.append(("postgres_data", "must be an absolute path, or \"\" to not watch it"))
        if self.forecast_min >= self.forecast_window:
            out.append(("forecast_min", "must be shorter than storage.forecast_window: the "
                        "samples never span it, so there would never be a forecast"))
        if 0 < self.warning_full_in < self.critical_full_in:
            out.append(("critical_full_in", "must not be longer than storage.warning_full_in "
                        '(set warning_full_in = "0s" to have no warning)'))
        return out


# ---------------------------------------------------------------- judging


def _pct(free: float, total: float) -> Optional[float]:
    return round(100.0 * free / total, 2) if total > 0 else None


def _forecast_text(what: str, fc: Forecast) -> str:
    per_hour = -(fc.rate or 0.0) * 3600.0
    rate = f"{format_bytes(per_hour)}/h" if what == "full" else f"{per_hour:.0f} inodes/h"
    return (f"{what} in ~{format_duration(fc.seconds or 0.0)} at the rate of the last "
            f"{format_duration(fc.span)} ({rate})")


def _judge(fs: FsReading, section: StorageConfig, at: float,
           relaxed: bool) -> Tuple[Status, List[str], Dict[str, Any]]:
    entry: Dict[str, Any] = {"path": fs.path, "sources": list(fs.sources)}
    if fs.device:
        entry["device"] = fs.device
    if fs.error is None and fs.usable_bytes <= 0:  # /proc, sysfs: no limit could fire
        fs = FsReading(fs.path, fs.sources, fs.device,
                       error=f"{fs.path} reports no space at all (not a disk: /proc, sysfs?)")
    if fs.error is not None:
        entry.update(status=Status.UNKNOWN.label, error=fs.error)
        return Status.UNKNOWN, [fs.error], entry
    entry.update(
        size_bytes=fs.size_bytes, free_bytes=fs.free_bytes,
        free_percent=_pct(fs.free_bytes, fs.usable_bytes),
        inodes=fs.inodes, free_inodes=fs.free_inodes,
        free_inodes_percent=_pct(fs.free_inodes, fs.inodes),
    )
    statuses: List[Status] = []
    reasons: List[str] = []
    free_text = (f"{format_bytes(fs.free_bytes)} free "
                 f"({entry['free_percent'] if entry['free_percent'] is not None else 0:g}%)")
    for level, limit in ((Status.CRITICAL, section.critical_free),
                         (Status.WARNING, section.warning_free)):
        if limit.reached(fs.free_bytes, fs.usable_bytes):
            statuses.append(level)
            reasons.append(f"{free_text}, at or below {limit.text('bytes')}")
            break
    if fs.inodes > 0:
        for level, limit in ((Status.CRITICAL, section.critical_free_inodes),
                             (Status.WARNING, section.warning_free_inodes)):
            if limit.reached(fs.free_inodes, fs.inodes):
                statuses.append(level)
                reasons.append(f"{fs.free_inodes} inodes free "
                               f"({entry['free_inodes_percent']:g}%), at or below "
                               f"{limit.text('inodes')}")
                break
    full_in = [(section.critical_full_in, Status.CRITICAL)]
    if not relaxed:
        full_in.append((section.warning_full_in, Status.WARNING))
    for what, key, values, free_now in (
            ("full", "", [(t, b) for t, b, _ in fs.history], fs.free_bytes),
            ("out of inodes", "inodes_", [(t, i) for t, _, i in fs.history], fs.free_inodes)):
        if key and fs.inodes <= 0:
            continue
        fc = time_to_full(values, at, float(free_now), section.forecast_window,
                          section.forecast_min)
        entry[f"{key}full_in_seconds"] = (round(fc.seconds, 1) if fc.seconds is not None
                                          else None)
        entry[f"{key}rate_per_second"] = round(fc.rate, 3) if fc.rate is not None else None
        if not key:
            entry["forecast"] = _forecast_text(what, fc) if fc.filling else fc.why
            entry["forecast_samples"] = fc.count
        if fc.seconds is None:
            continue
        for limit, level in full_in:
            if limit > 0 and fc.seconds <= limit:
                statuses.append(level)
                reasons.append(_forecast_text(what, fc))
                break
    status = worst(statuses)
    entry["status"] = status.label
    if reasons:
        entry["problems"] = reasons
    return status, reasons, entry


def check_storage(snap: StorageSnapshot, section: StorageConfig,
                  relaxed: bool = False) -> CheckResult:
    """The `storage` verdict over one probe snapshot (see the module docstring)."""
    judged = [_judge(fs, section, snap.at, relaxed) for fs in snap.filesystems]
    details: Dict[str, Any] = {"filesystems": [e for _, _, e in judged]}
    if snap.notes:
        details["notes"] = list(snap.notes)
    if snap.history_problem:
        details["history"] = snap.history_problem
    if relaxed:
        details["relaxed"] = True
    status = worst(s for s, _, _ in judged)
    if not judged:
        why = "; ".join(snap.notes) or "no filesystem configured"
        return CheckResult(STORAGE, Status.OK, f"nothing to watch on this node: {why}", details)
    if status == Status.OK:
        parts = [f"{e['path']} {format_bytes(e['free_bytes'])} free ({e['free_percent']:g}%)"
                 for _, _, e in judged if e.get("free_percent") is not None]
        return CheckResult(STORAGE, Status.OK, "; ".join(parts + list(snap.notes)), details)
    bad = sorted((j for j in judged if j[0] != Status.OK), key=lambda j: -j[0].rank)
    summary = "; ".join(f"{e['path']}: {', '.join(r)}" for _, r, e in bad)
    return CheckResult(STORAGE, status, summary, details)


# ---------------------------------------------------------------- metrics


def _per_fs(result: Optional[CheckResult], key: str,
            counted: bool = False) -> List[Tuple[Tuple[str, ...], float]]:
    """(path,), value of `key` for each filesystem entry with a finite value; `counted`:
    only filesystems that count inodes."""
    if result is None:
        return []
    out = []
    entries = result.details.get("filesystems")
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            continue
        if counted and not (number(entry.get("inodes")) or 0) > 0:
            continue
        value = number(entry.get(key))
        if value is not None:
            out.append(((entry["path"],), value))
    return out


def metric_families(result: Optional[CheckResult]) -> List[Family]:
    """Per watched filesystem (label `path`): size, free bytes, inodes, free inodes, and
    the forecast's seconds to full (absent when not filling or too little history)."""
    path = ("path",)
    return [
        gauge("storage_size_bytes", "Size of a watched filesystem.", path,
              _per_fs(result, "size_bytes")),
        gauge("storage_free_bytes", "Bytes an unprivileged process may still write "
              "(df's Avail).", path, _per_fs(result, "free_bytes")),
        gauge("storage_inodes", "Inodes of a watched filesystem (absent: not counted).", path,
              _per_fs(result, "inodes", counted=True)),
        gauge("storage_free_inodes", "Free inodes of a watched filesystem.", path,
              _per_fs(result, "free_inodes", counted=True)),
        gauge("storage_full_in_seconds", "Forecast seconds until the filesystem is full at "
              "the rate of the forecast window (absent: not filling).", path,
              _per_fs(result, "full_in_seconds")),
        gauge("storage_inodes_full_in_seconds", "Forecast seconds until the filesystem is out "
              "of inodes (absent: not filling).", path,
              _per_fs(result, "inodes_full_in_seconds")),
    ]


def perfdata(check: CheckResult) -> List[str]:
    """`--once --nagios` performance data: free bytes and free inodes of each watched
    filesystem (min 0, max its size)."""
    out = []
    for entry in check.details.get("filesystems") or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            continue
        if entry.get("error") is not None:
            continue
        path = entry["path"]
        out.append(perf(f"{path} free", num(entry.get("free_bytes")), "B", "", "", 0,
                        num(entry.get("size_bytes"))))
        inodes = num(entry.get("inodes"))
        if inodes:
            out.append(perf(f"{path} free inodes", num(entry.get("free_inodes")), "", "", "",
                            0, inodes))
    return out
