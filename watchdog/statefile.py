"""Atomic JSON state files: what must survive a SIGKILL survives it whole or not at all.

Write to a temp file in the same directory, fsync it, rename over the target, fsync the
directory. A reader never sees a half-written file; a corrupt file (disk trouble, a human
edit) is moved aside and reported, never a crash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import Any, Optional

log = logging.getLogger(__name__)


def write_atomic(path: str, data: bytes, mode: int = 0o600, make_dirs: bool = True) -> None:
    """Write `data` to `path` so that a crash leaves either the old or the new content.

    Temp file in the same directory, fsync, rename over the target, fsync the directory
    (without the last step the rename itself may be lost on power failure). The file gets
    exactly `mode`, whatever the umask (the unit's is 0077). The temp file's name does not
    end like `path` (node_exporter reads only *.prom) and is removed on failure.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f"{temp_prefix(path)}{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}.tmp-"


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_json(path: str, data: Any) -> None:
    """Atomically replace `path` with `data` as JSON (mode 0600: it may name targets)."""
    write_atomic(path, json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def read_json(path: str, clock=time.time) -> Optional[Any]:
    """The JSON in `path`, None when absent; a corrupt file is moved aside (logged)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        aside = f"{path}.corrupt-{int(clock())}"
        try:
            os.replace(path, aside)
        except OSError:
            aside = "(could not move it aside)"
        log.error("state file %s is corrupt (%s); moved to %s, starting fresh", path, exc, aside)
        return None
