"""Free bytes and inodes of the watched filesystems, and the samples their forecast needs.

All the I/O of the `storage` check: which paths to watch (the mount points of the DRBD
devices this node has mounted, from /proc/mounts; PostgreSQL's data directory and its WAL
directory when that is another filesystem; the configured paths), one statvfs each, and the
sample history kept in `<state_dir>/storage-history.json` so a forecast survives a restart.

Why each stat runs in a thread of its own with a deadline: a hung mount (NFS, a dying disk)
blocks statvfs in the kernel; the other filesystems are still read and the hung one is
reported with its reason. Why the history is kept in memory first and written after: a
full disk (the very thing this check is about) can make the write fail; the samples live on
in memory, and the failure is reported in the snapshot, never raised. A damaged history
file is moved aside (watchdog.statefile.load_json) and the samples start over, said so.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from watchdog.statefile import load_json, move_aside, read_bounded, write_json

MOUNTS = "/proc/mounts"
HISTORY_FILE = "storage-history.json"
MOUNTS_LIMIT = 1024 * 1024  # /proc/mounts of a busy container host is tens of KiB
HISTORY_LIMIT = 4 * 1024 * 1024
MAX_SAMPLES = 480  # per filesystem: the window is thinned to this many
MAX_FILESYSTEMS = 64  # kept in the history file; more watched paths are read, not kept
HISTORY_VERSION = 1

# What put a path on the watch list (public: the `source` of a filesystem in the details).
SRC_DRBD = "DRBD mount"
SRC_PGDATA = "PostgreSQL data"
SRC_PGWAL = "PostgreSQL WAL"
SRC_CONFIG = "[storage] paths"

Sample = Tuple[float, int, int]  # (Unix time, free bytes, free inodes)

_DRBD_DEVICE = re.compile(r"^/dev/drbd(?:[0-9]+|/by-res/\S+|/by-disk/\S+)$")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class FsReading:
    """One watched filesystem this cycle.

    `path` is the watched path (a mount point, a directory on one); `sources` why it is
    watched (several when two watched paths share the filesystem: it is read once).
    `free_bytes` is what an unprivileged process may still write (df's Avail; PostgreSQL
    and qmail do not run as root), `usable_bytes` used + available (df's Use% is
    1 - free/usable). `inodes` 0: the filesystem does not count inodes (btrfs).
    `error`: why it could not be read (then the numbers are 0). `history`: the kept samples
    of this path, oldest first, this cycle's last.
    """

    path: str
    sources: Tuple[str, ...]
    device: str = ""
    size_bytes: int = 0
    usable_bytes: int = 0
    free_bytes: int = 0
    inodes: int = 0
    free_inodes: int = 0
    error: Optional[str] = None
    history: Tuple[Sample, ...] = ()


@dataclass(frozen=True)
class StorageSnapshot:
    """The watched filesystems at `at` (Unix time), plus what is worth saying about how
    they were found (`notes`, e.g. no DRBD device mounted on a secondary) and about the
    sample history (`history_problem`: damaged file, failed write; None when fine)."""

    at: float
    filesystems: Tuple[FsReading, ...] = ()
    notes: Tuple[str, ...] = ()
    history_problem: Optional[str] = None


@dataclass(frozen=True)
class Target:
    """A path to read and why."""

    path: str
    source: str
    device: str = ""
    error: Optional[str] = None  # known unreadable before any stat (the mounts file)


# ---------------------------------------------------------------- what to watch


def _unescape(field_text: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash in paths as \\040 etc."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field_text)


def parse_mounts(text: str) -> List[Tuple[str, str, str]]:
    """(device, mount point, fstype) of each well-formed line of /proc/mounts."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            out.append((_unescape(parts[0]), _unescape(parts[1]), parts[2]))
    return out


def drbd_mounts(text: str) -> List[Tuple[str, str]]:
    """(device, mount point) of every mounted DRBD device, in /proc/mounts order."""
    return [(dev, mnt) for dev, mnt, _ in parse_mounts(text) if _DRBD_DEVICE.match(dev)]


def targets(section: Any, mounts_file: str = MOUNTS) -> Tuple[List[Target], List[str]]:
    """The paths to read and the notes on how they were found. Never raises."""
    found: List[Target] = []
    notes: List[str] = []
    if section.drbd_mounts:
        try:
            text = read_bounded(mounts_file, MOUNTS_LIMIT).decode("utf-8", "replace")
        except OSError as exc:
            # No list of mounts: the DRBD mount points are unknown, which is a problem
            # (shown like an unreadable filesystem), not a note.
            found.append(Target(mounts_file, SRC_DRBD, error=(
                f"cannot read {mounts_file}: {exc.strerror or exc}; "
                "the DRBD mount points are unknown")))
        else:
            drbd = drbd_mounts(text)
            found.extend(Target(mnt, SRC_DRBD, dev) for dev, mnt in drbd)
            if not drbd:
                notes.append("no DRBD device mounted here (normal on the secondary)")
    data = section.postgres_data
    if data:
        # Its stats run in a thread with the deadline too: the data directory may sit on
        # the hung mount.
        value, error = _read_all([data], section.timeout, _postgres_targets)[data]
        if error is not None or value is None:
            found.append(Target(data, SRC_PGDATA, error=f"cannot read {data}: {error}"))
        else:
            found.extend(value[0])
            notes.extend(value[1])
    found.extend(Target(path, SRC_CONFIG) for path in section.paths)
    return found, notes


def _postgres_targets(data: str) -> Tuple[List[Target], List[str]]:
    """The data directory and, when on another filesystem, its pg_wal/pg_xlog."""
    try:
        os.lstat(data)
    except FileNotFoundError:
        return [], [f"no PostgreSQL data directory at {data} (postgres_data) on this node"]
    except OSError:
        return [Target(data, SRC_PGDATA)], []  # its reading says why it cannot be read
    found = [Target(data, SRC_PGDATA)]
    for name in ("pg_wal", "pg_xlog"):  # 10+ / 9.x
        wal = os.path.join(data, name)
        other, why = _other_filesystem(wal, data)
        if other:
            found.append(Target(wal, SRC_PGWAL))
        elif why:
            return found, [f"cannot look in {data} for pg_wal/pg_xlog ({why}); run as root "
                           "(or PostgreSQL's user) to watch the WAL's filesystem"]
    return found, []


def _other_filesystem(path: str, than: str) -> Tuple[bool, str]:
    """Is `path` (pg_wal, often a symlink to another disk) on another filesystem than
    `than`? (False, "") when it does not exist (pg_wal before 10, pg_xlog since), (False,
    why) when it cannot be looked at (the data directory is 0700: not as another user)."""
    try:
        return os.stat(path).st_dev != os.stat(than).st_dev, ""
    except FileNotFoundError:
        return False, ""
    except OSError as exc:
        return False, exc.strerror or str(exc)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Stat:
    dev: int
    size: int
    usable: int
    free: int
    inodes: int
    free_inodes: int


def read_fs(path: str) -> _Stat:
    """statvfs (and stat for the device id, to read a shared filesystem once)."""
    st = os.stat(path)
    vfs = os.statvfs(path)
    frsize = vfs.f_frsize or vfs.f_bsize
    used = max(vfs.f_blocks - vfs.f_bfree, 0)
    return _Stat(st.st_dev, vfs.f_blocks * frsize, (used + vfs.f_bavail) * frsize,
                 vfs.f_bavail * frsize, vfs.f_files, vfs.f_ffree)


def _read_all(paths: Sequence[str], timeout: float,
              read: Callable[[str], Any]) -> Dict[str, Tuple[Optional[Any], Optional[str]]]:
    """Read every path in a thread of its own; whatever has not answered by `timeout`
    (from the start, for all of them together) is reported as hung."""
    box: Dict[str, Tuple[Optional[Any], Optional[str]]] = {}
    lock = threading.Lock()

    def work(path: str) -> None:
        try:
            value: Tuple[Optional[Any], Optional[str]] = (read(path), None)
        except OSError as exc:
            value = (None, exc.strerror or str(exc))
        except Exception as exc:  # noqa: BLE001 - a result with its reason, never a raise
            value = (None, f"{type(exc).__name__}: {exc}")
        with lock:
            box[path] = value

    threads = []
    for path in dict.fromkeys(paths):
        thread = threading.Thread(target=work, args=(path,), daemon=True)
        thread.start()
        threads.append(thread)
    end = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    with lock:
        out = dict(box)
    for path in paths:
        out.setdefault(path, (None, f"no answer within {timeout:g}s (a hung mount?)"))
    return out


# ---------------------------------------------------------------- history


class History:
    """The samples of each watched path: in memory, and in a JSON file when there is one.

    The file is read once (the first `update`: after a restart); from then on memory is
    the truth and the file its copy, rewritten each update. A damaged file is moved aside
    and the samples start over; a failed write keeps the samples in memory. Both are
    returned as the problem of that update, for the check's details.
    """

    def __init__(self, path: Optional[str], clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._data: Optional[Dict[str, Dict[str, Any]]] = None
        self._dirty = False  # memory holds samples the file does not (yet)
        # A probe left behind by its deadline (a hung write) must not update the samples
        # at the same time as the next cycle's.
        self._lock = threading.Lock()

    def _load(self) -> Optional[str]:
        self._data = {}
        if self.path is None:
            return None
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            return (f"samples are not kept across restarts: the state directory {directory} "
                    "does not exist")
        loaded = load_json(self.path, self._clock, HISTORY_LIMIT)
        if loaded.problem is not None:
            return f"{loaded.problem}; the forecast's samples start over"
        if loaded.data is None:
            return None
        data, why = _parse_history(loaded.data)
        if why is not None:  # kept aside for a look, like a file that is not JSON at all
            return f"{move_aside(self.path, why, self._clock)}; the forecast's samples start over"
        self._data = data
        return None

    def update(self, readings: Sequence[Tuple[str, int, int, int]], now: float,
               keep: float) -> Tuple[Dict[str, Tuple[Sample, ...]], Optional[str]]:
        """Add this cycle's (path, size, free bytes, free inodes) readings taken at `now`;
        keep `keep` seconds of samples. Returns the samples of each path read and the
        problem."""
        with self._lock:
            return self._update(readings, now, keep)

    def _update(self, readings: Sequence[Tuple[str, int, int, int]], now: float,
                keep: float) -> Tuple[Dict[str, Tuple[Sample, ...]], Optional[str]]:
        problems = []
        if self._data is None:
            problem = self._load()
            if problem:
                problems.append(problem)
        data = self._data if self._data is not None else {}
        spacing = keep / MAX_SAMPLES
        for path, size, free, free_inodes in readings:
            entry = data.get(path)
            if entry is None or entry.get("size") != size:
                entry = {"size": size, "samples": []}  # new, or another filesystem now
                self._dirty = True
            samples = entry["samples"]
            if samples and (samples[0][0] < now - keep or samples[-1][0] > now):
                samples = [s for s in samples if now - keep <= s[0] <= now]
            if not samples or now - samples[-1][0] >= spacing:
                samples.append([now, free, free_inodes])
                self._dirty = True
            else:  # too soon for a new sample: the newest reading replaces the last one
                samples[-1] = [samples[-1][0], free, free_inodes]
            entry["samples"] = samples[-MAX_SAMPLES:]
            entry["seen"] = now
            data[path] = entry
        # Paths not watched for longer than the window are forgotten; at most MAX_FILESYSTEMS.
        for path in [p for p, e in data.items() if now - e.get("seen", 0) > keep]:
            del data[path]
            self._dirty = True
        if len(data) > MAX_FILESYSTEMS:
            newest = sorted(data, key=lambda p: data[p].get("seen", 0), reverse=True)
            for path in newest[MAX_FILESYSTEMS:]:
                del data[path]
        self._data = data
        # Written when a sample was added (at most every window / MAX_SAMPLES, 15 s by
        # default), not every cycle: a reading that only replaces the newest sample is kept
        # in memory. A failed write is tried again at the next update.
        if (self._dirty and self.path is not None
                and os.path.isdir(os.path.dirname(self.path) or ".")):
            try:
                write_json(self.path, {"version": HISTORY_VERSION, "filesystems": data})
                self._dirty = False
            except OSError as exc:
                problems.append(f"could not save the forecast's samples to {self.path}: "
                                f"{exc.strerror or exc} (kept in memory until a restart)")
        out = {p: tuple((float(t), int(b), int(i)) for t, b, i in data[p]["samples"])
               for p, _, _, _ in readings if p in data}
        return out, "; ".join(problems) or None


def _finite(value: Any) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value))


def _parse_history(raw: Any) -> Tuple[Dict[str, Dict[str, Any]], Optional[str]]:
    """The history document checked item by item: ({}, why) for anything unexpected."""
    if not isinstance(raw, dict) or raw.get("version") != HISTORY_VERSION:
        return {}, "has an unknown format (not version 1)"
    filesystems = raw.get("filesystems")
    if not isinstance(filesystems, dict):
        return {}, "has no 'filesystems' table"
    out: Dict[str, Dict[str, Any]] = {}
    for path, entry in list(filesystems.items())[:MAX_FILESYSTEMS]:
        if not isinstance(entry, dict) or not _finite(entry.get("size")):
            return {}, f"has a damaged entry for {path[:80]!r}"
        samples = entry.get("samples")
        if not isinstance(samples, list) or not all(
                isinstance(s, list) and len(s) == 3 and all(_finite(x) for x in s)
                for s in samples):
            return {}, f"has damaged samples for {path[:80]!r}"
        seen = entry.get("seen", samples[-1][0] if samples else 0)
        out[path] = {"size": entry["size"], "samples": samples[-MAX_SAMPLES:],
                     "seen": seen if _finite(seen) else 0}
    return out, None


# One History per file for the life of the process (the daemon's memory across cycles).
_STORES: Dict[str, History] = {}
_STORES_LOCK = threading.Lock()


def history_for(state_dir: str) -> History:
    path = os.path.join(state_dir, HISTORY_FILE)
    with _STORES_LOCK:
        store = _STORES.get(path)
        if store is None:
            store = _STORES[path] = History(path)
        return store


# ---------------------------------------------------------------- the probe


def probe_storage(section: Any, state_dir: Optional[str], *, mounts_file: str = MOUNTS,
                  clock: Callable[[], float] = time.time,
                  history: Optional[History] = None,
                  read: Callable[[str], Any] = read_fs) -> StorageSnapshot:
    """Read every watched filesystem once and add the readings to the history.

    `section` is the [storage] config (paths, drbd_mounts, postgres_data, timeout,
    forecast_window). `state_dir` None keeps no history file (memory only). Never raises
    for an unreadable path, mounts file or history file: each is data with its reason.
    """
    if history is None:
        history = history_for(state_dir) if state_dir else History(None, clock)
    found, notes = targets(section, mounts_file)
    results = _read_all([t.path for t in found if t.error is None], section.timeout, read)
    now = clock()
    readings: List[FsReading] = []
    by_dev: Dict[int, int] = {}  # st_dev -> index in readings: one filesystem read once
    for target in found:
        if target.error is not None:
            readings.append(FsReading(target.path, (target.source,), error=target.error))
            continue
        value, error = results[target.path]
        if error is not None or value is None:
            readings.append(FsReading(target.path, (target.source,), target.device,
                                      error=f"cannot read {target.path}: {error}"))
            continue
        index = by_dev.get(value.dev)
        if index is not None:
            first = readings[index]
            if target.source not in first.sources:
                readings[index] = _with_source(first, target.source)
            continue
        by_dev[value.dev] = len(readings)
        readings.append(FsReading(target.path, (target.source,), target.device, value.size,
                                  value.usable, value.free, value.inodes, value.free_inodes))
    kept, problem = history.update(
        [(r.path, r.size_bytes, r.free_bytes, r.free_inodes) for r in readings
         if r.error is None], now, section.forecast_window)
    readings = [_with_history(r, kept.get(r.path, ())) for r in readings]
    return StorageSnapshot(now, tuple(readings), tuple(notes), problem)


def _with_source(reading: FsReading, source: str) -> FsReading:
    return replace(reading, sources=reading.sources + (source,))


def _with_history(reading: FsReading, samples: Tuple[Sample, ...]) -> FsReading:
    return replace(reading, history=samples) if reading.error is None else reading


__all__ = [
    "FsReading", "History", "StorageSnapshot", "Target", "drbd_mounts", "parse_mounts",
    "probe_storage", "targets",
]
