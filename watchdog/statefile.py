"""Atomic JSON state files, and the one bounded reader for every file the daemon reads.

Write to a temp file in the same directory, fsync it, rename over the target, fsync the
directory. A reader never sees a half-written file; a corrupt file (disk trouble, a human
edit) is moved aside and reported, never a crash.

Reading goes through `read_bounded()`: state files, the maintenance request, the config
and `url_file`s are opened without blocking (a FIFO in their place would otherwise hang the
process, deaf to SIGTERM), anything but a regular file is refused, and at most `limit`
bytes are read (`/dev/zero` or a runaway file cannot exhaust memory). JSON is parsed by
`parse_json()`, which refuses documents nested deeper than MAX_DEPTH (a deep one would
raise RecursionError far from here).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import threading
import time
from typing import Any, NamedTuple, Optional, Tuple

log = logging.getLogger(__name__)

# Caps for what is read: far above any real file of each kind, far below harm.
STATE_LIMIT = 16 * 1024 * 1024  # engine.json, outbox.json (outbox: many pending alerts)
REQUEST_LIMIT = 64 * 1024  # maintenance.json
MAX_DEPTH = 64  # JSON nesting: our own files use 5 levels or so


class Unreadable(OSError):
    """A file refused by `read_bounded` (not regular, too large, a symlink where none may be).

    An OSError, so callers' `except OSError` handlers report it; `strerror` says why.
    """


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_bounded(path: str, limit: int, follow_symlinks: bool = True) -> bytes:
    """The bytes of regular file `path`, at most `limit` of them.

    FileNotFoundError when absent; `Unreadable` (an OSError) when it is not a regular
    file, holds more than `limit` bytes, or is a symlink and `follow_symlinks` is False;
    other OSErrors (permission) as they come. Never blocks on a FIFO or a device.
    """
    return read_bounded_stat(path, limit, follow_symlinks)[0]


def read_bounded_stat(path: str, limit: int, follow_symlinks: bool = True) -> Tuple[bytes, Any]:
    """`read_bounded`, plus the os.stat_result of the very file read (owner, mode)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise Unreadable(errno.ELOOP, "is a symbolic link (refused)", path) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable(errno.EINVAL, f"is {_kind(st.st_mode)}, not a regular file", path)
        if st.st_size > limit:
            raise Unreadable(errno.EFBIG, _too_large(st.st_size, limit), path)
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while we read it
                raise Unreadable(errno.EFBIG, _too_large(total, limit), path)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def _too_large(size: int, limit: int) -> str:
    return f"is too large ({size} bytes or more; at most {limit} are read)"


def parse_json(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """JSON from UTF-8 bytes; ValueError (with the reason) for anything unusable,
    including nesting deeper than `max_depth`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested too deeply (more than {max_depth} levels)") from None
    if _depth_exceeds(value, max_depth):
        raise ValueError(f"nested too deeply (more than {max_depth} levels)")
    return value


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    """Iteratively (no recursion): is any container nested deeper than `max_depth`?"""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class Loaded(NamedTuple):
    """What `load_json` found: the data (None: none usable) and, when the file was there
    but unusable, what happened to it (for a log line and a notification)."""

    data: Any
    problem: Optional[str]


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


def load_json(path: str, clock=time.time, limit: int = STATE_LIMIT) -> Loaded:
    """The JSON state in `path`, read with `read_bounded` (no symlinks followed).

    Absent: (None, None). Unusable (corrupt, too deep, too large, a directory or a FIFO in
    its place, unreadable): moved aside as `<path>.corrupt-<time>` when possible, so the
    next write can succeed, logged at ERROR, and (None, what happened) returned.
    """
    try:
        raw = read_bounded(path, limit, follow_symlinks=False)
        return Loaded(parse_json(raw), None)
    except FileNotFoundError:
        return Loaded(None, None)
    except OSError as exc:
        why = exc.strerror or str(exc)
        movable = isinstance(exc, Unreadable)
    except ValueError as exc:
        why, movable = f"corrupt: {exc}", True
    return Loaded(None, move_aside(path, why, clock) if movable else f"{path}: {why}")


def move_aside(path: str, why: str, clock=time.time) -> str:
    """Rename an unusable state file out of the way (logged); the sentence saying so."""
    aside = f"{path}.corrupt-{int(clock())}"
    try:
        os.replace(path, aside)
        where = f"moved to {aside}"
    except OSError as exc:
        where = f"could not move it aside: {exc.strerror or exc}"
    problem = f"state file {path} {why}; {where}"
    log.error("%s", problem)
    return problem


def read_json(path: str, clock=time.time) -> Optional[Any]:
    """The JSON in `path`, None when absent or unusable (moved aside and logged)."""
    return load_json(path, clock).data
