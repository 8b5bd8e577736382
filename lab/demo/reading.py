"""What the demo reads: the alerts the receiver gets, the daemons' cycle lines, a metrics
scrape, and which prerequisites are missing."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Tuple

from watchdog.model import CHECK_NAMES

# ---------------------------------------------------------------- parsing what arrives


@dataclass(frozen=True)
class Alert:
    """One alert as the receiver got it; `at` is seconds since the demo started."""

    at: float
    node: str
    check: str
    kind: str  # PROBLEM, RECOVERY, ESCALATION, ROLE CHANGE, NO LONGER APPLIES, ...
    type: str  # apprise notify type: info, success, warning, failure
    headline: str
    summary: str
    body: str


_TITLE = re.compile(r"^\[(?P<node>[^\]]*)\]\s*(?P<check>.*)$")
_MULTIWORD_KINDS = ("ROLE CHANGE", "NO LONGER APPLIES", "MAINTENANCE ON", "MAINTENANCE OVER",
                    "MAINTENANCE CHANGED", "DAILY REPORT")
# Messages about a node rather than one check (watchdog.alerts.summaries): printed whole.
_WHOLE_BODY_CHECKS = ("maintenance", "daily report")


def parse_alert(message: Mapping[str, Any], at: float) -> Alert:
    """An apprise json:// body ({"title", "message", "type"}) as an Alert."""
    title = str(message.get("title") or "")
    body = str(message.get("message") or "")
    match = _TITLE.match(title)
    node, check = (match.group("node"), match.group("check")) if match else ("?", title)
    # Titles carry a subject after the check's name ("[mail1] standbys CRITICAL: ...").
    first = check.split(" ", 1)[0]
    if first in CHECK_NAMES or first == "role":
        check = first
    lines = body.splitlines() or [""]
    headline = lines[0].strip()
    kind = next((k for k in _MULTIWORD_KINDS if headline.startswith(k)), "")
    if not kind:
        kind = headline.split(":", 1)[0].split(" ", 1)[0] if headline else "?"
    summary = lines[1].strip() if len(lines) > 1 else ""
    return Alert(at, node, check, kind, str(message.get("type") or "?"), headline, summary, body)


def detail_lines(alert: Alert, width: int = 160) -> List[str]:
    """What the console prints under an alert's headline: the check's summary line, or the
    whole body of a message about the node (maintenance start and end, daily report)."""
    if alert.check in _WHOLE_BODY_CHECKS:
        lines = [line.rstrip() for line in alert.body.splitlines()[1:] if line.strip()]
    else:
        lines = [alert.summary] if alert.summary else []
    return [line if len(line) <= width else line[: width - 3] + "..." for line in lines]


@dataclass(frozen=True)
class NodeView:
    """What a daemon's `cycle N: ...` log line says: its role, worst status, each check, and
    the end of the maintenance in effect ("" when none)."""

    node: str
    role: str
    status: str
    checks: Dict[str, str] = field(default_factory=dict)
    maintenance: str = ""

    @property
    def text(self) -> str:
        parts = " ".join(f"{name}={status}" for name, status in self.checks.items())
        quiet = f" (maintenance until {self.maintenance})" if self.maintenance else ""
        return f"{self.role} {self.status}: {parts}{quiet}"

    def all_ok(self, role: Optional[str] = None) -> bool:
        return self.status == "ok" and (role is None or self.role == role)


_CYCLE = re.compile(
    r"cycle \d+: (?P<node>\S+) (?P<role>\S+) (?P<status>\S+): (?P<checks>.*?) \(\d+ ms"
)
# The cycle line's tail while maintenance is on: "..., 0 open, MAINTENANCE until <date> <time>)".
_QUIET = re.compile(r", MAINTENANCE until (?:\d{4}-\d\d-\d\d )?(?P<until>[^)]*)\)")


def parse_cycle_line(line: str) -> Optional[NodeView]:
    """The daemon's per-cycle summary line, or None for any other log line."""
    match = _CYCLE.search(line)
    if not match:
        return None
    checks: Dict[str, str] = {}
    for part in match.group("checks").split():
        name, sep, status = part.partition("=")
        if sep:
            checks[name] = status
    quiet = _QUIET.search(line, match.end())
    return NodeView(match.group("node"), match.group("role"), match.group("status"), checks,
                    quiet.group("until").strip() if quiet else "")


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+"
                     r"(?P<value>\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(r"\\(.)")


def parse_samples(text: str) -> List[Tuple[str, Dict[str, str], float, str]]:
    """Prometheus text exposition as (name, labels, value, the line); comments skipped."""
    out: List[Tuple[str, Dict[str, str], float, str]] = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        labels = {k: _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), v)
                  for k, v in _LABEL.findall(match.group("labels") or "")}
        out.append((match.group("name"), labels, value, line))
    return out


def backup_window_around(now: float, before: float = 60.0, after: float = 600.0
                         ) -> Tuple[str, str]:
    """("HH:MM", "HH:MM") in UTC covering [now - before, now + after], whole minutes.

    A window that crosses midnight (23:58-00:09) is valid: it belongs to the day it starts.
    """
    start = datetime.fromtimestamp(now - before, timezone.utc)
    end = datetime.fromtimestamp(now + after + 59.0, timezone.utc)
    return start.strftime("%H:%M"), end.strftime("%H:%M")


def missing_prerequisites(pg_version: Optional[str] = None) -> List[str]:
    """What this machine lacks to run the demo (empty: nothing)."""
    from lab.pgcluster import DEFAULT_OS_USER, PgClusterError
    from lab.pgversions import PgVersionMissing, bindir_for
    from lab.services import missing_tools

    missing: List[str] = []
    try:
        bindir_for(pg_version)
    except (PgClusterError, PgVersionMissing) as exc:
        missing.append(f"PostgreSQL server binaries: {exc}")
    reason = missing_tools()
    if reason:
        missing.append(reason)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing.append("the psycopg Python package (pip install 'psycopg>=3.1')")
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(DEFAULT_OS_USER)
        except KeyError:
            missing.append(f"the OS user {DEFAULT_OS_USER!r} (PostgreSQL refuses to run as "
                           "root; the Debian postgresql package creates it)")
        if shutil.which("runuser") is None:
            missing.append("runuser (util-linux)")
    return missing
