"""`ha-watchdog demo`: a whole two-node cluster on loopback, watched by two real daemons.

Why: the quickest way to see what ha-watchdog says, and when, is to break a real cluster
in front of it. Everything here is real and local: a PostgreSQL primary and streaming
standby (lab.pgcluster), one /proc/drbd-format file per node that the demo
rewrites (lab.drbdstate), a daemontools tree of hvmail-like services under a real
svscan (lab.services), one `ha-watchdog` daemon process per node
(lab.node) and an HTTP receiver on 127.0.0.1 that gets apprise's json:// posts
(lab.receivers) and prints each alert as it arrives. The planned-work scenario
runs the real `ha-watchdog maintenance on|status` commands against mail1's daemon, as a user
would; mail1 also publishes Prometheus metrics on a loopback port (when prometheus-client is
installed), which the demo scrapes and prints.

Node "mail1" starts as DRBD Primary with the PostgreSQL primary, "mail2" as DRBD Secondary
with the standby. Each daemon watches ITS OWN PostgreSQL server (a fixed port), whatever
role it has, exactly as on real nodes; after the failover the roles swap underneath them.

The scenarios wait for what they expect with timeouts and print one check mark per
expectation; the exit status is 0 when all held, 1 otherwise, 3 when a prerequisite is
missing, 130/143 on Ctrl-C/SIGTERM. Everything (daemons, PostgreSQL, svscan, the temporary
directory) is removed in `finally`, so an interrupted run leaves nothing behind and a
second run works.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

from watchdog.model import CHECK_NAMES
from watchdog.probes.command import CommandResult

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MISSING = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

NODES = ("mail1", "mail2")
CRASH_SERVICE = "hvmail-httpd"
# hvmail-like services (names from GreenArrow's docs); the last two are down by default.
SERVICES: Dict[str, str] = {
    "hvmail-httpd": "up",
    "hvmail-studio-worker": "up",
    "hvmail-qmail-smtpd3": "normally_down",
    "hvmail-dnscache": "normally_down",
}

# Per-check debounce for the demo (the lab defaults are 1-2 s). replay_lag's `for` is longer
# than the lag spike, so the spike is absorbed; postgres_role and standbys ride out the
# second or two a planned failover usually takes (standbys also by its role_change_grace);
# a stopped standby pages after 3 s, not the shipped 15 s reconnect_grace.
DEMO_OVERRIDES: Dict[str, Dict[str, Any]] = {
    "postgres_role": {"for": "4s", "recover_for": "1s"},
    "standbys": {"for": "3s", "recover_for": "1s", "reconnect_grace": "3s"},
    "replay_lag": {"warning": "2s", "critical": "6s", "for": "5s", "recover_for": "1s"},
}
SPIKE_SECONDS = 2.5  # shorter than replay_lag's `for`
BACKUP_PAUSE_SECONDS = 9.0  # past critical (6 s) and for (5 s): would page outside a window
# Long enough for mail2's restart and mail1's held PROBLEM and RECOVERY (6-7 s) with a
# margin, short enough to watch it end on its own.
MAINTENANCE_FOR = "15s"
MAINTENANCE_REASON = "planned standby restart"
# mail1 publishes metrics; what the demo prints of a scrape, per metric name.
METRICS_SHOWN = ("ha_watchdog_role", "ha_watchdog_check_status")

# Environment a daemon must not inherit from whatever runs the demo (a systemd unit, say).
_PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS")


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


# ---------------------------------------------------------------- console


_COLOURS = {"failure": "31", "warning": "33", "success": "32", "info": "36", "bold": "1",
            "dim": "2", "ok": "32", "fail": "31"}


class Console:
    """Timestamped, thread-safe printing; colour only on a terminal, ASCII when needed."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.clock = clock
        self.start = clock()
        self.lock = threading.Lock()
        self.muted = False
        isatty = getattr(stream, "isatty", lambda: False)
        self.colour = bool(isatty()) and "NO_COLOR" not in os.environ
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        self.unicode = encoding.startswith("utf")

    def elapsed(self) -> float:
        return self.clock() - self.start

    def paint(self, text: str, style: str) -> str:
        code = _COLOURS.get(style)
        return f"\033[{code}m{text}\033[0m" if self.colour and code else text

    @property
    def tick(self) -> str:
        return "\u2713" if self.unicode else "ok"

    @property
    def cross(self) -> str:
        return "\u2717" if self.unicode else "FAIL"

    def write(self, text: str = "", stamp: bool = False, force: bool = False) -> None:
        with self.lock:
            if self.muted and not force:
                return
            prefix = f"[+{self.elapsed():5.1f}s] " if stamp else ""
            text = prefix + text + "\n"
            if not self.unicode:  # an alert may quote anything; never die on printing it
                text = text.encode("ascii", "replace").decode("ascii")
            self.stream.write(text)
            self.stream.flush()

    def event(self, text: str) -> None:
        self.write(text, stamp=True)


# ---------------------------------------------------------------- the demo


@dataclass(frozen=True)
class Expectation:
    scenario: str
    text: str
    ok: bool
    detail: str = ""


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C while the demo runs; unwinds to the cleanup."""

    def __init__(self, code: int, what: str):
        super().__init__(what)
        self.code = code
        self.what = what


class Demo:
    """The lab, the two daemons, what they said, and the scenarios."""

    def __init__(self, console: Console, quick: bool = False, verbose: bool = False,
                 python: str = sys.executable, temp_root: Optional[str] = None,
                 pg_version: Optional[str] = None):
        self.console = console
        self.pg_version = pg_version
        self.quick = quick
        self.verbose = verbose
        self.python = python
        self.temp_root = temp_root
        self.cluster: Any = None  # lab.cluster.TwoNodeCluster, from setup()
        self.base: Optional[str] = None
        self.pg: Any = None
        self.tree: Any = None
        self.receiver: Any = None
        self.drbd: Dict[str, Any] = {}
        self.daemons: Dict[str, Any] = {}
        self.base_sections: Dict[str, Dict[str, Any]] = {}
        self.expectations: List[Expectation] = []
        self.scenario = "setup"
        self._cond = threading.Condition()
        self.alerts: List[Alert] = []
        self.views: Dict[str, NodeView] = {}
        self.history: List[Tuple[float, NodeView]] = []  # each change of a node's view
        self.cycles: Dict[str, int] = {name: 0 for name in NODES}
        self.metrics_url: Optional[str] = None  # mail1's /metrics, when published

    # ------------------------------------------------------------ callbacks (other threads)

    def on_message(self, message: Any) -> None:
        if not isinstance(message, Mapping):
            return
        alert = parse_alert(message, self.console.elapsed())
        with self._cond:
            self.alerts.append(alert)
            self._cond.notify_all()
        c = self.console
        text = (f"{c.paint('ALERT', 'bold')}  {alert.node:<5}  "
                f"{c.paint(f'{alert.type:<7}', alert.type)}  {alert.headline}")
        # The body's second line (what is wrong, in the check's words), or a whole message
        # about the node (maintenance start and end).
        for line in detail_lines(alert):
            text += "\n" + " " * 20 + c.paint(line, "dim")
        c.event(text)

    def on_line(self, name: str, line: str) -> None:
        view = parse_cycle_line(line)
        if view is None:
            if self.verbose or " ERROR " in line or " CRITICAL " in line or line.startswith(
                ("Traceback", "  File")
            ):
                self.console.event(self.console.paint(f"{name} log: {line}", "dim"))
            return
        with self._cond:
            self.cycles[name] = self.cycles.get(name, 0) + 1
            old = self.views.get(name)
            self.views[name] = view
            changed = old is None or old.text != view.text
            if changed:
                self.history.append((self.console.elapsed(), view))
            self._cond.notify_all()
        if changed:
            status = self.console.paint(view.status, {"ok": "ok", "warning": "warning"}.get(
                view.status, "failure"))
            parts = " ".join(f"{n}={s}" for n, s in view.checks.items())
            if view.maintenance:
                parts += " " + self.console.paint(f"(maintenance until {view.maintenance})",
                                                  "info")
            self.console.event(f"{name} says: {view.role} {status}: {parts}")
        elif self.verbose:
            self.console.event(self.console.paint(f"{name} log: {line}", "dim"))

    # ------------------------------------------------------------ waiting

    def _wait(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Until predicate() is truthy (checked under the lock); its value, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                dead = [n for n, d in self.daemons.items() if not d.running()]
                if dead:
                    self.console.event(f"daemon {', '.join(dead)} exited; see its log with -v")
                    return None
                self._cond.wait(min(remaining, 0.25))

    def mark(self) -> int:
        with self._cond:
            return len(self.alerts)

    def find_alert(self, since: int, node: str, check: str, kind: str,
                   contains: str = "") -> Optional[Alert]:
        for alert in self.alerts[since:]:
            if (alert.node == node and alert.check == check and alert.kind == kind
                    and contains in alert.body):
                return alert
        return None

    def wait_alert(self, since: int, node: str, check: str, kind: str, timeout: float,
                   contains: str = "") -> Optional[Alert]:
        return self._wait(lambda: self.find_alert(since, node, check, kind, contains), timeout)

    def wait_view(self, node: str, predicate: Callable[[NodeView], bool], timeout: float
                  ) -> Optional[NodeView]:
        def match() -> Optional[NodeView]:
            view = self.views.get(node)
            return view if view is not None and predicate(view) else None

        return self._wait(match, timeout)

    def wait_cycles(self, node: str, count: int, timeout: float = 20.0) -> bool:
        with self._cond:
            target = self.cycles.get(node, 0) + count
        return bool(self._wait(lambda: self.cycles.get(node, 0) >= target, timeout))

    def alerts_since(self, since: int) -> List[Alert]:
        with self._cond:
            return list(self.alerts[since:])

    def views_since(self, at: float, node: str) -> List[NodeView]:
        with self._cond:
            return [view for when, view in self.history if when >= at and view.node == node]

    # ------------------------------------------------------------ output helpers

    def heading(self, number: int, title: str, text: str) -> None:
        self.scenario = title
        self.console.write()
        self.console.write(self.console.paint(f"== {number}. {title} ==", "bold"))
        for line in text.strip().splitlines():
            self.console.write("   " + line.strip())

    def step(self, text: str) -> None:
        self.console.event(self.console.paint("demo: ", "bold") + text)

    def expect(self, text: str, ok: bool, detail: str = "") -> bool:
        self.expectations.append(Expectation(self.scenario, text, bool(ok), detail))
        c = self.console
        mark = c.paint(c.tick, "ok") if ok else c.paint(c.cross, "fail")
        self.console.write(f"   {mark} {text}" + (f" ({detail})" if detail else ""))
        return bool(ok)

    def expect_alert(self, since: int, node: str, check: str, kind: str, timeout: float,
                     started: float, contains: str = "", what: str = "") -> Optional[Alert]:
        alert = self.wait_alert(since, node, check, kind, timeout, contains)
        label = what or f"{node} sends {kind} for {check}"
        if alert is None:
            self.expect(label, False, f"nothing within {timeout:g}s")
        else:
            self.expect(label, True, f"after {max(0.0, alert.at - started):.1f}s")
        return alert

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        from lab.cluster import TwoNodeCluster
        from lab.pgversions import major_of

        self.cluster = cluster = TwoNodeCluster(
            nodes=NODES, services=SERVICES, pg_version=self.pg_version,
            standby_settings={"wal_receiver_status_interval": "1s"},
            on_message=self.on_message, prefix="ha-watchdog-demo-", temp_root=self.temp_root)
        self.base = cluster.make_base()
        self.console.write(f"lab directory: {self.base}")

        self.step("starting the alert receiver (HTTP on 127.0.0.1, apprise json://)")
        self.receiver = cluster.start_receiver()

        self.pg = cluster.new_postgres()
        self.step(f"starting PostgreSQL {major_of(self.pg.server_version_num)}: a primary "
                  "(mail1) and a streaming standby (mail2)")
        cluster.start_postgres()
        ports = {"mail1": self.pg.port("primary"), "mail2": self.pg.port("standby")}
        self.console.write(f"   mail1 PostgreSQL on 127.0.0.1:{ports['mail1']} (primary), "
                           f"mail2 on 127.0.0.1:{ports['mail2']} (standby)")

        self.step("starting svscan over hvmail-like services: " + ", ".join(SERVICES))
        self.tree = cluster.start_services()

        # Each node's daemon watches its own server, whatever role it has later.
        self.drbd = cluster.place_nodes()
        for name in NODES:
            self.base_sections[name] = cluster.sections(name, overrides=DEMO_OVERRIDES,
                                                        target="demo-receiver")
        if metrics_available():
            from lab.receivers import free_port

            listen = f"127.0.0.1:{free_port()}"
            self.base_sections["mail1"]["metrics"] = {"listen": listen}
            self.metrics_url = f"http://{listen}/metrics"
            self.console.write("   mail1 publishes Prometheus metrics: [metrics] listen = "
                               f'"{listen}"')
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        self.pg.write(1)
        self.pg.wait_replayed()
        self.step("starting both nodes' ha-watchdog daemons (interval 0.5s)")
        for name in NODES:
            daemon = cluster.daemon(name, self.base_sections[name], python=self.python,
                                    on_line=self.on_line, env=env)
            self.daemons[name] = daemon
            daemon.start()

    # ------------------------------------------------------------ scenarios

    def start_ok(self, number: int) -> None:
        self.heading(number, "A healthy cluster", """
            mail1 is DRBD Primary and runs the PostgreSQL primary and the services;
            mail2 is DRBD Secondary and runs the streaming standby. Both should say ok
            and send nothing.""")
        since = self.mark()
        one = self.wait_view("mail1", lambda v: v.all_ok("primary"), 30)
        two = self.wait_view("mail2", lambda v: v.all_ok("secondary"), 30)
        self.expect("mail1 says primary ok", one is not None)
        self.expect("mail2 says secondary ok", two is not None)
        self.wait_cycles("mail1", 2)
        sent = self.alerts_since(since)
        self.expect("no alert", not sent, ", ".join(a.headline for a in sent))

    def lag_spike(self, number: int) -> None:
        self.heading(number, "A lag spike, absorbed", f"""
            Replay on the standby is paused for {SPIKE_SECONDS:g}s while the primary keeps
            writing, then resumed. mail2 sees it at once (replay_lag=warning in its cycle
            line), but replay_lag's `for` is {_lag('for')}: a shorter spike pages nobody.""")
        self.pg.write(1)
        self.pg.wait_replayed()
        since, started = self.mark(), self.console.elapsed()
        self.step("pg_wal_replay_pause() on mail2, writing on mail1")
        self.pg.pause_replay()
        _keep_writing(self.pg, SPIKE_SECONDS)
        self.step("pg_wal_replay_resume() on mail2")
        self.pg.resume_replay()
        self.pg.wait_replayed()
        back = self.wait_view("mail2", lambda v: v.checks.get("replay_lag") == "ok", 15)
        self.wait_cycles("mail2", 6)
        seen = [v for v in self.views_since(started, "mail2")
                if v.checks.get("replay_lag") not in (None, "ok")]
        self.expect("mail2 saw the spike (replay_lag not ok in its cycle line)", bool(seen),
                    seen[0].text if seen else "never seen")
        self.expect("mail2's replay_lag is ok again", back is not None)
        sent = [a for a in self.alerts_since(since) if a.check == "replay_lag"]
        self.expect("no replay_lag alert (absorbed by `for`)", not sent,
                    ", ".join(a.headline for a in sent))

    def standby_stops(self, number: int) -> None:
        self.heading(number, "The standby stops", """
            mail2's PostgreSQL is stopped. mail1 (primary) sees no streaming standby:
            standbys CRITICAL. mail2 cannot reach its own PostgreSQL: postgres_role
            CRITICAL. Then it is started again: RECOVERY from both.""")
        since, started = self.mark(), self.console.elapsed()
        self.step("pg_ctl stop on mail2's PostgreSQL")
        self.pg.stop_standby()
        self.expect_alert(since, "mail1", "standbys", "PROBLEM", 20, started,
                          what="mail1 sends PROBLEM CRITICAL for standbys")
        self.expect_alert(since, "mail2", "postgres_role", "PROBLEM", 20, started,
                          what="mail2 sends PROBLEM CRITICAL for postgres_role")
        started = self.console.elapsed()
        self.step("pg_ctl start on mail2's PostgreSQL")
        self.pg.start_standby()
        self.expect_alert(since, "mail1", "standbys", "RECOVERY", 20, started)
        self.expect_alert(since, "mail2", "postgres_role", "RECOVERY", 20, started)
        problem = self.find_alert(since, "mail1", "standbys", "PROBLEM")
        if problem is not None:
            self.expect("the standbys PROBLEM is CRITICAL (notify type failure)",
                        problem.type == "failure" and "PROBLEM CRITICAL" in problem.headline,
                        problem.type)
        self.wait_view("mail1", lambda v: v.all_ok("primary"), 15)
        self.wait_view("mail2", lambda v: v.all_ok("secondary"), 15)

    def crash_loop(self, number: int) -> None:
        self.heading(number, "A service crash-loops", f"""
            {CRASH_SERVICE}'s run script now exits at once; supervise restarts it every
            second, so svstat shows it "up" with a new pid each time. mail1's services
            check must name it (CRITICAL), and send RECOVERY once it runs again.""")
        since, started = self.mark(), self.console.elapsed()
        self.step(f"{CRASH_SERVICE}: run script replaced by one that exits 1")
        self.tree.make_crashloop(CRASH_SERVICE)
        self.expect_alert(since, "mail1", "services", "PROBLEM", 25, started,
                          contains=CRASH_SERVICE,
                          what=f"mail1 sends PROBLEM CRITICAL for services naming {CRASH_SERVICE}")
        started = self.console.elapsed()
        self.step(f"{CRASH_SERVICE}: healthy run script again")
        self.tree.make_healthy(CRASH_SERVICE)
        self.expect_alert(since, "mail1", "services", "RECOVERY", 25, started)
        self.wait_view("mail1", lambda v: v.all_ok("primary"), 15)

    def backup_window(self, number: int) -> None:
        start, end = backup_window_around(time.time())
        self.heading(number, "Replay paused during a backup window", f"""
            mail2's config gets a [[backup_windows]] {start}-{end} UTC (covering now), and
            mail2 reloads it on SIGHUP. Replay is paused for {BACKUP_PAUSE_SECONDS:g}s while mail1
            writes: past the normal limits (critical {_lag('critical')}, for {_lag('for')}), but
            inside the window replay_lag uses its backup limits, so nothing is sent.""")
        mail2 = self.daemons["mail2"]
        relaxed = dict(self.base_sections["mail2"])
        relaxed["backup_windows"] = [{"start": start, "end": end, "timezone": "UTC"}]
        relaxed["backup"] = {"max_duration": "1h"}
        if not self._reload(mail2, relaxed, "with the backup window"):
            return
        self.pg.write(1)
        self.pg.wait_replayed()
        since, started = self.mark(), self.console.elapsed()
        self.step("pg_wal_replay_pause() on mail2, writing on mail1")
        self.pg.pause_replay()
        _keep_writing(self.pg, BACKUP_PAUSE_SECONDS - 2)
        once = self._once_summary("mail2", "replay_lag")
        self.console.event(f"mail2 --once: replay_lag {once}")
        _keep_writing(self.pg, 2)
        lag = self.pg.scalar(
            "standby", "SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())")
        self.step(f"pg_wal_replay_resume() on mail2 (it was {float(lag or 0):.1f}s behind)")
        self.pg.resume_replay()
        self.pg.wait_replayed()
        self.wait_cycles("mail2", 3)
        seen = [v for v in self.views_since(started, "mail2")
                if v.checks.get("replay_lag") not in (None, "ok")]
        self.expect("the backup limits were applied", "[backup limits applied]" in once, once)
        self.expect("mail2's replay_lag stayed ok in the window", not seen,
                    seen[0].text if seen else "")
        sent = [a for a in self.alerts_since(since) if a.check == "replay_lag"]
        self.expect("no replay_lag alert", not sent, ", ".join(a.headline for a in sent))
        self._reload(mail2, self.base_sections["mail2"], "without the window")

    def maintenance(self, number: int) -> None:
        self.heading(number, "Planned work: maintenance mode", f"""
            mail2's PostgreSQL gets a planned restart. First, on mail1, the operator runs
            `ha-watchdog maintenance on --for {MAINTENANCE_FOR} --reason "{MAINTENANCE_REASON}"`.
            mail1 says so once (info), then keeps checking and tracking but pages nothing:
            its cycle line shows standbys=critical, the PROBLEM and the RECOVERY are held
            back, and `maintenance status` lists them. Maintenance is per node: mail2 was
            not put in it, so it pages its postgres_role as before (on a real cluster, run
            the command on both). The maintenance ends on its own; then mail1 sends one
            message: what it held back, and what is still open (nothing).""")
        since, started = self.mark(), self.console.elapsed()
        result = self._cli("mail1", "maintenance", "on", "--for", MAINTENANCE_FOR,
                           "--reason", MAINTENANCE_REASON)
        self.expect("`maintenance on` exits 0: mail1's daemon applied it",
                    result.ok and "applied it" in result.stdout, _failed(result))
        on = self.wait_alert(since, "mail1", "maintenance", "MAINTENANCE ON", 10)
        self.expect("mail1 sends MAINTENANCE ON (type info)",
                    on is not None and on.type == "info",
                    f"after {on.at - started:.1f}s" if on else "nothing within 10s")
        quiet = self.wait_view("mail1", lambda v: bool(v.maintenance), 10)
        self.expect("mail1's cycle line says it is in maintenance", quiet is not None)
        record = self._maintenance_record("mail1")
        until = float(record["until"]) if record else time.time()

        stopped = self.console.elapsed()
        self.step("pg_ctl stop on mail2's PostgreSQL")
        self.pg.stop_standby()
        seen = self.wait_view("mail1", lambda v: v.checks.get("standbys") == "critical", 20)
        self.expect("mail1 sees it: standbys=critical in its cycle line", seen is not None)
        held = self._wait_held("mail1", "standbys", "problem", 20)
        self.expect("mail1 holds back its standbys PROBLEM (recorded, not sent)",
                    held is not None, "nothing recorded within 20s" if held is None else "")
        self.expect_alert(since, "mail2", "postgres_role", "PROBLEM", 20, stopped,
                          what="mail2 (not in maintenance) sends PROBLEM for postgres_role")
        status = self._cli("mail1", "maintenance", "status")
        self.expect("`maintenance status` lists the held-back PROBLEM",
                    status.ok and "PROBLEM CRITICAL: standbys" in status.stdout
                    and "[held back]" in status.stdout, _failed(status))

        restarted = self.console.elapsed()
        self.step("pg_ctl start on mail2's PostgreSQL")
        self.pg.start_standby()
        held = self._wait_held("mail1", "standbys", "recovery", 20)
        self.expect("mail1 holds back its standbys RECOVERY too", held is not None)
        self.expect_alert(since, "mail2", "postgres_role", "RECOVERY", 20, restarted)
        if self.metrics_url is not None:
            samples = self._show_metrics(("ha_watchdog_maintenance_active",))
            self.expect("its metrics say so too: ha_watchdog_maintenance_active 1",
                        [value for _, _, value, _ in samples] == [1.0])

        left = max(0.0, until - time.time())
        self.step(f"waiting for the maintenance to end on its own (in {left:.0f}s)")
        over = self.expect_alert(since, "mail1", "maintenance", "MAINTENANCE OVER", left + 15,
                                 self.console.elapsed(),
                                 what="mail1 sends MAINTENANCE OVER when the time is up")
        if over is not None:
            body = over.body
            listed = ("PROBLEM CRITICAL: standbys on mail1" in body
                      and "RECOVERY: standbys on mail1" in body
                      and body.count("[held back]") >= 2)
            self.expect("it lists the standbys PROBLEM and RECOVERY as held back", listed,
                        "" if listed else _indent(body))
            clear = "Still open: nothing" in body
            self.expect("it says: Still open: nothing", clear, "" if clear else _indent(body))
        paged = [a for a in self.alerts_since(since)
                 if a.node == "mail1" and a.check == "standbys"]
        self.expect("mail1 paged nothing for standbys", not paged,
                    ", ".join(a.headline for a in paged))
        self.wait_view("mail1", lambda v: v.all_ok("primary") and not v.maintenance, 15)
        self.wait_view("mail2", lambda v: v.all_ok("secondary"), 15)

    def failover(self, number: int) -> None:
        self.heading(number, "Failover: the roles swap", """
            Like GreenArrow's hvmail_make_secondary on mail1 then hvmail_make_primary on
            mail2: mail1's PostgreSQL stops and its DRBD becomes Secondary, mail2's DRBD
            becomes Primary and its PostgreSQL is promoted, then mail1's PostgreSQL is rebuilt
            as a standby of mail2. Both daemons keep watching their own server and must send
            ROLE CHANGE; checks that no longer apply to a role close (NO LONGER APPLIES if
            they had an open problem). While mail1 is rebuilt, mail2 has no standby and mail1
            no database for a second or two: if that outlasts a check's `for`, the node says
            so, and RECOVERY follows. Then everything settles ok.""")
        since, started = self.mark(), self.console.elapsed()
        self.step("mail1: pg_ctl stop (hvmail_make_secondary stops the services' database)")
        self.pg.stop_primary()
        self.step("mail1: DRBD Secondary; mail2: DRBD Primary")
        self.drbd["mail1"].secondary()
        self.drbd["mail2"].primary()
        self.step("mail2: pg_ctl promote")
        self.pg.promote_standby()
        self.step("mail1: rebuilt as a standby of mail2 (pg_basebackup), started")
        self.pg.reattach_old_primary()
        for name, new in (("mail1", "secondary"), ("mail2", "primary")):
            alert = self.wait_alert(since, name, "role", "ROLE CHANGE", 20)
            ok = alert is not None and alert.type == "info" and f"is now {new}" in alert.headline
            self.expect(f"{name} sends ROLE CHANGE to {new} (type info)", ok,
                        f"after {alert.at - started:.1f}s" if alert else "nothing within 20s")
        one = self.wait_view("mail1", lambda v: v.all_ok("secondary"), 30)
        two = self.wait_view("mail2", lambda v: v.all_ok("primary"), 30)
        self.expect("mail1 settles: secondary ok", one is not None)
        self.expect("mail2 settles: primary ok (services and standbys now checked here)",
                    two is not None)
        closed = self._wait(lambda: not _still_open(self.alerts[since:]), 20)
        opened = [a for a in self.alerts_since(since) if a.kind in _OPENING]
        if opened:
            text = "what the failover broke for a moment was closed again"
        else:
            text = "no PROBLEM during the planned failover"
        self.expect(text, bool(closed),
                    ", ".join(f"{a.node} {a.check}" for a in _still_open(self.alerts_since(since))))

    def metrics(self, number: int) -> None:
        self.heading(number, "Metrics: what Prometheus scrapes", f"""
            mail1 runs with [metrics] listen, so Prometheus can scrape {self.metrics_url}
            (README, "Metrics"): its role and each check's status (0 ok, 1 warning,
            2 critical, 3 unknown), among others. After the failover it says:""")
        samples = self._show_metrics(METRICS_SHOWN)
        roles = {labels.get("role"): value for name, labels, value, _ in samples
                 if name == "ha_watchdog_role"}
        self.expect("ha_watchdog_role says mail1 is secondary now",
                    roles.get("secondary") == 1.0 and sum(roles.values()) == 1.0, str(roles))

    # ------------------------------------------------------------ helpers

    def _cli(self, node: str, *args: str) -> CommandResult:
        """`ha-watchdog --config <node's> ARGS` as a user would type it: shown, run, its
        output printed under it."""
        daemon = self.daemons[node]
        shown = shlex.join(["ha-watchdog", "--config", daemon.config_path, *args])
        self.step(f"$ {shown}")
        result = _run([self.python, "-m", "watchdog", "--config", daemon.config_path, *args],
                      timeout=30, env=daemon.env)
        for line in (result.stdout + result.stderr).splitlines():
            self.console.write(" " * 10 + self.console.paint(line, "dim"))
        return result

    def _maintenance_record(self, node: str) -> Optional[Dict[str, Any]]:
        """The maintenance `node`'s daemon applies, as it records it in its state file (what
        `maintenance status` reads)."""
        from watchdog.maintenance import daemon_view

        record, _ = daemon_view(self.base_sections[node]["daemon"]["state_dir"])
        return record

    def _wait_held(self, node: str, check: str, kind: str, timeout: float
                   ) -> Optional[Dict[str, Any]]:
        """The notification `node` recorded and held back during its maintenance, once it is
        in its state file; printed. None at timeout or when a daemon exited."""
        deadline = time.monotonic() + timeout
        while True:
            record = self._maintenance_record(node) or {}
            for event in record.get("events") or []:
                if (isinstance(event, dict) and event.get("check") == check
                        and event.get("kind") == kind and not event.get("sent")):
                    self.console.event(self.console.paint(
                        f"{node} held back: {event.get('line', '')}", "info"))
                    return event
            if time.monotonic() >= deadline or not all(
                    d.running() for d in self.daemons.values()):
                return None
            time.sleep(0.1)

    def _show_metrics(self, names: Sequence[str]
                      ) -> List[Tuple[str, Dict[str, str], float, str]]:
        """Scrape mail1's /metrics, print the samples of `names`, return them."""
        assert self.metrics_url is not None
        self.step(f"GET {self.metrics_url}")
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                text = response.read().decode("utf-8", "replace")
        except OSError as exc:
            self.expect("mail1 serves /metrics", False, str(exc))
            return []
        samples = [s for s in parse_samples(text) if s[0] in names]
        for _, _, _, line in samples:
            self.console.write(" " * 10 + self.console.paint(line, "dim"))
        if not samples:
            self.expect(f"mail1's /metrics has {', '.join(names)}", False)
        return samples

    def _reload(self, daemon: Any, sections: Mapping[str, Any], what: str) -> bool:
        start = len(daemon.log())
        daemon.write_config(sections)
        self.step(f"{daemon.name}: config rewritten {what}, SIGHUP")
        daemon.reload()
        line = daemon.wait_log(r"configuration reloaded|reload rejected", 15, start=start)
        ok = line is not None and "reloaded" in line
        self.expect(f"{daemon.name} reloads its config ({what})", ok, "" if ok else str(line))
        return ok

    def _once_summary(self, node: str, check: str) -> str:
        """`ha-watchdog --config <node's> --once --json`: one check's status and summary."""
        daemon = self.daemons[node]
        result = _run(
            [self.python, "-m", "watchdog", "--config", daemon.config_path, "--once", "--json"],
            timeout=20, env=daemon.env,
        )
        try:
            report = json.loads(result.stdout)
            for item in report["checks"]:
                if item["name"] == check:
                    return f"{item['status']}: {item['summary']}"
        except (ValueError, KeyError, TypeError):
            pass
        return f"(no answer: {result.error or result.stderr.strip()[-200:]})"

    # ------------------------------------------------------------ run, summary, cleanup

    def run(self) -> int:
        scenarios: List[Callable[[int], None]] = [self.start_ok]
        if not self.quick:
            scenarios.append(self.lag_spike)
        scenarios += [self.standby_stops, self.crash_loop]
        if not self.quick:
            scenarios.append(self.backup_window)
        scenarios += [self.maintenance, self.failover]
        self.setup()
        if self.metrics_url is not None:
            scenarios.append(self.metrics)
        for number, scenario in enumerate(scenarios, 1):
            scenario(number)
            if not self.quick:
                time.sleep(1.0)  # a moment to read
        return self.summary()

    def summary(self) -> int:
        c = self.console
        with self._cond:
            alerts = list(self.alerts)
        c.muted = True
        counts: Dict[Tuple[str, str, str, str], int] = {}
        for alert in alerts:
            key = (alert.node, alert.check, alert.kind, alert.type)
            counts[key] = counts.get(key, 0) + 1
        c.write(force=True)
        c.write(c.paint("== Summary ==", "bold"), force=True)
        c.write(f"   {'NODE':<6} {'CHECK':<14} {'ALERT':<18} {'TYPE':<8} COUNT", force=True)
        for (node, check, kind, kind_type), count in sorted(counts.items()):
            c.write(f"   {node:<6} {check:<14} {kind:<18} {kind_type:<8} {count}", force=True)
        if not counts:
            c.write("   (no alerts)", force=True)
        failed = [e for e in self.expectations if not e.ok]
        held = len(self.expectations) - len(failed)
        c.write(f"   {len(alerts)} alert(s); {held} of {len(self.expectations)} "
                "expectations held", force=True)
        for expectation in failed:
            c.write(f"   {c.cross} [{expectation.scenario}] {expectation.text}"
                    + (f" ({expectation.detail})" if expectation.detail else ""), force=True)
        return EXIT_OK if not failed and self.expectations else EXIT_FAILED

    def cleanup(self) -> None:
        """Stop and remove everything; each part on its own so one failure stops nothing."""
        self.console.muted = True
        if self.cluster is not None:
            self.cluster.close()
        self.console.write(f"cleaned up: daemons, PostgreSQL, svscan and {self.base or 'nothing'}"
                           " removed", force=True)


_OPENING = ("PROBLEM", "ESCALATION", "DEESCALATION", "FLAPPING", "REMINDER")
_CLOSING = ("RECOVERY", "NO LONGER APPLIES")


def _lag(key: str) -> str:
    return str(DEMO_OVERRIDES["replay_lag"][key])


def _still_open(alerts: Sequence[Alert]) -> List[Alert]:
    """The last alert of each (node, check) whose incident is still open (no RECOVERY yet)."""
    last: Dict[Tuple[str, str], Alert] = {}
    for alert in alerts:
        if alert.kind in _OPENING or alert.kind in _CLOSING:
            last[(alert.node, alert.check)] = alert
    return [a for a in last.values() if a.kind in _OPENING]


def _failed(result: CommandResult) -> str:
    """Why a command did not do what was expected ("" when it exited 0)."""
    if result.ok:
        return ""
    why = result.error or f"exit {result.returncode}"
    tail = (result.stderr or result.stdout).strip()[-200:]
    return f"{why}: {tail}" if tail else why


def _indent(text: str) -> str:
    return "\n      ".join([""] + text.splitlines())


def metrics_available() -> bool:
    """Can the daemons publish metrics (the `metrics` extra is installed)?"""
    try:
        return importlib.util.find_spec("prometheus_client") is not None
    except (ImportError, ValueError):
        return False


def _run(argv: Sequence[str], timeout: float, env: Mapping[str, str]) -> CommandResult:
    """Run a command to its end; killed whole on a timeout or when the demo is interrupted
    (Ctrl-C, SIGTERM), so it never outlives the demo."""
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            env=dict(env), start_new_session=True)
    error = None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        error = f"no answer within {timeout:g}s"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    return CommandResult(tuple(argv), None if error else proc.returncode, out, err,
                         time.monotonic() - start, error)


def _keep_writing(pg: Any, seconds: float) -> None:
    """Commit a row every 0.2 s on the primary for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pg.write(1)
        time.sleep(0.2)


def run_demo(quick: bool = False, verbose: bool = False, *, stream: Optional[TextIO] = None,
             python: str = sys.executable, temp_root: Optional[str] = None,
             pg_version: Optional[str] = None) -> int:
    """Entry point of `ha-watchdog demo`; the exit status (see the module docstring).

    `pg_version` ("9.5", "10", ... "18") runs the cluster on that PostgreSQL major version
    (builds from `.ci/pg-builds`); the default is the system's packaged server.
    """
    console = Console(stream or sys.stdout)
    missing = missing_prerequisites(pg_version)
    if missing:
        console.write("ha-watchdog demo cannot run here; missing:", force=True)
        for item in missing:
            console.write(f"  - {item}", force=True)
        console.write("Install them with `.ci/setup` as root from a checkout (Debian 12: "
                      "apt-get install postgresql daemontools), then run the demo again.",
                      force=True)
        return EXIT_MISSING

    mode = "quick form" if quick else "about a minute"
    console.write(console.paint(f"ha-watchdog demo: a two-node cluster on loopback ({mode})",
                                "bold"))
    demo = Demo(console, quick=quick, verbose=verbose, python=python, temp_root=temp_root,
                pg_version=pg_version)
    previous: Dict[int, Any] = {}
    in_main = threading.current_thread() is threading.main_thread()

    def on_signal(signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM:
            raise Interrupted(EXIT_TERMINATED, "SIGTERM")
        raise Interrupted(EXIT_INTERRUPTED, "Ctrl-C")

    if in_main:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    code = EXIT_FAILED
    try:
        code = demo.run()
    except Interrupted as exc:
        console.write(f"\ninterrupted ({exc.what}); cleaning up", force=True)
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - a lab failure is reported, then cleaned up
        console.write(f"\ndemo failed: {type(exc).__name__}: {exc}", force=True)
        code = EXIT_FAILED
    finally:
        if in_main:  # a second Ctrl-C must not cut the cleanup short
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
        try:
            demo.cleanup()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return code
