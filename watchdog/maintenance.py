"""`ha-watchdog maintenance on|off|status`: the request file in the state directory.

Why a file and not a socket: the daemon already owns a private state directory (mode 0700,
root), so whoever may write there may silence it, and nothing listens on the network. The
CLI writes `maintenance.json` atomically; the daemon notices the change within a second,
runs a cycle and records the maintenance in its own state (`engine.json`), which is how the
CLI sees that the running daemon applied it. A damaged request file silences nothing: the
daemon logs why and goes on paging.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import sys
import time
import uuid
from typing import Any, Callable, Dict, Optional, Tuple

from watchdog.alerts.compose import held_lines_json
from watchdog.alerts.message import format_time
from watchdog.config import Config
from watchdog.core import maintenance as core
from watchdog.core.maintenance import Maintenance
from watchdog.statefile import (
    REQUEST_LIMIT,
    STATE_LIMIT,
    parse_json,
    read_bounded_stat,
    write_json,
)
from watchdog.units import format_duration, parse_duration

REQUEST_FILE = "maintenance.json"
ENGINE_STATE = "engine.json"  # the daemon's state (watchdog.daemon writes it every cycle)

# How far a request's `started` may lie ahead of this node's clock (it is written on this
# node, so only a clock step or a forged file puts it further).
MAX_SKEW = 300.0

EXIT_OK = 0
EXIT_NOT_APPLIED = 1  # recorded, but no running daemon confirmed it (yet)
EXIT_REFUSED = 3


def request_path(state_dir: str) -> str:
    return os.path.join(state_dir, REQUEST_FILE)


def read_request(
    state_dir: str, max_duration: float, now: Optional[float] = None,
    euid: Optional[int] = None,
) -> Tuple[Optional[Maintenance], Optional[str]]:
    """(the request, None), (None, None) when there is none, or (None, why it is unusable).

    Trusted only when it is a regular file (not a symlink, a FIFO, ...), owned by root or
    by the daemon's user (`euid`, default ours), writable by nobody else, and `started`
    is not in the future beyond MAX_SKEW. Anything else is refused with the reason: a
    request file can only ever silence pages when the daemon's own kind wrote it.
    """
    path = request_path(state_dir)
    now = time.time() if now is None else now
    euid = os.geteuid() if euid is None else euid
    try:
        raw, st = read_bounded_stat(path, REQUEST_LIMIT, follow_symlinks=False)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}; no maintenance applied"
    if st.st_uid not in (0, euid):
        return None, (f"{path} ignored: owned by uid {st.st_uid}, not by root or the daemon's "
                      f"user (uid {euid}); no maintenance applied")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None, (f"{path} ignored: writable by group or others (mode "
                      f"{stat.S_IMODE(st.st_mode):04o}); no maintenance applied")
    try:
        request = core.from_json(parse_json(raw), max_duration)
    except (ValueError, TypeError) as exc:
        return None, f"{path} is not a valid maintenance request ({exc}); no maintenance applied"
    if request.started > now + MAX_SKEW:
        return None, (f"{path} ignored: it starts in the future ({format_time(request.started)}, "
                      f"more than {format_duration(MAX_SKEW)} ahead of this clock); "
                      "no maintenance applied")
    return request, None


def write_request(state_dir: str, request: Maintenance) -> None:
    """Atomically (a crash leaves the old or the new request), mode 0600."""
    write_json(request_path(state_dir), request.to_json())


def who(environ: Optional[Dict[str, str]] = None, uid: Optional[int] = None) -> str:
    """The person asking: `alice`, or `alice (as root)` through sudo."""
    environ = dict(os.environ if environ is None else environ)
    uid = os.getuid() if uid is None else uid
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    sudo = environ.get("SUDO_USER")
    if sudo and sudo != user:
        return f"{sudo} (as {user})"
    return user


class RequestWatcher:
    """Has the request file changed since the last look? (One stat; cheap every second.)"""

    def __init__(self, path: str):
        self.path = path
        self._seen = self._identity()

    def _identity(self) -> Optional[Tuple[int, int, int]]:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def changed(self) -> bool:
        now = self._identity()
        if now == self._seen:
            return False
        self._seen = now
        return True


# ---------------------------------------------------------------- what the daemon applied


def daemon_view(state_dir: str) -> Tuple[Optional[Dict[str, Any]], Optional[float]]:
    """(the maintenance record the daemon keeps, the mtime of its state file) or Nones."""
    path = os.path.join(state_dir, ENGINE_STATE)
    try:
        raw, st = read_bounded_stat(path, STATE_LIMIT, follow_symlinks=False)
        data = parse_json(raw)
    except (OSError, ValueError):
        return None, None
    mtime = st.st_mtime
    record = data.get("maintenance") if isinstance(data, dict) else None
    if not isinstance(record, dict):
        return None, mtime
    # The engine keeps held events as events; people and --json read them in words.
    return dict(record, events=held_lines_json(record.get("events"))), mtime


def _applied(state_dir: str, request: Maintenance, now: float) -> bool:
    record, _ = daemon_view(state_dir)
    if request.active(now):
        return (
            record is not None
            and record.get("id") == request.id
            and record.get("until") == request.until
        )
    return record is None or record.get("id") != request.id


def _daemon_stale(state_dir: str, cfg: Config, now: float) -> Optional[str]:
    """Why the daemon seems not to run (its state file is not being written), or None."""
    _, mtime = daemon_view(state_dir)
    if mtime is None:
        return f"no daemon state in {state_dir} (has the daemon ever run with this config?)"
    age = now - mtime
    if age > 2 * cfg.daemon.interval + 30:
        return f"the daemon's last cycle was {format_duration(age)} ago: is it running?"
    return None


def _wait_applied(state_dir: str, request: Maintenance, cfg: Config, wait: float,
                  clock: Callable[[], float], sleep: Callable[[float], None]) -> Optional[str]:
    """None once the daemon applied `request`; else why not."""
    deadline = clock() + wait
    while True:
        stale = _daemon_stale(state_dir, cfg, clock())
        if stale:
            return stale
        if _applied(state_dir, request, clock()):
            return None
        if clock() >= deadline:
            return f"the daemon did not confirm it within {format_duration(wait)}"
        sleep(0.2)


# ---------------------------------------------------------------- the commands


def _say(text: str) -> None:
    print(text, flush=True)


def _describe(m: Maintenance, now: float) -> str:
    left = format_duration(max(0.0, m.until - now))
    capped = " (capped by [maintenance] max_duration)" if m.until < m.requested_until else ""
    return (
        f"until {format_time(m.until)} ({left} left){capped}, asked by {m.by} "
        f"at {format_time(m.started)}: {m.reason}"
    )


def _finish(state_dir: str, request: Maintenance, cfg: Config, wait: float, done: str,
            clock: Callable[[], float], sleep: Callable[[float], None]) -> int:
    if wait <= 0:
        _say(f"{done}; not waiting for the daemon (--wait 0)")
        return EXIT_OK
    problem = _wait_applied(state_dir, request, cfg, wait, clock, sleep)
    if problem is None:
        _say(f"{done}; the running daemon applied it")
        return EXIT_OK
    _say(f"{done}; NOT confirmed by a running daemon: {problem}")
    _say("The request stays in effect: the daemon applies it at its next cycle or start.")
    return EXIT_NOT_APPLIED


def _written(state_dir: str, request: Maintenance, command: str) -> bool:
    try:
        write_request(state_dir, request)
    except OSError as exc:
        print(f"maintenance {command}: cannot write {request_path(state_dir)}: "
              f"{exc.strerror or exc} (run it as the daemon's user, root)", file=sys.stderr)
        return False
    return True


def command_on(cfg: Config, duration_text: Optional[str], reason: str, wait: float,
               clock: Callable[[], float] = time.time,
               sleep: Callable[[float], None] = time.sleep, by: Optional[str] = None) -> int:
    """`maintenance on --for D --reason R`: refuse without a duration or over the cap."""
    state_dir = cfg.daemon.state_dir
    cap = cfg.maintenance.max_duration
    if not duration_text:
        print("maintenance on: --for is required (e.g. --for 2h); maintenance always ends "
              f"on its own, at most [maintenance] max_duration ({format_duration(cap)}) later",
              file=sys.stderr)
        return EXIT_REFUSED
    if not reason.strip():
        print("maintenance on: --reason must say why (it goes into the notification)",
              file=sys.stderr)
        return EXIT_REFUSED
    try:
        duration = parse_duration(duration_text)
    except ValueError as exc:
        print(f"maintenance on: --for: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    now = clock()
    asker = by or who()
    current, _ = read_request(state_dir, cap, now)
    try:
        if current is not None and current.active(now):
            request = core.extend(current, reason, asker, now, duration, cap)
        else:
            request = core.request(uuid.uuid4().hex[:12], reason, asker, now, duration, cap)
    except ValueError as exc:
        print(f"maintenance on: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if not _written(state_dir, request, "on"):
        return EXIT_REFUSED
    verb = "extended" if current is not None and current.id == request.id else "on"
    return _finish(state_dir, request, cfg, wait,
                   f"maintenance {verb} {_describe(request, now)}", clock, sleep)


def command_off(cfg: Config, wait: float, clock: Callable[[], float] = time.time,
                sleep: Callable[[float], None] = time.sleep, by: Optional[str] = None) -> int:
    state_dir = cfg.daemon.state_dir
    now = clock()
    current, error = read_request(state_dir, cfg.maintenance.max_duration, now)
    if error is not None and current is None and os.path.exists(request_path(state_dir)):
        print(f"maintenance off: {error}", file=sys.stderr)
        return EXIT_REFUSED
    if current is None or not current.active(now):
        _say("maintenance is not on; nothing to do")
        return EXIT_OK
    request = core.turned_off(current, by or who(), now)
    if not _written(state_dir, request, "off"):
        return EXIT_REFUSED
    return _finish(state_dir, request, cfg, wait,
                   f"maintenance off (it was asked by {current.by}: {current.reason})",
                   clock, sleep)


def status(cfg: Config, now: float) -> Dict[str, Any]:
    """The request and what the daemon made of it, as one JSON-able dict."""
    state_dir = cfg.daemon.state_dir
    request, error = read_request(state_dir, cfg.maintenance.max_duration, now)
    record, mtime = daemon_view(state_dir)
    out: Dict[str, Any] = {"active": bool(request and request.active(now))}
    if error:
        out["error"] = error
    if request is not None:
        out.update(
            id=request.id, reason=request.reason, by=request.by, started=request.started,
            until=request.until, ended=request.ended, ended_by=request.ended_by,
        )
    applied = record is not None and request is not None and record.get("id") == request.id
    out["applied"] = applied
    if applied and record is not None:
        events = record.get("events") if isinstance(record.get("events"), list) else []
        out["events"] = [e for e in events if isinstance(e, dict)]
    out["daemon_last_cycle"] = mtime
    return out


def command_status(cfg: Config, as_json: bool, clock: Callable[[], float] = time.time) -> int:
    now = clock()
    info = status(cfg, now)
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return EXIT_OK
    if info.get("error"):
        _say(f"maintenance: {info['error']}")
    request, _ = read_request(cfg.daemon.state_dir, cfg.maintenance.max_duration, now)
    if request is None or not info["active"]:
        _say("maintenance: off")
        if request is not None:
            _say(f"last: asked by {request.by} ({request.reason}), "
                 f"{request.how_it_ended(now)} at {format_time(request.end_time())}")
        return EXIT_OK
    _say(f"maintenance: ON {_describe(request, now)}")
    stale = _daemon_stale(cfg.daemon.state_dir, cfg, now)
    if stale:
        _say(f"daemon: {stale}")
    elif not info["applied"]:
        _say("daemon: has not applied it yet")
    else:
        events = info.get("events", [])
        _say(f"daemon: applied; {len(events)} notification(s) during it so far")
        for event in events:
            mark = "sent" if event.get("sent") else "held back"
            _say(f"- {format_time(event.get('at'))}: {event.get('line', '')} [{mark}]")
    return EXIT_OK
