"""The nightly backup's log: its last bytes, size and modification time (all I/O here).

Why only the tail: a backup log can be appended to for years (or be a sparse or runaway
file); the newest run's outcome is in its last lines. At most `tail_bytes` are read, from
the end, whatever the file's size. The file is opened without blocking and must be a
regular file: a FIFO or a device in its place is reported, never read (a FIFO would block
the probe until a writer came). Nothing here raises for an expected failure: a missing,
unreadable or odd file is a snapshot saying why (`error`), for the `backup_log` check.

The runner runs this in a thread with a deadline (a hung NFS mount cannot block a cycle).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass, replace
from typing import Callable, Optional

from watchdog.statefile import _kind

#: GreenArrow's backup script writes its log here (its "Restoring Backups" page: the
#: backup directory is /var/backup by default).
DEFAULT_PATH = "/var/backup/greenarrow-backup.log"
#: How much of the log's end is read: far more than a run's last lines, far below harm.
TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class BackupLogSnapshot:
    """What the probe saw of the log at `taken_at` (epoch seconds).

    exists: the path names something (False: not there at all). error: why it could not be
    read (None: read). tail: the last bytes read, decoded (invalid UTF-8 replaced); `cut`
    when the tail starts inside the file (its first line may be partial). mtime: when the
    log was last written (epoch). nul_bytes: the tail holds NUL bytes (a file cut short by
    a crash on XFS/ext4 often ends in zeros; a binary file is not a log).
    """

    path: str
    configured: bool
    taken_at: float
    exists: bool = False
    error: Optional[str] = None
    size: Optional[int] = None
    mtime: Optional[float] = None
    tail: str = ""
    cut: bool = False
    nul_bytes: bool = False


def read_tail(fd: int, size: int, limit: int) -> bytes:
    """At most `limit` bytes from the end of the open file (fewer if it shrank meanwhile)."""
    start = max(0, size - limit)
    os.lseek(fd, start, os.SEEK_SET)
    chunks = []
    total = 0
    while total < limit:
        chunk = os.read(fd, min(1 << 16, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def probe_backup_log(path: str, configured: bool, clock: Callable[[], float] = time.time,
                     tail_bytes: int = TAIL_BYTES) -> BackupLogSnapshot:
    """Read the log's tail. Never raises for a missing, odd or unreadable file."""
    taken_at = clock()
    snap = BackupLogSnapshot(path=path, configured=configured, taken_at=taken_at)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return snap
    except OSError as exc:
        exists = exc.errno != errno.ENOTDIR
        return _replace(snap, exists=exists, error=_reason(exc))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return _replace(snap, exists=True, mtime=st.st_mtime,
                            error=f"is {_kind(st.st_mode)}, not a regular file")
        raw = read_tail(fd, st.st_size, tail_bytes)
    except OSError as exc:
        return _replace(snap, exists=True, error=_reason(exc))
    finally:
        os.close(fd)
    cut = st.st_size > tail_bytes  # the read began inside the file
    return _replace(snap, exists=True, size=st.st_size, mtime=st.st_mtime,
                    tail=raw.decode("utf-8", errors="replace"), cut=cut,
                    nul_bytes=b"\x00" in raw)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _replace(snap: BackupLogSnapshot, **changes: object) -> BackupLogSnapshot:
    return replace(snap, **changes)  # type: ignore[arg-type]
