"""9.5's WAL receiver, which has no view: found in /proc under the startup process,
every read bounded."""

from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

from watchdog.probes.postgres.model import ReceiverProcess, parse_lsn

# ---------------------------------------------------------------- /proc (9.5's WAL receiver

#: Bounds on what the /proc lookup reads: bytes per file, processes scanned.
PROC_READ_LIMIT = 4096
PROC_CHILDREN_LIMIT = 65536
PROC_SCAN_LIMIT = 100000
_TITLE_RE = re.compile(
    r"^postgres: (?:.*?: )?(?:wal receiver process|walreceiver)(?:\s+(\S+))?(?:\s+(\S+))?")


def _read_bounded(path: str, limit: int = PROC_READ_LIMIT) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(limit)


def _stat_fields(proc_root: str, pid: int) -> Tuple[str, int]:
    """(state letter, ppid) from /proc/PID/stat; the name in parentheses may hold anything."""
    text = _read_bounded(os.path.join(proc_root, str(pid), "stat")).decode("ascii", "replace")
    rest = text[text.rindex(")") + 1:].split()
    return rest[0], int(rest[1])


def _children(proc_root: str, parent: int) -> List[int]:
    """Child pids of `parent`: the kernel's children list, else a bounded scan of /proc."""
    path = os.path.join(proc_root, str(parent), "task", str(parent), "children")
    try:
        return [int(x) for x in _read_bounded(path, PROC_CHILDREN_LIMIT).split()]
    except (OSError, ValueError):
        pass
    found = []
    with os.scandir(proc_root) as entries:
        for count, entry in enumerate(entries):
            if count >= PROC_SCAN_LIMIT:
                break
            if not entry.name.isdigit():
                continue
            try:
                if _stat_fields(proc_root, int(entry.name))[1] == parent:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile, or not ours to read
    return found


def parse_receiver_title(title: str) -> Optional[Tuple[Optional[str], Optional[int]]]:
    """`postgres: wal receiver process   streaming 0/3000060` -> ("streaming", 0x3000060).

    None when the title is not a WAL receiver's. 9.5 says "wal receiver process", later
    versions "walreceiver" (ClusterLabs resource-agents #1551 dates it to 11); a
    cluster_name adds "NAME: " after "postgres: ".
    """
    match = _TITLE_RE.match(title.strip())
    if match is None:
        return None
    status, lsn_text = match.group(1), match.group(2)
    lsn = None
    if lsn_text and re.match(r"^[0-9A-Fa-f]+/[0-9A-Fa-f]+$", lsn_text):
        lsn = parse_lsn(lsn_text)
    return status, lsn


def find_receiver_process(backend_pid: int, proc_root: str = "/proc") -> ReceiverProcess:
    """The WAL receiver of the server whose backend `backend_pid` is, found by process title.

    Our own backend's parent is the postmaster; the WAL receiver is the postmaster's child
    whose title names it. Every read is bounded; nothing here raises.
    """
    try:
        postmaster = _stat_fields(proc_root, backend_pid)[1]
    except (OSError, ValueError, IndexError) as exc:
        return ReceiverProcess(
            found=False,
            error=f"cannot read the process table ({type(exc).__name__}: {exc}); the "
            "watchdog must run on the database's host with /proc readable")
    try:
        children = _children(proc_root, postmaster)
    except OSError as exc:
        return ReceiverProcess(found=False, error=f"cannot list processes: {exc}")
    for pid in children:
        try:
            raw = _read_bounded(os.path.join(proc_root, str(pid), "cmdline"))
        except OSError:
            continue
        title = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
        parsed = parse_receiver_title(title)
        if parsed is None:
            continue
        try:
            state: Optional[str] = _stat_fields(proc_root, pid)[0]
        except (OSError, ValueError, IndexError):
            state = None
        return ReceiverProcess(found=True, pid=pid, title=title, status=parsed[0],
                               lsn=parsed[1], state=state)
    return ReceiverProcess(found=False)
