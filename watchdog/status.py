"""`ha-watchdog status [--json]`: what the running daemon thinks, read from its state dir.

Why: `--once` shows what the checks see right now; a person on call also needs what the
daemon made of it: the confirmed state of each check and since when, the open incidents,
the maintenance, what waits in the outbox (and what each waiting alert says), the last
alerts it sent, and whether it is still cycling.

Strictly read-only: it opens the daemon's files for reading and nothing else (no lock,
no temp-file cleanup, no moving a damaged file aside: the daemon does that), so it is
safe next to a running daemon and works for any user who can read the state directory.
The daemon publishes `status.json` after every cycle (write_cycle below) and `sent.json`
after every delivery, both mode 0640: a monitoring group can read them (setgid state
directory, see the README) while the engine state and the outbox stay 0600. As root the
command reads those live; as a reader it shows the copy in status.json (as of the last
cycle) and says so.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from watchdog.config import Config

STATUS_FILE = "status.json"
ENGINE_FILE = "engine.json"
OUTBOX_FILE = "outbox.json"
SENT_FILE = "sent.json"
FORMAT_VERSION = 1
MAX_READ = 8 * 1024 * 1024
# The daemon counts as stale after this many intervals without a cycle.
STALE_INTERVALS = 3

EXIT_OK = 0
EXIT_STALE = 1  # readable, but the daemon has not completed a cycle lately (or never)
EXIT_UNREADABLE = 3


# ---------------------------------------------------------------- the daemon side


PUBLIC_MODE = 0o640  # status.json and sent.json: readable by the state dir's group


def write_cycle(state_dir: str, data: Dict[str, Any]) -> None:
    """Replace `status.json` atomically (called by the daemon after each cycle)."""
    from watchdog.statefile import write_atomic

    payload = json.dumps({"version": FORMAT_VERSION, **data}, sort_keys=True,
                         separators=(",", ":"), default=str)
    write_atomic(os.path.join(state_dir, STATUS_FILE), payload.encode("utf-8"), PUBLIC_MODE)


def cycle_view(node: str, report: Any, number: int, ended: float, duration: float,
               interval: float, targets: Optional[Dict[str, Any]] = None,
               engine: Any = None,
               outbox: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What status.json holds: the last cycle (summaries, not the full details: those are
    in `--once --json` and the metrics), the delivery state per target, and the daemon's
    view of checks, incidents and outbox (for readers who cannot read the 0600 files)."""
    raw = [{"name": c.name, "status": c.status.label, "summary": c.summary}
           for c in report.checks]
    checks, incidents, role_since = _engine_view(engine, raw)
    return {
        "node": node,
        "pid": os.getpid(),
        "role": report.role.value,
        "role_since": role_since,
        "status": report.status.label,
        "checks": raw,
        "confirmed": checks,
        "incidents": incidents,
        "outbox": _outbox(outbox),
        "cycle": {"number": number, "ended": ended, "duration": duration},
        "interval": interval,
        "targets": targets or {},
    }


def _engine_view(engine: Any, raw: List[Dict[str, Any]]
                 ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]], Optional[float]]:
    """(checks with their confirmed state, open incidents, role since) from engine JSON."""
    from watchdog.core.debounce import label_of
    from watchdog.core.engine import EngineState

    if isinstance(engine, EngineState):  # the daemon's own, no JSON round trip
        state = engine
    else:
        state = EngineState.from_json(engine) if engine is not None else EngineState()
    by_name = {c.get("name"): c for c in raw}
    order = [c.get("name") for c in raw]
    order += sorted(n for n in state.checks if n not in order)
    checks = []
    incidents = []
    for name in order:
        cs = state.checks.get(name)
        entry: Dict[str, Any] = {"name": name, "current": name in by_name}
        if cs is not None:
            # Levels as their labels: status.json is JSON (and a public interface).
            entry.update(confirmed=label_of(cs.debounce.confirmed),
                         since=cs.debounce.confirmed_since,
                         latest=cs.status.label, summary=cs.summary,
                         pending=label_of(cs.debounce.level) if cs.debounce.pending else None,
                         pending_since=cs.debounce.level_since if cs.debounce.pending else None)
            if cs.incident is not None:
                incidents.append({
                    "check": name, "level": cs.incident.level.label, "since": cs.incident.since,
                    "told": label_of(cs.incident.told), "last_sent": cs.incident.last_sent,
                    "flapping": cs.incident.flapping,
                })
        if name in by_name and not entry.get("summary"):
            entry["summary"] = by_name[name].get("summary")
        checks.append(entry)
    return checks, incidents, state.role_since


# ---------------------------------------------------------------- reading, read-only


class Unreadable(Exception):
    """The state directory or a file in it cannot be read: the message says what to do."""


DENIED = "permission denied"


def _read(path: str, required: bool = False) -> Tuple[Optional[Any], Optional[str]]:
    """(JSON, None), (None, None) when absent, (None, why) when unusable. A permission
    problem raises Unreadable when `required` (nothing to show then), else is DENIED."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_READ + 1)
    except FileNotFoundError:
        return None, None
    except PermissionError:
        if not required:
            return None, DENIED
        raise Unreadable(
            f"cannot read {path}: permission denied; run as root, or be in the state "
            "directory's group (see README: status as a non-root user)"
        ) from None
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    if len(raw) > MAX_READ:
        return None, f"{path} is larger than {MAX_READ // (1024 * 1024)} MiB; not read"
    try:
        return json.loads(raw.decode("utf-8")), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"{path} is not valid JSON ({type(exc).__name__}); the daemon replaces it"


def _num(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _outbox(data: Any) -> List[Dict[str, Any]]:
    """Waiting alerts, oldest first, each with what it says (its headline)."""
    from watchdog.alerts.message import first_line

    out = []
    targets = data.get("targets") if isinstance(data, dict) else None
    for target, entry in targets.items() if isinstance(targets, dict) else ():
        for item in (entry.get("pending") or []) if isinstance(entry, dict) else []:
            n = item.get("notification") if isinstance(item, dict) else None
            if not isinstance(n, dict):
                continue
            out.append({
                "target": str(target),
                "queued": _num(item.get("queued")),
                "kind": n.get("kind"),
                "severity": n.get("severity"),
                "title": n.get("subject") or n.get("title"),
                "says": first_line(str(n.get("body") or "")),
            })
    out.sort(key=lambda e: e["queued"] or 0.0)
    return out


def gather(cfg: Config, now: float, last: int = 10) -> Dict[str, Any]:
    """Everything `status` shows, as one JSON-able dict. Raises Unreadable."""
    from watchdog import maintenance as mnt

    state_dir = cfg.daemon.state_dir
    if not os.path.isdir(state_dir):
        if os.path.exists(state_dir):
            raise Unreadable(f"{state_dir} ([daemon] state_dir) is not a directory")
        raise Unreadable(
            f"no state directory {state_dir} ([daemon] state_dir): the daemon has not run on "
            "this node with this config (or --config points at another one)"
        )
    if not os.access(state_dir, os.R_OK | os.X_OK):
        raise Unreadable(
            f"cannot read {state_dir}: permission denied; run as root, or be in the state "
            "directory's group (see README: status as a non-root user)"
        )
    problems: List[str] = []
    files: Dict[str, Any] = {}
    denied = []
    for name in (STATUS_FILE, ENGINE_FILE, OUTBOX_FILE, SENT_FILE):
        data, why = _read(os.path.join(state_dir, name), required=name == STATUS_FILE)
        files[name] = data
        if why == DENIED:
            denied.append(name)
        elif why:
            problems.append(why)
    status = files[STATUS_FILE] if isinstance(files[STATUS_FILE], dict) else {}

    daemon: Dict[str, Any] = {"last_cycle": None, "stale": True}
    cycle = status.get("cycle") if isinstance(status.get("cycle"), dict) else {}
    ended = _num(cycle.get("ended"))
    interval = _num(status.get("interval")) or cfg.daemon.interval
    if ended is not None:
        age = max(0.0, now - ended)
        daemon = {
            "last_cycle": ended,
            "age": age,
            "number": cycle.get("number"),
            "duration": _num(cycle.get("duration")),
            "pid": status.get("pid"),
            "interval": interval,
            "stale": age > STALE_INTERVALS * interval + 5.0,
        }

    raw = [c for c in status.get("checks") or [] if isinstance(c, dict)]
    source = "live"
    if ENGINE_FILE in denied:
        # A reader: the daemon's own copy, as of its last cycle.
        source = "last cycle"
        checks = [c for c in status.get("confirmed") or [] if isinstance(c, dict)]
        incidents = [i for i in status.get("incidents") or [] if isinstance(i, dict)]
        role_since = _num(status.get("role_since"))
    else:
        checks, incidents, role_since = _engine_view(files[ENGINE_FILE], raw)
    if OUTBOX_FILE in denied:
        source = "last cycle"
        outbox = [e for e in status.get("outbox") or [] if isinstance(e, dict)]
    else:
        outbox = _outbox(files[OUTBOX_FILE])
    sent = files[SENT_FILE]
    history = sent.get("sent") if isinstance(sent, dict) else None
    history = [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []
    if SENT_FILE in denied:
        problems.append(f"{SENT_FILE}: permission denied (the daemon writes it mode 0640)")
    targets = status.get("targets") if isinstance(status.get("targets"), dict) else {}
    return {
        "node": status.get("node") or cfg.node_name,
        "role": status.get("role") or "unknown",
        "role_since": role_since,
        "status": status.get("status"),
        "state_dir": state_dir,
        "source": source,
        "daemon": daemon,
        "checks": checks,
        "incidents": incidents,
        "maintenance": mnt.status(cfg, now),
        "outbox": outbox,
        "targets": targets,
        "sent": history[-last:] if last > 0 else [],
        "problems": problems,
    }


# ---------------------------------------------------------------- text


def _ago(now: float, then: Optional[float]) -> str:
    from watchdog.alerts.message import format_time
    from watchdog.units import format_duration

    if then is None:
        return "an unknown time"
    return f"{format_time(then)} ({format_duration(max(0.0, now - then))} ago)"


def render(info: Dict[str, Any], now: float, colour: bool = False) -> str:
    from watchdog.alerts.message import format_time
    from watchdog.units import format_duration

    def paint(text: str, level: Optional[str]) -> str:
        codes = {"ok": "32", "warning": "33", "critical": "31;1", "unknown": "35"}
        if not colour or level not in codes:
            return text
        return f"\033[{codes[level]}m{text}\033[0m"

    lines = []
    role_since = f" since {_ago(now, info['role_since'])}" if info.get("role_since") else ""
    lines.append(f"{info['node']}: role {info['role']}{role_since}")
    d = info["daemon"]
    if d.get("last_cycle") is None:
        lines.append(f"daemon: no completed cycle recorded in {info['state_dir']} "
                     "(not running, or an older version)")
    else:
        state = "STALE: not cycling" if d["stale"] else "running"
        lines.append(
            f"daemon: {state}; last cycle #{d.get('number')} at {_ago(now, d['last_cycle'])}, "
            f"took {format_duration(d.get('duration') or 0.0)} (interval "
            f"{format_duration(d['interval'])}, pid {d.get('pid')})"
        )
    lines.append("checks (confirmed state, since):")
    if not info["checks"]:
        lines.append("  none recorded yet")
    for c in info["checks"]:
        level = c.get("confirmed") or "not yet confirmed"
        text = f"  {c['name']:<14} {paint(level.upper() if c.get('confirmed') else level, c.get('confirmed'))}"
        if c.get("since") is not None:
            text += f" since {_ago(now, c['since'])}"
        if c.get("pending"):
            text += f"; now {c['pending']} since {format_time(c.get('pending_since'))} (debouncing)"
        if not c.get("current"):
            text += " [not checked in this role]"
        lines.append(text)
        if c.get("summary"):
            lines.append(f"  {'':<14} {c['summary']}")
    if info["incidents"]:
        lines.append("open incidents:")
        for i in info["incidents"]:
            told = f"told {i['told']}" if i.get("told") else "not paged (maintenance)"
            flap = ", flapping" if i.get("flapping") else ""
            lines.append(f"  {i['check']}: {i['level']} since {_ago(now, i['since'])}; {told}{flap}")
    else:
        lines.append("open incidents: none")
    m = info["maintenance"]
    if m.get("active"):
        lines.append(f"maintenance: ON until {format_time(m.get('until'))}, asked by "
                     f"{m.get('by')}: {m.get('reason')}"
                     + ("" if m.get("applied") else " (not applied by the daemon yet)"))
    else:
        lines.append("maintenance: off" + (f" ({m['error']})" if m.get("error") else ""))
    if info["outbox"]:
        lines.append(f"outbox: {len(info['outbox'])} alert(s) waiting:")
        for e in info["outbox"]:
            lines.append(f"  -> {e['target']}: queued {_ago(now, e['queued'])}: {e['says']}")
        for name, t in sorted(info["targets"].items()):
            if isinstance(t, dict) and t.get("last_error"):
                lines.append(f"  target {name!r} last error: {t['last_error']}")
    else:
        lines.append("outbox: empty")
    if info["sent"]:
        lines.append(f"last {len(info['sent'])} alert(s) sent (newest last):")
        for e in info["sent"]:
            late = ""
            created = _num(e.get("created"))
            at = _num(e.get("at"))
            if created is not None and at is not None and at - created >= 60:
                late = f" (queued {format_time(created)})"
            lines.append(f"  {format_time(at)} -> {e.get('target')}: {e.get('headline')}{late}")
    else:
        lines.append("sent: nothing recorded yet")
    if info.get("source") == "last cycle":
        lines.append("note: checks, incidents and outbox as of the daemon's last cycle "
                     "(its live files are root's)")
    for problem in info["problems"]:
        lines.append(f"note: {problem}")
    return "\n".join(lines)


def command_status(cfg: Config, as_json: bool = False, last: int = 10,
                   clock: Callable[[], float] = time.time, colour: bool = False,
                   write: Callable[[str], None] = print) -> int:
    import sys

    now = clock()
    try:
        info = gather(cfg, now, last)
    except Unreadable as exc:
        print(f"status: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if as_json:
        write(json.dumps(info, indent=2, sort_keys=True, default=str))
    else:
        write(render(info, now, colour=colour))
    return EXIT_STALE if info["daemon"]["stale"] else EXIT_OK
