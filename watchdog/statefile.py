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
import tempfile
import time
from typing import Any, Optional

log = logging.getLogger(__name__)


def write_json(path: str, data: Any) -> None:
    """Atomically replace `path` with `data` as JSON (mode 0600: it may name targets)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
