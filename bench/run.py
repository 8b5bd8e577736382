#!/usr/bin/env python3
"""The benchmark (issue 5): cost per run, footprint and time to detect, next to check_postgres.

One command sets up a real PostgreSQL primary + streaming standby on loopback, a real
daemontools tree of hvmail-like services, a fake /proc/drbd per node and a local alert
receiver, then measures in one run:

1. `ha-watchdog --once` (secondary and primary role) against `check_postgres
   --action=hot_standby_delay` on the same pair, plus the floors `psql -c 'select 1'` and
   `python -c 'import psycopg'`: wall time (median and spread over --runs interleaved runs),
   peak RSS and CPU time, from wait4() on each child (so one process's footprint, never the
   sum of a tree: check_postgres's psql children count as their largest, not added up).
2. The daemon in steady state at a short interval: CPU per cycle (user + sys, from
   /proc/<pid>/stat) and RSS (VmRSS) at cycle --warm and at cycle --cycles; each role again
   with `[metrics] listen` and `textfile` on, next to it (what the metrics add per cycle
   and in memory). Then, on a primary with metrics at the default 30 s interval: --scrapes
   scrapes of /metrics over loopback (wall time per scrape, response size, the daemon's
   CPU per scrape) and the `ha-watchdog maintenance on|off` round trip (command start ->
   the running daemon confirmed it).
3. Time to detect: fault injected -> alert received by the local receiver, for a stopped
   standby, a hung standby (walreceiver SIGSTOPped, TCP open), replay paused while the
   primary writes, and a crash-looping service; each next to its budget (onset + `for` +
   interval) so the overhead beyond the debounce is visible.

It prints a markdown table and writes the figures to a JSON file (bench/results.json and
bench/results.md by default). Run it as root (PostgreSQL runs as the `postgres` OS user via
runuser) from the repository's virtualenv:

    .venv/bin/python bench/run.py                    # everything, about 11 minutes
    .venv/bin/python bench/run.py --runs 5 --cycles 100 --skip-detect   # a quick look

Python children run with bytecode caches in a private PYTHONPYCACHEPREFIX (an installed
package has its .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE would compile every
module on every run and measure the compiler instead).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from lab.cluster import ClusterError, TwoNodeCluster  # noqa: E402
from lab.node import NodeDaemon, render_config  # noqa: E402
from lab.pgcluster import find_bindir  # noqa: E402
from lab.receivers import free_port  # noqa: E402
from lab.services import missing_tools  # noqa: E402
from watchdog import __version__  # noqa: E402
from watchdog.config import ReplayLagConfig, ServicesConfig, StandbysConfig  # noqa: E402
from watchdog.probes.command import run_command  # noqa: E402

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
SCHEMA = 1
MIB = 1024 * 1024

# A GreenArrow-like primary: 12 services up, the two that are down by default.
SERVICES: Dict[str, str] = {
    "hvmail-httpd": "up",
    "hvmail-studio-worker": "up",
    "hvmail-qmail-send": "up",
    "hvmail-qmail-smtpd": "up",
    "hvmail-qmail-smtpd2": "up",
    "hvmail-passenger": "up",
    "hvmail-redis": "up",
    "hvmail-bounce-processor": "up",
    "hvmail-event-processor": "up",
    "hvmail-logger": "up",
    "hvmail-scheduler": "up",
    "hvmail-clicktracker": "up",
    "hvmail-qmail-smtpd3": "normally_down",
    "hvmail-dnscache": "normally_down",
}
CRASHING_SERVICE = "hvmail-studio-worker"

# check_postgres has no default thresholds for hot_standby_delay (it refuses to run
# without one): these are Example 3 of its own manual, "bytes and time".
CHECK_POSTGRES_THRESHOLDS = ("--warning=1048576 and 2 min", "--critical=16777216 and 10 min")

# The targets of issue 5 (met in the benchmark, never asserted in timed tests).
TARGET_ONCE_RATIO = 0.8
TARGET_ONCE_RSS_MIB = 40.0
TARGET_DAEMON_CPU_MS = 5.0
TARGET_DAEMON_RSS_MIB = 45.0
TARGET_DAEMON_GROWTH_MIB = 1.0
TARGET_HUNG_S = 25.0
TARGET_BEYOND_S = 2.0

METRICS_TEXTFILE = "ha_watchdog.prom"
# Scrapes and the maintenance round trip run against a primary at the default interval, so a
# scrape meets an idle daemon (as in production) and a cycle rarely falls into a batch.
METRICS_LIVE_INTERVAL = 30.0
SCRAPE_CHUNK = 50  # scrapes per /proc reading; a chunk a cycle ran into is measured again
# What Prometheus 2.53 sends with its default scrape_protocols: OpenMetrics first, gzip.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
              "version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/2.53.1",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}
SCRAPE_CLIENTS: Tuple[Tuple[str, str, Dict[str, str]], ...] = (
    ("prometheus", "as Prometheus asks (OpenMetrics, gzip)", PROMETHEUS_HEADERS),
    ("plain", "plain GET, as curl (text format, uncompressed)", {}),
)
MAINTENANCE_APPLIED = "the running daemon applied it"

# What a daemon with metrics imports (the exporter's own imports come after, measured).
DAEMON_IMPORTS = ("import psycopg, watchdog.cli, watchdog.daemon, watchdog.runner, "
                  "watchdog.maintenance, watchdog.alerts.delivery, watchdog.exporter")

CYCLE_RE = re.compile(r"\bcycle (\d+): (\S+) (\S+) (\w+): (.*) \((\d+) ms, ")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(ClusterError):
    """The setup or a measurement is not what it must be (a benchmark of an error path)."""


# ---------------------------------------------------------------- measuring one child


@dataclass(frozen=True)
class ChildRun:
    """One finished child: wall time, CPU and peak RSS from wait4(), what it printed."""

    wall: float
    cpu: float  # user + sys of the child and the descendants it waited for
    maxrss_kib: int  # the largest single process of that tree
    returncode: Optional[int]
    stdout: str
    stderr: str
    error: Optional[str] = None


TIME = "/usr/bin/time"  # GNU time: forks from a 1 MiB image, reports its child's max RSS


def measured_run(argv: Sequence[str], env: Mapping[str, str], timeout: float) -> ChildRun:
    """Run argv once, like watchdog.probes.command.run_command, but reaped with wait4().

    run_command reaps through subprocess (no rusage); here the rusage of this one child is
    the point. Linux counts a process's pre-exec image in its ru_maxrss, and a child of
    this benchmark starts as a copy of a 40 MiB Python, so the peak RSS comes from GNU time
    (`-f %M`), which forks the command from its own 1 MiB image; wall time and CPU (user +
    sys of the whole tree, time's own share is negligible) come from wait4() here. Output
    goes to temporary files (no pipe to drain while waiting); the child has its own
    process group, killed whole at the deadline by a timer thread.
    """
    use_time = os.access(TIME, os.X_OK)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(prefix="bench-rss-") as rss_file:
        full = ([TIME, "-f", "%M", "-o", rss_file.name] if use_time else []) + list(argv)
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                full, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(env),
                start_new_session=True,
            )
        except OSError as exc:
            return ChildRun(0.0, 0.0, 0, None, "", "", f"cannot run {argv[0]}: {exc}")
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in its group
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
        maxrss = int(usage.ru_maxrss)  # an upper bound without GNU time
        if use_time:
            lines = rss_file.read().decode("utf-8", "replace").split()
            maxrss = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return ChildRun(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_kib=maxrss,
        returncode=None if expired.is_set() else proc.returncode,
        stdout=stdout,
        stderr=stderr,
        error=f"timed out after {timeout:g}s (killed)" if expired.is_set() else None,
    )


def spread(values: Sequence[float], digits: int = 4) -> Dict[str, Any]:
    """Median, quartiles, min, max of a sample (the spread the README quotes)."""
    data = sorted(values)
    if not data:
        return {"n": 0}
    if len(data) > 1:
        q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
    else:
        q1 = q3 = data[0]
    return {
        "n": len(data),
        "median": round(statistics.median(data), digits),
        "q1": round(q1, digits),
        "q3": round(q3, digits),
        "min": round(data[0], digits),
        "max": round(data[-1], digits),
    }


# ---------------------------------------------------------------- /proc readings


def proc_reading(pid: int) -> Dict[str, float]:
    """CPU seconds (own and waited-for children) and memory (MiB) of a live process."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17.
    utime, stime, cutime, cstime = (int(v) / tick for v in fields[11:15])
    memory: Dict[str, float] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                memory[key] = int(value.split()[0]) / 1024.0
    return {
        "at": time.monotonic(),
        "cpu": utime + stime,
        "children_cpu": cutime + cstime,
        "rss_mib": memory.get("VmRSS", 0.0),
        "hwm_mib": memory.get("VmHWM", 0.0),
    }


# ---------------------------------------------------------------- the lab


def child_env(pycache: str) -> Dict[str, str]:
    """Environment for every measured child: bytecode caches on, no systemd/journal hints."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
                "INVOCATION_ID"):
        env.pop(key, None)
    env["PYTHONPYCACHEPREFIX"] = pycache
    env.setdefault("LC_ALL", "C")
    return env


def duration_text(seconds: float) -> str:
    """A TOML duration string for the config ("50ms", "10s")."""
    if seconds < 1 and abs(seconds * 1000 - round(seconds * 1000)) < 1e-9:
        return f"{int(round(seconds * 1000))}ms"
    return f"{seconds:g}s"


class Lab(TwoNodeCluster):
    """Everything the benchmark runs against (lab.cluster's two-node cluster, nodes named by
    their role); `close()` removes all of it."""

    def __init__(self) -> None:
        super().__init__(nodes=("primary", "secondary"), services=SERVICES,
                         prefix="ha-watchdog-bench-")
        self.env: Dict[str, str] = {}

    @property
    def work(self) -> str:
        return self.base

    def open(self) -> Lab:
        try:
            self.make_base()
            self.env = child_env(os.path.join(self.work, "pycache"))
            log("starting PostgreSQL primary + streaming standby on loopback")
            self._pg_dir = tempfile.mkdtemp(prefix="ha-watchdog-bench-pg-")
            self.start_postgres()
            log(f"starting svscan with {len(SERVICES)} services")
            self.start_services()
            self.place_nodes()
            self.start_receiver()
            self.warm_bytecode()
            self.wait_services_settled()
        except BaseException:
            self.close()
            raise
        return self

    def warm_bytecode(self) -> None:
        """Compile watchdog, psycopg and apprise into the private pycache first, as an
        installed package would have them (else the first runs measure the compiler)."""
        import apprise
        import prometheus_client
        import psycopg

        dirs = [os.path.join(ROOT, "watchdog"), os.path.dirname(psycopg.__file__),
                os.path.dirname(apprise.__file__), os.path.dirname(prometheus_client.__file__)]
        result = run_command([sys.executable, "-m", "compileall", "-q", *dirs], timeout=300,
                             env=self.env)
        if not result.ok:
            log(f"compileall: {result.error or result.returncode}: {result.stderr[-500:]}")
        # The standard library goes to the private pycache too: import what the daemon and
        # its metrics exporter use once, so that no measured daemon compiles it (+1-2 MiB).
        result = run_command([sys.executable, "-c", DAEMON_IMPORTS], timeout=120, env=self.env)
        if not result.ok:
            log(f"import warm-up: {result.error or result.returncode}: {result.stderr[-500:]}")
        # apprise imports every plugin and its dependencies on the first add(): do it once.
        result = run_command([sys.executable, "-c", "import apprise; "
                              "apprise.Apprise().add('json://127.0.0.1:9/')"], timeout=120,
                             env=self.env)
        if not result.ok:
            log(f"apprise warm-up: {result.error or result.returncode}: {result.stderr[-500:]}")

    def wait_services_settled(self, min_uptime: Optional[float] = None,
                              timeout: float = 30.0) -> None:
        """Until every up service is older than min_uptime (a young one makes the probe
        resample for seconds, which would be measured as ha-watchdog's cost)."""
        settle = ServicesConfig().min_uptime + 1 if min_uptime is None else min_uptime
        super().wait_services_settled(settle, timeout)

    def node_sections(self, role: str, name: str, state_dir: str, interval: float,
                      overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
                      alerts: bool = True) -> Dict[str, Any]:
        """A node's config: the defaults of config.example.toml except where to look."""
        assert self.tree is not None and self.receiver is not None
        sections: Dict[str, Any] = {
            "node": {"name": name},
            "daemon": {"interval": duration_text(interval), "state_dir": state_dir},
            "drbd": {"path": self.drbd[role].path, "format": "proc"},
            "postgres": {"dsn": self.dsn(role)},
            "services": {"command": self.tree.status_command()},
        }
        for section, values in (overrides or {}).items():
            sections.setdefault(section, {}).update(values)
        if alerts:
            sections["alerts.targets"] = [{"name": "receiver", "url": self.receiver.url}]
        return sections

    def write_config(self, path: str, sections: Mapping[str, Any]) -> str:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(render_config(sections))
        return path


def machine_info(bindir: str) -> Dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    pg = run_command([os.path.join(bindir, "postgres"), "--version"], timeout=10)
    cp = run_command(["check_postgres", "--version"], timeout=10)
    mem_total = None
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_total = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "mem_gib": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg.stdout.strip() or pg.error,
        "check_postgres": cp.stdout.strip() or cp.error,
        "ha_watchdog": __version__,
    }


def display_arg(arg: str) -> str:
    """An argv item for the results: a path shows only its last part (no machine paths)."""
    return os.path.basename(arg) if os.path.isabs(arg) else arg


def console_script() -> List[str]:
    """`ha-watchdog` from this interpreter's environment, else `python -m watchdog`."""
    candidate = os.path.join(os.path.dirname(sys.executable), "ha-watchdog")
    if os.access(candidate, os.X_OK):
        return [candidate]
    return [sys.executable, "-m", "watchdog"]


# ---------------------------------------------------------------- 1. --once vs check_postgres


def bench_once(lab: Lab, runs: int, warmup: int) -> Dict[str, Any]:
    """Interleaved runs of each command; every command is checked to really say OK first."""
    assert lab.pg is not None
    configs = {}
    for role, name in (("secondary", "bench-s"), ("primary", "bench-p")):
        sections = lab.node_sections(role, name, os.path.join(lab.work, f"state-{name}"), 30.0,
                                     alerts=False)
        configs[role] = lab.write_config(os.path.join(lab.work, f"once-{role}.toml"), sections)
    hw = console_script()
    primary_port, standby_port = lab.pg.port("primary"), lab.pg.port("standby")
    commands: List[Tuple[str, str, List[str], Callable[[ChildRun], bool]]] = [
        ("once_secondary", "ha-watchdog --once (secondary: drbd, postgres_role, replay_lag)",
         hw + ["--config", configs["secondary"], "--once"],
         lambda r: r.returncode == 0 and "status=OK" in r.stdout),
        ("once_primary", "ha-watchdog --once (primary: drbd, postgres_role, services, standbys)",
         hw + ["--config", configs["primary"], "--once"],
         lambda r: r.returncode == 0 and "status=OK" in r.stdout),
        ("check_postgres", "check_postgres --action=hot_standby_delay (both servers)",
         ["check_postgres", "--action=hot_standby_delay",
          "--dbhost=127.0.0.1,127.0.0.1", f"--dbport={primary_port},{standby_port}",
          "--dbuser=postgres", *CHECK_POSTGRES_THRESHOLDS],
         lambda r: r.returncode == 0 and "HOT_STANDBY_DELAY OK" in r.stdout),
        ("psql_select_1", "psql -c 'select 1' (floor)",
         ["psql", "-X", "-h", "127.0.0.1", "-p", str(standby_port), "-U", "postgres",
          "-d", "postgres", "-c", "select 1"],
         lambda r: r.returncode == 0 and "(1 row)" in r.stdout),
        ("import_psycopg", "python -c 'import psycopg' (floor)",
         [sys.executable, "-c", "import psycopg"],
         lambda r: r.returncode == 0),
    ]
    results: Dict[str, List[ChildRun]] = {key: [] for key, *_ in commands}
    outputs: Dict[str, str] = {}
    log(f"--once vs check_postgres: {warmup} warm-up + {runs} measured runs of each, interleaved")
    for key, label, argv, good in commands:
        for i in range(max(1, warmup)):
            run = measured_run(argv, lab.env, timeout=60)
            if not good(run):
                raise BenchError(
                    f"{label} did not report OK (rc {run.returncode}, {run.error or ''}):\n"
                    f"{run.stdout}{run.stderr}"
                )
            if i == 0:
                outputs[key] = (run.stdout + run.stderr).strip()
                log(f"{label}: rc {run.returncode}\n    "
                    + "\n    ".join((outputs[key] or "(no output)").splitlines()))
    for i in range(runs):
        shift = i % len(commands)  # rotate the order so no command always runs first
        for key, label, argv, good in commands[shift:] + commands[:shift]:
            run = measured_run(argv, lab.env, timeout=60)
            if not good(run):
                raise BenchError(f"{label} failed in run {i + 1}: rc {run.returncode} "
                                 f"{run.error or ''} {run.stdout}{run.stderr}")
            results[key].append(run)
    ref = statistics.median(r.wall for r in results["check_postgres"])
    ref_rss = max(r.maxrss_kib for r in results["check_postgres"])
    rows = []
    for key, label, argv, _ in commands:
        sample = results[key]
        wall = spread([r.wall for r in sample])
        rss = [r.maxrss_kib / 1024.0 for r in sample]
        rows.append({
            "key": key,
            "label": label,
            "argv": [display_arg(a) for a in argv],
            "wall_s": wall,
            "cpu_s": spread([r.cpu for r in sample]),
            "peak_rss_mib": round(max(rss), 1),
            "median_rss_mib": round(statistics.median(rss), 1),
            "ratio_wall_vs_check_postgres": round(wall["median"] / ref, 3),
            "ratio_rss_vs_check_postgres": round(max(r.maxrss_kib for r in sample) / ref_rss, 3),
            "output": outputs[key],
        })
    return {"runs": runs, "warmup": warmup, "commands": rows}


# ---------------------------------------------------------------- 2. daemon steady state


def metrics_section(work: str) -> Dict[str, Any]:
    """`[metrics]` as an operator would write it: HTTP on a free loopback port and a textfile
    next to the node's state (both rewritten/served after every cycle)."""
    return {"listen": f"127.0.0.1:{free_port()}",
            "textfile": os.path.join(work, METRICS_TEXTFILE)}


class SteadyRun:
    """One real daemon at a short interval; /proc read when it logs cycle 1, `warm`, `cycles`."""

    def __init__(self, lab: Lab, role: str, cycles: int, warm: int, interval: float,
                 metrics: bool, name: str) -> None:
        self.lab, self.role, self.cycles, self.warm = lab, role, cycles, warm
        self.interval, self.metrics = interval, metrics
        work = os.path.join(lab.work, name)
        os.makedirs(work, exist_ok=True)
        self.section = metrics_section(work) if metrics else None
        overrides = {"metrics": self.section} if self.section else None
        sections = lab.node_sections(role, name, os.path.join(work, "state"), interval,
                                     overrides)
        self.readings: Dict[int, Dict[str, float]] = {}
        self.marks = {1, warm, cycles}
        self.exposed: Dict[str, Any] = {}
        self.daemon = NodeDaemon(name, work, sections, python=sys.executable,
                                 on_line=self._on_line, env=lab.env)
        self.deadline = 0.0

    def _on_line(self, _node: str, line: str) -> None:
        match = CYCLE_RE.search(line)
        if match and int(match.group(1)) in self.marks and self.daemon.proc is not None:
            with contextlib.suppress(OSError):
                self.readings[int(match.group(1))] = proc_reading(self.daemon.proc.pid)

    def start(self) -> None:
        self.daemon.start()
        self.deadline = time.monotonic() + 60.0 + self.cycles * max(self.interval, 0.05) * 4

    def done(self) -> bool:
        """Has it logged cycle `cycles`? Raises if it died or is too slow."""
        if self.cycles in self.readings:
            return True
        if not self.daemon.running():
            raise BenchError(f"the {self.role} daemon exited:\n"
                             + "\n".join(self.daemon.log()[-20:]))
        if time.monotonic() > self.deadline:
            raise BenchError(f"the {self.role} daemon did not reach {self.cycles} cycles in "
                             "time:\n" + "\n".join(self.daemon.log()[-10:]))
        return False

    def result(self, alerts: int) -> Dict[str, Any]:
        role, warm, cycles = self.role, self.warm, self.cycles
        lines = [m for m in (CYCLE_RE.search(line) for line in self.daemon.log()) if m]
        measured = [m for m in lines if warm < int(m.group(1)) <= cycles]
        statuses = {m.group(4) for m in lines}
        checks = [part.split("=")[0] for part in lines[-1].group(5).split()] if lines else []
        readings = self.readings
        a, b = readings[warm], readings[cycles]
        n = cycles - warm
        not_ok = [m.group(0) for m in lines if m.group(4) != "ok"]
        # A raw non-OK cycle now and then is a finding (reported), not a broken setup; many
        # of them, or an alert, would mean the cost of an error path is being measured.
        if alerts or len(not_ok) > max(1, len(lines) // 100):
            raise BenchError(f"the {role} daemon was not healthy (statuses {statuses}, "
                             f"{alerts} alert(s)): a benchmark of an error path is worthless:\n"
                             + "\n".join(not_ok[:10]))
        return {
            "role": role,
            "checks": checks,
            "interval_s": self.interval,
            "cycles": cycles,
            "warm_cycle": warm,
            "cpu_ms_per_cycle": round((b["cpu"] - a["cpu"]) * 1000 / n, 3),
            "children_cpu_ms_per_cycle": round((b["children_cpu"] - a["children_cpu"]) * 1000
                                               / n, 3),
            "wall_ms_per_cycle": round((b["at"] - a["at"]) * 1000 / n, 2),
            "cycle_ms": spread([float(m.group(6)) for m in measured], 1),
            "rss_mib_first_cycle": round(readings[1]["rss_mib"], 2) if 1 in readings else None,
            "rss_mib_at_warm": round(a["rss_mib"], 2),
            "rss_mib_at_end": round(b["rss_mib"], 2),
            "rss_growth_mib": round(b["rss_mib"] - a["rss_mib"], 2),
            "peak_rss_mib": round(b["hwm_mib"], 2),
            "statuses": sorted(statuses),
            "non_ok_cycles": len(not_ok),
            "non_ok_examples": not_ok[:5],
            "alerts": alerts,
            **({"metrics": self.exposed} if self.metrics else {}),
        }


def bench_daemon(lab: Lab, role: str, cycles: int, warm: int, interval: float,
                 metrics: bool = False) -> Dict[str, Any]:
    """A real daemon at a short interval: CPU per cycle and RSS at cycle `warm` and `cycles`
    (with `metrics`, the same with `[metrics] listen` and `textfile` on)."""
    name = f"steady-{role[0]}-{int(interval * 1000)}ms" + ("-metrics" if metrics else "")
    run = SteadyRun(lab, role, cycles, warm, interval, metrics, name)
    log(f"daemon steady state ({role}{', metrics on' if metrics else ''}): interval "
        f"{duration_text(interval)}, {cycles} cycles")
    before = len(lab.arrived())
    run.start()
    try:
        while not run.done():
            time.sleep(0.05)
        if run.section is not None:
            # Both outputs really work (after the last reading: this scrape is not counted).
            run.exposed = check_metrics_outputs(run.section, run.daemon.log())
    finally:
        run.daemon.stop()
    return run.result(len(lab.arrived()) - before)


def vs_off(off: Mapping[str, Any], on: Mapping[str, Any]) -> Dict[str, Any]:
    """What the metrics-on row adds to the same role's row without metrics."""
    out = {key: round(on[key] - off[key], 3)
           for key in ("cpu_ms_per_cycle", "children_cpu_ms_per_cycle", "rss_mib_at_warm",
                       "rss_mib_at_end", "rss_growth_mib", "peak_rss_mib")}
    out["cycle_ms_median"] = round(on["cycle_ms"]["median"] - off["cycle_ms"]["median"], 1)
    if on["rss_mib_first_cycle"] is not None and off["rss_mib_first_cycle"] is not None:
        out["rss_mib_first_cycle"] = round(on["rss_mib_first_cycle"]
                                           - off["rss_mib_first_cycle"], 3)
    return out


# ---------------------------------------------------------------- 2b. metrics: scrapes, maintenance


@dataclass(frozen=True)
class Scrape:
    wall: float
    status: int
    content_type: str
    wire_bytes: int  # the response body as sent (gzip when asked for)
    body: bytes  # uncompressed


def scrape(listen: str, headers: Mapping[str, str], timeout: float = 10.0) -> Scrape:
    """GET /metrics on a new connection (the server speaks HTTP/1.0: one per scrape)."""
    host, _, port = listen.rpartition(":")
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/metrics", headers=dict(headers))
        response = conn.getresponse()
        raw = response.read()
        wall = time.perf_counter() - start
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"cannot scrape http://{listen}/metrics: {exc!r}") from exc
    finally:
        conn.close()
    gzipped = response.getheader("Content-Encoding", "") == "gzip"
    return Scrape(wall, response.status, response.getheader("Content-Type", ""), len(raw),
                  gzip.decompress(raw) if gzipped else raw)


def _good_scrape(result: Scrape) -> bool:
    return result.status == 200 and b"ha_watchdog_cycles_total" in result.body


def check_metrics_outputs(section: Mapping[str, Any], log_lines: Sequence[str]
                          ) -> Dict[str, Any]:
    """Both metrics outputs of a running daemon serve its series; their sizes (else raise)."""
    errors = [line for line in log_lines if "metrics: cannot" in line
              or "metrics: update failed" in line]
    try:
        result = scrape(section["listen"], {})
        with open(section["textfile"], "rb") as handle:
            text = handle.read()
    except (OSError, BenchError) as exc:
        raise BenchError(f"metrics not served/written: {exc}\n" + "\n".join(errors[:5])
                         ) from exc
    if errors or not _good_scrape(result) or b"ha_watchdog_cycles_total" not in text:
        raise BenchError(f"metrics not working (HTTP {result.status}, textfile {len(text)} B):\n"
                         + "\n".join(errors[:5] or log_lines[-10:]))
    return {"listen": section["listen"], "textfile": os.path.basename(section["textfile"]),
            "textfile_bytes": len(text), "scrape_bytes": len(result.body),
            "series": sum(1 for line in result.body.splitlines()
                          if line and not line.startswith(b"#"))}


class CycleLog:
    """The daemon's cycle lines as (start, end, status, in maintenance), monotonic times,
    from its log as it comes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cycles: List[Tuple[float, float, str, bool]] = []

    def on_line(self, _node: str, line: str) -> None:
        match = CYCLE_RE.search(line)
        if match:
            end = time.monotonic()
            with self._lock:
                self.cycles.append((end - int(match.group(6)) / 1000.0, end, match.group(4),
                                    "MAINTENANCE until" in line))

    def snapshot(self) -> List[Tuple[float, float, str, bool]]:
        with self._lock:
            return list(self.cycles)

    def wait(self, count: int, daemon: NodeDaemon, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < count:
            if not daemon.running() or time.monotonic() > deadline:
                raise BenchError(f"the metrics daemon logged no cycle {count}:\n"
                                 + "\n".join(daemon.log()[-10:]))
            time.sleep(0.02)

    def overlapping(self, t0: float, t1: float) -> int:
        return sum(1 for start, end, *_ in self.snapshot() if start <= t1 and end >= t0)


def scrape_batch(pid: int, listen: str, headers: Mapping[str, str], count: int,
                 cycles: CycleLog) -> Dict[str, Any]:
    """`count` scrapes in chunks, the daemon's CPU read around each chunk; a chunk that a
    cycle overlapped is thrown away and scraped again (at most `count` chunks more)."""
    kept: List[Scrape] = []
    cpu = 0.0
    discarded = 0
    while len(kept) < count:
        size = min(SCRAPE_CHUNK, count - len(kept))
        t0 = time.monotonic()
        before = proc_reading(pid)
        chunk = [scrape(listen, headers) for _ in range(size)]
        after = proc_reading(pid)
        t1 = time.monotonic()
        bad = [r for r in chunk if not _good_scrape(r)]
        if bad:
            raise BenchError(f"scrape failed: HTTP {bad[0].status}: {bad[0].body[:300]!r}")
        time.sleep(0.5)  # a cycle that started inside the chunk has logged its line by now
        if cycles.overlapping(t0, t1) and discarded < count:
            discarded += 1
            continue
        kept.extend(chunk)
        cpu += after["cpu"] - before["cpu"]
    return {
        "scrapes": len(kept),
        "wall_ms": spread([r.wall * 1000 for r in kept], 3),
        "wire_bytes": int(statistics.median(r.wire_bytes for r in kept)),
        "body_bytes": int(statistics.median(len(r.body) for r in kept)),
        "content_type": kept[0].content_type,
        "daemon_cpu_ms_per_scrape": round(cpu * 1000 / len(kept), 3),
        "chunks_discarded": discarded,
    }


def maintenance_round_trips(lab: Lab, daemon: NodeDaemon, cycles: CycleLog, runs: int
                            ) -> Dict[str, Any]:
    """`maintenance on --for 1h` then `off`, `runs` times after one unmeasured pair (the
    first start message's send is the first of its kind); `maintenance status` as the floor."""
    base = console_script() + ["--config", daemon.config_path, "maintenance"]
    commands = {
        "on": base + ["on", "--for", "1h", "--reason", "bench"],
        "off": base + ["off"],
        "status": base + ["status"],
    }
    samples: Dict[str, List[Dict[str, Any]]] = {key: [] for key in commands}
    log(f"maintenance round trip: 1 warm-up + {runs} runs of on, off, status")
    for index in range(runs + 1):
        for key, argv in commands.items():
            # Spread the request over the daemon's 1 s poll of the request file.
            time.sleep(0.2 + (index + 0.5) / (runs + 1))
            seen = len(cycles.snapshot())
            t0 = time.monotonic()
            run = measured_run(argv, lab.env, timeout=60)
            # The cycle that applied it: the first one logged in (or out of) maintenance.
            applied = [end for _, end, _, quiet in cycles.snapshot()[seen:]
                       if end >= t0 and quiet == (key == "on")]
            confirmed = key == "status" or MAINTENANCE_APPLIED in run.stdout
            if run.returncode != 0 or not confirmed:
                raise BenchError(f"maintenance {key}: rc {run.returncode} {run.error or ''}\n"
                                 f"{run.stdout}{run.stderr}")
            if index == 0:
                log(f"maintenance {key}: rc {run.returncode}: "
                    + (run.stdout.strip().splitlines() or ["(no output)"])[-1])
                continue
            samples[key].append({
                "wall_s": round(run.wall, 3),
                "cpu_s": round(run.cpu, 3),
                "peak_rss_mib": round(run.maxrss_kib / 1024.0, 1),
                # When the daemon logged the cycle that applied it, from the command's start.
                "daemon_cycle_s": round(applied[0] - t0, 3)
                if applied and key != "status" else None,
            })
    out: Dict[str, Any] = {"runs": runs, "commands": []}
    for key, argv in commands.items():
        rows = samples[key]
        out["commands"].append({
            "key": key,
            "argv": ["ha-watchdog"] + [display_arg(a) for a in argv[len(console_script()):]],
            "wall_s": spread([r["wall_s"] for r in rows], 3),
            "cpu_s": spread([r["cpu_s"] for r in rows], 3),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
            "daemon_cycle_s": spread([r["daemon_cycle_s"] for r in rows
                                      if r["daemon_cycle_s"] is not None], 3),
            "runs": rows,
        })
    return out


# The exporter's per-cycle work in a child of its own, timed call by call: what the end-to-end
# difference of two daemon runs measures too, without their run-to-run noise.
UPDATE_SCRIPT = r"""
import json, sys, time


def rss():
    with open("/proc/self/status") as handle:
        return next(int(l.split()[1]) for l in handle if l.startswith("VmRSS:")) / 1024.0


import psycopg, watchdog.cli, watchdog.daemon, watchdog.runner, watchdog.maintenance
import watchdog.alerts.delivery
from watchdog.config import MetricsConfig
from watchdog.model import CheckResult, Status
before = rss()
from watchdog.exporter import MetricsExporter
from watchdog.metrics import MetricsView, families
from watchdog.statefile import write_atomic
from prometheus_client import generate_latest
imported = rss()

report = json.load(open(sys.argv[1]))
path, calls = sys.argv[2], int(sys.argv[3])
checks = [CheckResult(c["name"], Status.parse(c["status"]), c["summary"], c["details"])
          for c in report["checks"]]
exporter = MetricsExporter(MetricsConfig(listen=None, textfile=path), report["node"])


def view(i):
    return MetricsView(node=report["node"], version="bench", role=report["role"],
                       checks=checks, confirmed={c.name: c.status.label for c in checks},
                       deliveries={("receiver", "delivered"): 1}, cycle_duration=0.01,
                       last_cycle=time.time(), cycles=i)


exporter.update(view(0))
body = generate_latest(exporter.registry)


def timed(fn):
    for i in range(max(1, calls // 10)):
        fn(i)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        fn(i)
    return {"cpu_ms": round((time.process_time() - cpu) * 1000 / calls, 4),
            "wall_ms": round((time.perf_counter() - wall) * 1000 / calls, 4)}


print(json.dumps({
    "calls": calls, "textfile_bytes": len(body),
    "import_rss_mib": round(imported - before, 2),
    "update": timed(lambda i: exporter.update(view(i))),
    "families": timed(lambda i: families(view(i))),
    "generate_latest": timed(lambda i: generate_latest(exporter.registry)),
    "write_atomic": timed(lambda i: write_atomic(path, body, 0o644, make_dirs=False)),
}))
"""


def bench_exporter_update(lab: Lab, config: str, calls: int) -> Dict[str, Any]:
    """`MetricsExporter.update()` (what the daemon calls after every cycle, textfile only)
    `calls` times on the view of a real `--once --json` of that config, in a child process:
    CPU and wall time per call, split into its parts, and the RSS of the import."""
    once = run_command(console_script() + ["--config", config, "--once", "--json"],
                       timeout=60, env=lab.env)
    work = os.path.join(lab.work, "update")
    os.makedirs(work, exist_ok=True)
    report = os.path.join(work, "once.json")
    with open(report, "w") as handle:
        handle.write(once.stdout)
    try:
        if once.returncode != 0 or json.loads(once.stdout)["status"] != "ok":
            raise ValueError(f"rc {once.returncode}")
    except (ValueError, KeyError) as exc:
        raise BenchError(f"--once --json did not report OK ({exc}):\n{once.stdout}"
                         f"{once.stderr}") from exc
    log(f"metrics: MetricsExporter.update() x {calls} in a child process")
    result = run_command([sys.executable, "-c", UPDATE_SCRIPT, report,
                          os.path.join(work, METRICS_TEXTFILE), str(calls)],
                         timeout=300, env=dict(lab.env, PYTHONPATH=ROOT))
    try:
        return dict(json.loads(result.stdout.strip().splitlines()[-1]), role="primary")
    except (ValueError, IndexError) as exc:
        raise BenchError(f"exporter update timing failed: {result.error or result.returncode}"
                         f"\n{result.stderr[-2000:]}") from exc


def bench_metrics_live(lab: Lab, scrapes: int, warmup: int, maintenance_runs: int,
                       update_calls: int) -> Dict[str, Any]:
    """A primary with metrics at the default interval: scrapes, then maintenance on/off."""
    name = "metrics-p-30s"
    work = os.path.join(lab.work, name)
    os.makedirs(work, exist_ok=True)
    section = metrics_section(work)
    sections = lab.node_sections("primary", name, os.path.join(work, "state"),
                                 METRICS_LIVE_INTERVAL, {"metrics": section})
    cycles = CycleLog()
    daemon = NodeDaemon(name, work, sections, python=sys.executable, on_line=cycles.on_line,
                        env=lab.env)
    log(f"metrics: {scrapes} scrapes per client of a primary at the "
        f"{METRICS_LIVE_INTERVAL:g} s interval")
    out: Dict[str, Any] = {"role": "primary", "interval_s": METRICS_LIVE_INTERVAL}
    with daemon:
        cycles.wait(1, daemon, 60.0)
        if cycles.snapshot()[0][2] != "ok":
            raise BenchError("the metrics daemon's first cycle was not OK:\n"
                             + "\n".join(daemon.log()[-10:]))
        assert daemon.proc is not None
        pid = daemon.proc.pid
        out["outputs"] = check_metrics_outputs(section, daemon.log())
        out["rss_mib_before_scrapes"] = round(proc_reading(pid)["rss_mib"], 2)
        clients = []
        for key, label, headers in SCRAPE_CLIENTS:
            for _ in range(max(1, warmup)):
                if not _good_scrape(scrape(section["listen"], headers)):
                    raise BenchError(f"scrape ({key}) did not return the series")
            row = scrape_batch(pid, section["listen"], headers, scrapes, cycles)
            log(f"  {key}: median {row['wall_ms']['median']:.2f} ms, "
                f"{row['wire_bytes']} B, daemon CPU {row['daemon_cpu_ms_per_scrape']} ms/scrape")
            clients.append({"key": key, "label": label, "headers": dict(headers), **row})
        out["scrape"] = clients
        out["rss_mib_after_scrapes"] = round(proc_reading(pid)["rss_mib"], 2)
        out["update"] = bench_exporter_update(lab, daemon.config_path, update_calls)
        out["maintenance"] = (maintenance_round_trips(lab, daemon, cycles, maintenance_runs)
                              if maintenance_runs > 0 else None)
        if not daemon.running():
            raise BenchError("the metrics daemon exited:\n" + "\n".join(daemon.log()[-10:]))
    return out


# ---------------------------------------------------------------- 3. time to detect


@dataclass
class Scenario:
    key: str
    label: str
    role: str
    check: str
    interval: float
    for_s: float
    onset_s: float  # worst-case time for the fault to become visible to the check
    onset_note: str
    overrides: Dict[str, Dict[str, Any]]
    inject: Callable[[Lab], Dict[str, Any]]
    heal: Callable[[Lab], None]


def _stop_standby(lab: Lab) -> Dict[str, Any]:
    assert lab.pg is not None
    lab.pg.stop_standby()
    return {}


def _start_standby(lab: Lab) -> None:
    assert lab.pg is not None
    lab.pg.start_standby()
    lab.wait_fresh_reply()


def _hang_standby(lab: Lab) -> Dict[str, Any]:
    assert lab.pg is not None
    age = lab.reply_age()
    lab.pg.freeze_walreceiver()
    limit = StandbysConfig().max_reply_age
    # The check sees it once the last reply is older than max_reply_age.
    return {"reply_age_at_fault_s": round(age or 0.0, 3),
            "onset_s": round(max(0.0, limit - (age or 0.0)), 3)}


def _thaw_standby(lab: Lab) -> None:
    assert lab.pg is not None
    lab.pg.thaw_walreceiver()
    lab.pg.heal()
    lab.wait_fresh_reply()


class _Writer:
    """The primary keeps writing while replay is paused (a row every 0.2 s)."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        assert self.lab.pg is not None
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                self.lab.pg.write(1)
            self.stop.wait(0.2)


_writers: List[_Writer] = []


def _pause_replay(lab: Lab) -> Dict[str, Any]:
    assert lab.pg is not None
    lab.pg.pause_replay()
    writer = _Writer(lab)
    writer.thread.start()
    _writers.append(writer)
    return {}


def _resume_replay(lab: Lab) -> None:
    assert lab.pg is not None
    while _writers:
        writer = _writers.pop()
        writer.stop.set()
        writer.thread.join(5)
    lab.pg.resume_replay()
    lab.pg.wait_replayed()
    lab.wait_fresh_reply()


def _crashloop(lab: Lab) -> Dict[str, Any]:
    assert lab.tree is not None
    lab.tree.make_crashloop(CRASHING_SERVICE)
    return {}


def _heal_service(lab: Lab) -> None:
    assert lab.tree is not None
    lab.tree.make_healthy(CRASHING_SERVICE)
    lab.wait_services_settled()


def scenarios(interval: float, default_interval_runs: int) -> List[Tuple[Scenario, Optional[int]]]:
    """The four faults of issue 5 (and the hung standby again at the default interval)."""
    standbys = StandbysConfig()
    lag = ReplayLagConfig()
    services = ServicesConfig()
    out: List[Tuple[Scenario, Optional[int]]] = [
        (Scenario(
            "standby_stopped", "standby stopped (pg_ctl stop -m fast)", "primary", "standbys",
            # A missing standby is held for reconnect_grace too (a reconnect is not paged).
            interval, max(standbys.for_, standbys.reconnect_grace), 0.0,
            "the walsender row goes at once",
            {}, _stop_standby, _start_standby), None),
        (Scenario(
            "standby_hung", "standby hung, TCP open (walreceiver SIGSTOP)", "primary",
            "standbys", interval, standbys.for_, standbys.max_reply_age,
            "max_reply_age minus the reply age at the fault (worst case shown)",
            {}, _hang_standby, _thaw_standby), None),
        (Scenario(
            "replay_paused", "replay paused while the primary writes", "secondary",
            "replay_lag", interval, interval, 0.0, "the pause itself is a WARNING",
            {"replay_lag": {"for": duration_text(interval)}}, _pause_replay, _resume_replay),
         None),
        (Scenario(
            "service_crashloop", "service killed and crash-looping (svc -k, run exits 1)",
            "primary", "services", interval, interval, 0.0,
            "one cycle's svstat samples (1.5 s apart) show the new pid",
            {"services": {"for": duration_text(interval)}}, _crashloop, _heal_service), None),
    ]
    if default_interval_runs > 0:
        default = 30.0
        out.append((Scenario(
            "standby_hung_default_interval", "standby hung, TCP open, default 30 s interval",
            "primary", "standbys", default, standbys.for_, standbys.max_reply_age,
            "as above", {}, _hang_standby, _thaw_standby), default_interval_runs))
    assert lag.for_ > 0 and services.for_ > 0  # the defaults we shorten above exist
    return out


def _cycle_lines(stamped: Sequence[Tuple[float, str]]) -> List[Dict[str, Any]]:
    """The daemon's cycle summaries with when they were logged and when the cycle began."""
    out = []
    for at, line in stamped:
        match = CYCLE_RE.search(line)
        if match:
            checks = dict(part.split("=", 1) for part in match.group(5).split() if "=" in part)
            out.append({"n": int(match.group(1)), "at": at,
                        "start": at - int(match.group(6)) / 1000.0, "checks": checks})
    return out


def detect_once(lab: Lab, sc: Scenario, index: int, runs: int) -> Dict[str, Any]:
    """One fault: fresh daemon, fault at a spread phase of its cycle, wait for the alert."""
    name = f"d{index}-{sc.role[0]}"
    work = os.path.join(lab.work, f"detect-{sc.key}-{index}")
    os.makedirs(work, exist_ok=True)
    sections = lab.node_sections(sc.role, name, os.path.join(work, "state"), sc.interval,
                                 sc.overrides)
    stamped: List[Tuple[float, str]] = []
    lock = threading.Lock()

    def on_line(_node: str, line: str) -> None:
        with lock:
            stamped.append((time.monotonic(), line))

    def lines() -> List[Dict[str, Any]]:
        with lock:
            return _cycle_lines(list(stamped))

    title = f"[{name}] {sc.check}"
    daemon = NodeDaemon(name, work, sections, python=sys.executable, on_line=on_line,
                        env=lab.env)
    result: Dict[str, Any] = {}
    with daemon:
        deadline = time.monotonic() + 3 * sc.interval + 30
        while not any(c["checks"] and all(v == "ok" for v in c["checks"].values())
                      for c in lines()):
            if time.monotonic() > deadline or not daemon.running():
                raise BenchError(f"{sc.key}: no healthy first cycle:\n"
                                 + "\n".join(daemon.log()[-10:]))
            time.sleep(0.02)
        first_ok = [c for c in lines() if all(v == "ok" for v in c["checks"].values())][0]
        # Spread the fault over the cycle: run k of n at (k + 0.5) / n of the interval.
        phase = (index + 0.5) / runs * sc.interval
        time.sleep(max(0.0, first_ok["start"] + phase - time.monotonic()))
        seen_before = len(lab.arrived())
        t0 = time.monotonic()
        info = sc.inject(lab)
        injected = time.monotonic() - t0
        onset = float(info.pop("onset_s", 0.0 if sc.onset_s == 0 else sc.onset_s))
        budget = onset + sc.for_s + sc.interval
        wait_until = time.monotonic() + budget + 30
        arrival = None
        while arrival is None and time.monotonic() < wait_until:
            for at, msg in lab.arrived()[seen_before:]:
                if msg.get("title") == title and str(msg.get("message", "")).startswith("PROBLEM"):
                    arrival = (at, msg)
                    break
            else:
                time.sleep(0.01)
        if arrival is None:
            result = {"error": f"no PROBLEM alert for {title} within {budget + 30:g}s",
                      "log_tail": daemon.log()[-10:]}
        else:
            at, msg = arrival
            time.sleep(0.3)  # let the delivery thread finish: RSS once the send is done
            with contextlib.suppress(OSError):
                result["rss_mib_after_alert"] = round(
                    proc_reading(daemon.proc.pid)["rss_mib"], 2)  # type: ignore[union-attr]
            with lock:
                logged = list(stamped)
            cycles = [c for c in _cycle_lines(logged) if c["at"] >= t0]
            bad = [c for c in cycles if c["checks"].get(sc.check, "ok") != "ok"]
            # The cycle that raised it: the first summary after its "alert PROBLEM" line.
            raised = [t for t, line in logged if f"alert PROBLEM: {title}" in line]
            after = [c for c in cycles if raised and c["at"] >= raised[0]]
            alert_cycle = after[0] if after else None
            result.update({
                "detect_s": round(at - t0, 3),
                "inject_s": round(injected, 3),
                "onset_s": round(onset, 3),
                "budget_s": round(budget, 3),
                "beyond_budget_s": round(at - t0 - budget, 3),
                "first_seen_s": round(bad[0]["start"] - t0, 3) if bad else None,
                "alert_cycle_start_s": round(alert_cycle["start"] - t0, 3)
                if alert_cycle else None,
                "processing_s": round(at - alert_cycle["start"], 3) if alert_cycle else None,
                # What the worst phase adds beyond onset + for + interval: the alerting
                # cycle's own time and delivery, plus any cycle the debounce waited beyond
                # `for` (phase-independent, unlike beyond_budget_s).
                "overhead_s": round(
                    at - alert_cycle["start"]
                    + max(0.0, alert_cycle["start"] - bad[0]["start"] - sc.for_s - 0.5), 3)
                if alert_cycle and bad else None,
                "message": str(msg.get("message", "")).splitlines()[0][:200],
            })
            result.update(info)
    sc.heal(lab)
    return result


def bench_detect(lab: Lab, interval: float, runs: int, default_interval_runs: int
                 ) -> List[Dict[str, Any]]:
    out = []
    for sc, own_runs in scenarios(interval, default_interval_runs):
        n = own_runs if own_runs is not None else runs
        log(f"time to detect: {sc.label}, interval {sc.interval:g}s, for {sc.for_s:g}s, "
            f"{n} run(s)")
        samples = []
        for index in range(n):
            sample = detect_once(lab, sc, index, n)
            log(f"  run {index + 1}: " + (f"alert after {sample['detect_s']:.2f}s "
                                          f"(budget {sample['budget_s']:.1f}s)"
                                          if "detect_s" in sample else sample["error"]))
            samples.append(sample)
        good = [s for s in samples if "detect_s" in s]
        out.append({
            "key": sc.key,
            "label": sc.label,
            "node": sc.role,
            "check": sc.check,
            "interval_s": sc.interval,
            "for_s": sc.for_s,
            "onset_worst_s": sc.onset_s,
            "onset_note": sc.onset_note,
            "budget_worst_s": sc.onset_s + sc.for_s + sc.interval,
            "overrides": sc.overrides,
            "detect_s": spread([s["detect_s"] for s in good], 3),
            "processing_s": spread([s["processing_s"] for s in good
                                    if s.get("processing_s") is not None], 3),
            "max_beyond_budget_s": max((s["beyond_budget_s"] for s in good), default=None),
            "max_overhead_s": max((s["overhead_s"] for s in good
                                   if s.get("overhead_s") is not None), default=None),
            "rss_mib_after_alert": max((s.get("rss_mib_after_alert", 0.0) for s in good),
                                       default=None),
            "errors": len(samples) - len(good),
            "runs": samples,
        })
    return out


# ---------------------------------------------------------------- targets and output


def judge(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each target of issue 5 with the measured value and met / missed / not measured."""
    out: List[Dict[str, Any]] = []

    def add(name: str, target: str, value: Any, met: Optional[bool], note: str = "") -> None:
        out.append({"target": name, "limit": target, "value": value, "met": met, "note": note})

    once = {row["key"]: row for row in (results.get("once") or {}).get("commands", [])}
    for key in ("once_secondary", "once_primary"):
        if key in once:
            ratio = once[key]["ratio_wall_vs_check_postgres"]
            add(f"{key}: median wall vs check_postgres", f"<= {TARGET_ONCE_RATIO} x", ratio,
                ratio <= TARGET_ONCE_RATIO)
            rss = once[key]["peak_rss_mib"]
            add(f"{key}: peak RSS", f"<= {TARGET_ONCE_RSS_MIB:g} MiB", rss,
                rss <= TARGET_ONCE_RSS_MIB)
    metrics_rows = (results.get("metrics") or {}).get("daemon", [])
    for row in list(results.get("daemon", [])) + list(metrics_rows):
        role = f"{row['role']} @ {duration_text(row['interval_s'])}"
        if row.get("metrics"):
            role += ", metrics on"
        add(f"daemon {role}: CPU per cycle", f"<= {TARGET_DAEMON_CPU_MS:g} ms",
            row["cpu_ms_per_cycle"], row["cpu_ms_per_cycle"] <= TARGET_DAEMON_CPU_MS,
            f"+{row['children_cpu_ms_per_cycle']} ms in child processes (svstat)")
        add(f"daemon {role}: RSS", f"<= {TARGET_DAEMON_RSS_MIB:g} MiB", row["rss_mib_at_end"],
            row["rss_mib_at_end"] <= TARGET_DAEMON_RSS_MIB, "before any alert")
        add(f"daemon {role}: RSS growth cycle {row['warm_cycle']} -> {row['cycles']}",
            f"< {TARGET_DAEMON_GROWTH_MIB:g} MiB", row["rss_growth_mib"],
            row["rss_growth_mib"] < TARGET_DAEMON_GROWTH_MIB)
    after_alert = [d["rss_mib_after_alert"] for d in results.get("detect", [])
                   if d.get("rss_mib_after_alert")]
    if after_alert:
        value = max(after_alert)
        add("daemon: RSS after an alert was sent", f"<= {TARGET_DAEMON_RSS_MIB:g} MiB", value,
            value <= TARGET_DAEMON_RSS_MIB, "the send ran in a child process: apprise never loads in the daemon")
    for row in results.get("detect", []):
        good = [r for r in row["runs"] if "detect_s" in r]
        overhead = row["max_overhead_s"]
        if row["key"].startswith("standby_hung"):
            # One lucky phase proves nothing: the worst case (fault just after a cycle, the
            # last reply just before the fault) must be within the target too.
            measured = max((r["detect_s"] for r in good), default=None)
            # The daemon runs an extra cycle when a standby reply is due to go stale
            # (watchdog.daemon RECHECK_*), so the worst case is the onset plus that
            # cycle's spacing, not a whole interval, whenever that comes first.
            from watchdog.daemon import RECHECK_MARGIN, RECHECK_MIN_SPACING

            recheck = row["budget_worst_s"] - row["interval_s"] + max(RECHECK_MARGIN,
                                                                      RECHECK_MIN_SPACING)
            worst = min(row["budget_worst_s"], recheck) + (overhead or 0.0)
            add(f"{row['key']}: detected within", f"<= {TARGET_HUNG_S:g} s", measured,
                None if measured is None else (measured <= TARGET_HUNG_S and not row["errors"]
                                               and worst <= TARGET_HUNG_S + TARGET_BEYOND_S),
                f"interval {row['interval_s']:g}s; worst case max_reply_age + the "
                f"re-check cycle (or the interval, if sooner) + overhead = {worst:.1f}s")
        add(f"{row['key']}: overhead beyond onset + for + interval", f"<= {TARGET_BEYOND_S:g} s",
            overhead,
            None if overhead is None else overhead <= TARGET_BEYOND_S and not row["errors"],
            "worst phase: the alerting cycle's time and delivery, plus any extra debounce "
            "cycle")
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(results: Dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['mem_gib']} GiB, Linux "
        f"{m['kernel']}; Python {m['python']}; {m['postgresql']}; {m['check_postgres']}; "
        f"ha-watchdog {m['ha_watchdog']}. Run {results['started']}, "
        f"{results['duration_s']:.0f} s.",
        "",
    ]
    once = results.get("once")
    if once:
        out += [
            f"**One check, {once['runs']} interleaved runs each** (wall time median "
            "[quartiles] min-max; peak RSS = largest process; ratio = median / "
            "check_postgres's)",
            "",
            "| command | wall median | [q1 - q3] | min - max | CPU median | peak RSS | "
            "wall ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in once["commands"]:
            w = row["wall_s"]
            out.append(
                f"| {row['label']} | {w['median'] * 1000:.0f} ms | "
                f"[{w['q1'] * 1000:.0f} - {w['q3'] * 1000:.0f}] | "
                f"{w['min'] * 1000:.0f} - {w['max'] * 1000:.0f} ms | "
                f"{row['cpu_s']['median'] * 1000:.0f} ms | {row['peak_rss_mib']:.1f} MiB | "
                f"{row['ratio_wall_vs_check_postgres']:.2f} |"
            )
        out.append("")
    daemon = results.get("daemon")
    if daemon:
        out += [
            "**Daemon, steady state** (CPU = user + sys of the daemon; children = svstat "
            "runs)",
            "",
            "| role (checks) | interval | CPU / cycle | + children | cycle median | "
            "RSS @ first | RSS @ warm | RSS @ end | growth |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in daemon:
            out.append(
                f"| {row['role']} ({', '.join(row['checks'])}) | "
                f"{row['interval_s'] * 1000:.0f} ms | {row['cpu_ms_per_cycle']:.2f} ms | "
                f"{row['children_cpu_ms_per_cycle']:.2f} ms | {row['cycle_ms']['median']:.0f} ms | "
                f"{_fmt(row['rss_mib_first_cycle'], 1)} MiB | "
                f"{row['rss_mib_at_warm']:.1f} MiB (cycle {row['warm_cycle']}) | "
                f"{row['rss_mib_at_end']:.1f} MiB (cycle {row['cycles']}) | "
                f"{row['rss_growth_mib']:+.2f} MiB |"
            )
        out.append("")
        for row in daemon:
            if row.get("non_ok_cycles"):
                out.append(f"Raw non-OK cycles ({row['role']} @ "
                           f"{duration_text(row['interval_s'])}): {row['non_ok_cycles']} of "
                           f"{row['cycles']}, e.g. `{row['non_ok_examples'][0]}`")
                out.append("")
    out += markdown_metrics(results.get("metrics"), results.get("daemon") or [])
    detect = results.get("detect")
    if detect:
        out += [
            "**Time to detect** (fault injected -> PROBLEM received by the local receiver; "
            "onset = worst-case time until the check can see it; budget = onset + `for` + "
            "interval; overhead = what the worst phase adds beyond the budget: the alerting "
            "cycle's own time, delivery, any extra debounce cycle)",
            "",
            "| fault (check) | interval | `for` | onset | budget | detect median | "
            "min - max | overhead (max) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in detect:
            d = row["detect_s"]
            runs = f" ({d['n']} run{'s' if d['n'] > 1 else ''})" if d.get("n") else " (failed)"
            out.append(
                f"| {row['label']} ({row['check']}){runs} | {row['interval_s']:g} s | "
                f"{row['for_s']:g} s | {row['onset_worst_s']:g} s | "
                f"{row['budget_worst_s']:g} s | {_fmt(d.get('median'))} s | "
                f"{_fmt(d.get('min'))} - {_fmt(d.get('max'))} s | "
                f"{_fmt(row['max_overhead_s'])} s |"
            )
        out.append("")
    targets = results.get("targets")
    if targets:
        out += ["**Targets**", "", "| target | limit | measured | |", "|---|---|---|---|"]
        for t in targets:
            verdict = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
            note = f" ({t['note']})" if t["note"] else ""
            out.append(f"| {t['target']}{note} | {t['limit']} | {_fmt(t['value'])} | "
                       f"{verdict} |")
        out.append("")
    return "\n".join(out)


def _value(row: Mapping[str, Any], key: str) -> Any:
    """row["a.b"] as row["a"]["b"]."""
    value: Any = row
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _off_on(row: Mapping[str, Any], off_row: Optional[Mapping[str, Any]], key: str, unit: str,
            digits: int) -> str:
    """"4.22 -> 4.80 ms (+0.58)": `key` without metrics, with, the difference."""
    on = _value(row, key)
    off = None if off_row is None else _value(off_row, key)
    if on is None:
        return "-"
    if off is None:
        return f"- -> {on:.{digits}f} {unit}"
    return f"{off:.{digits}f} -> {on:.{digits}f} {unit} ({on - off:+.{digits}f})"


def markdown_metrics(metrics: Optional[Mapping[str, Any]],
                     daemon: Sequence[Mapping[str, Any]]) -> List[str]:
    """The metrics section: on vs off per role, scrapes, the maintenance round trip."""
    if not metrics:
        return []
    rows = metrics.get("daemon") or []
    scrapes = metrics.get("scrape") or []
    maint = metrics.get("maintenance")
    offs = {(row["role"], row["interval_s"]): row for row in daemon}
    out = [
        "**Metrics (Prometheus)**: each daemon row above runs again right after itself, "
        "identical but for `[metrics] listen` (HTTP on a loopback port, not scraped) and "
        "`textfile`; the difference is what the metrics add per cycle (the view built after "
        "each cycle, the textfile rendered and written atomically with two fsyncs) and in "
        "memory (the prometheus_client import, the HTTP thread). Two runs of the same row "
        "differ too (the machine does not stand still), so the exporter's own per-cycle call "
        "is also timed alone, in a process of its own. Scrapes: a primary with metrics at the "
        f"{metrics.get('interval_s', METRICS_LIVE_INTERVAL):g} s interval (idle between "
        "cycles, as in production) is scraped over loopback, a new connection per scrape, "
        f"in chunks of {SCRAPE_CHUNK}; wall time as the client sees it; the daemon's CPU per "
        "scrape (its HTTP server, a new thread per request) from /proc/<pid>/stat around "
        "each chunk, divided by its scrapes (a chunk that a cycle ran into is scraped "
        "again). Maintenance: `ha-watchdog maintenance on|off` against that daemon, from the "
        "command's start until it returns (it waits for the daemon, which polls the request "
        "file every second, to apply it); `status` (no waiting) is the command's own floor.",
        "",
    ]
    if rows:
        out += [
            "| role (interval) | CPU / cycle: off -> on | cycle median | RSS @ first | "
            "RSS @ end | growth (on) | textfile |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            off = offs.get((row["role"], row["interval_s"]))
            out.append(
                f"| {row['role']} ({duration_text(row['interval_s'])}) | "
                f"{_off_on(row, off, 'cpu_ms_per_cycle', 'ms', 2)} | "
                f"{_off_on(row, off, 'cycle_ms.median', 'ms', 1)} | "
                f"{_off_on(row, off, 'rss_mib_first_cycle', 'MiB', 1)} | "
                f"{_off_on(row, off, 'rss_mib_at_end', 'MiB', 1)} (cycle {row['cycles']}) | "
                f"{row['rss_growth_mib']:+.2f} MiB | "
                f"{row['metrics']['textfile_bytes']:,} B |"
            )
        out.append("")
    update = metrics.get("update")
    if update:
        u, fam, gen, write = (update[k] for k in ("update", "families", "generate_latest",
                                                   "write_atomic"))
        out += [
            f"In a process of its own, `MetricsExporter.update()` (what the daemon calls after "
            f"each cycle; textfile only), {update['calls']} calls on the {update['role']}'s "
            f"real `--once --json` view: {u['cpu_ms']:.2f} ms CPU per call "
            f"({u['wall_ms']:.2f} ms wall): families {fam['cpu_ms']:.2f} ms, rendering "
            f"(`generate_latest`) {gen['cpu_ms']:.2f} ms, the atomic textfile write "
            f"{write['cpu_ms']:.2f} ms CPU ({write['wall_ms']:.2f} ms wall: two fsyncs). "
            f"Importing the exporter and prometheus_client: +{update['import_rss_mib']:.1f} MiB "
            "RSS.",
            "",
        ]
    if scrapes:
        out += [
            f"Scrapes of /metrics, {scrapes[0]['scrapes']} per client (daemon RSS "
            f"{_fmt(metrics.get('rss_mib_before_scrapes'), 1)} MiB before, "
            f"{_fmt(metrics.get('rss_mib_after_scrapes'), 1)} MiB after):",
            "",
            "| client | wall median | [q1 - q3] | min - max | bytes sent | body | "
            "daemon CPU / scrape |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in scrapes:
            w = row["wall_ms"]
            out.append(
                f"| {row['label']} | {w['median']:.2f} ms | [{w['q1']:.2f} - {w['q3']:.2f}] | "
                f"{w['min']:.2f} - {w['max']:.2f} ms | {row['wire_bytes']:,} B | "
                f"{row['body_bytes']:,} B | {row['daemon_cpu_ms_per_scrape']:.2f} ms |"
            )
        out.append("")
    if maint:
        out += [
            f"Maintenance round trip, {maint['runs']} run{'s' if maint['runs'] > 1 else ''} "
            "each after one warm-up (daemon applied = when the daemon logged the cycle that "
            "applied it, from the command's start):",
            "",
            "| command | wall median | min - max | daemon applied (median) | CPU median | "
            "peak RSS |",
            "|---|---|---|---|---|---|",
        ]
        for row in maint["commands"]:
            w, c, a = row["wall_s"], row["cpu_s"], row["daemon_cycle_s"]
            applied = f"{a['median']:.2f} s" if a.get("n") else "-"
            shown = [a for a in row["argv"] if a not in ("--config", "config.toml")]
            out.append(
                f"| `{' '.join(shown)}` | {w['median']:.2f} s | "
                f"{w['min']:.2f} - {w['max']:.2f} s | {applied} | "
                f"{c['median'] * 1000:.0f} ms | {row['peak_rss_mib']:.1f} MiB |"
            )
        out.append("")
    return out


# ---------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="ha-watchdog benchmark: --once vs check_postgres, daemon cost (with and "
                    "without [metrics]), /metrics scrapes, the maintenance round trip, time to "
                    "detect. Needs root, PostgreSQL server binaries, daemontools, "
                    "check_postgres, prometheus_client (the metrics extra).",
    )
    parser.add_argument("--runs", type=int, default=20,
                        help="measured runs of each one-shot command (default 20)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="unmeasured runs of each one-shot command first (default 2)")
    parser.add_argument("--cycles", type=int, default=1000,
                        help="daemon cycles in the steady-state part (default 1000)")
    parser.add_argument("--warm", type=int, default=100,
                        help="cycle at which the steady-state baseline is read (default 100, "
                             "at most --cycles / 2)")
    parser.add_argument("--interval", type=float, default=0.05,
                        help="daemon interval in the steady-state part, seconds (default 0.05)")
    parser.add_argument("--cold-cycles", type=int, default=40,
                        help="primary daemon cycles measured at --cold-interval as well "
                             "(default 40; 0 skips)")
    parser.add_argument("--cold-interval", type=float, default=1.0,
                        help="interval of that cold-cache run, seconds (default 1)")
    parser.add_argument("--detect-interval", type=float, default=10.0,
                        help="daemon interval for the time-to-detect part, seconds (default 10)")
    parser.add_argument("--detect-runs", type=int, default=3,
                        help="repetitions of each fault (default 3)")
    parser.add_argument("--default-interval-runs", type=int, default=1,
                        help="repetitions of the hung standby at the default 30 s interval "
                             "(default 1; 0 skips)")
    parser.add_argument("--scrapes", type=int, default=500,
                        help="scrapes of /metrics per client in the metrics part (default 500)")
    parser.add_argument("--maintenance-runs", type=int, default=5,
                        help="measured `maintenance on`/`off`/`status` round trips after one "
                             "warm-up (default 5; 0 skips)")
    parser.add_argument("--skip-once", action="store_true", help="skip part 1")
    parser.add_argument("--skip-daemon", action="store_true",
                        help="skip part 2 (the daemon rows, with and without metrics)")
    parser.add_argument("--skip-metrics", action="store_true",
                        help="skip everything with [metrics] on: the metrics rows of part 2, "
                             "the scrapes and the maintenance round trip")
    parser.add_argument("--skip-detect", action="store_true", help="skip part 3")
    parser.add_argument("--json", default=os.path.join(BENCH_DIR, "results.json"),
                        help="where to write the figures (default bench/results.json)")
    parser.add_argument("--markdown", default=os.path.join(BENCH_DIR, "results.md"),
                        help="where to write the tables (default bench/results.md)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.cycles < 2 or args.detect_runs < 1 or args.scrapes < 1:
        parser.error("--runs, --detect-runs and --scrapes must be at least 1, --cycles at "
                     "least 2")
    if args.maintenance_runs < 0:
        parser.error("--maintenance-runs must be 0 or more")
    args.warm = max(1, min(args.warm, args.cycles // 2))
    return args


def preflight() -> Optional[str]:
    """Why the benchmark cannot run here, or None."""
    for tool in ("check_postgres", "psql"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    reason = missing_tools()
    if reason:
        return reason
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed in this interpreter"
    return None


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    reason = preflight()
    if reason:
        print(f"bench: cannot run: {reason}", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through the cleanups below

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    bindir = find_bindir()
    results: Dict[str, Any] = {
        "schema": SCHEMA,
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {
            "runs": args.runs, "warmup": args.warmup, "cycles": args.cycles, "warm": args.warm,
            "interval_s": args.interval, "detect_interval_s": args.detect_interval,
            "cold_cycles": args.cold_cycles, "cold_interval_s": args.cold_interval,
            "detect_runs": args.detect_runs,
            "default_interval_runs": args.default_interval_runs,
            "scrapes": args.scrapes, "maintenance_runs": args.maintenance_runs,
            "metrics_live_interval_s": METRICS_LIVE_INTERVAL,
            "check_postgres_thresholds": list(CHECK_POSTGRES_THRESHOLDS),
            "services": SERVICES,
        },
        "machine": machine_info(bindir),
        "once": None,
        "daemon": [],
        "metrics": None if args.skip_metrics else {"daemon": []},
        "detect": [],
        "skipped": [name for name, skip in (("once", args.skip_once), ("daemon", args.skip_daemon),
                                            ("metrics", args.skip_metrics),
                                            ("detect", args.skip_detect)) if skip],
    }
    lab = Lab()
    try:
        lab.open()
        if not args.skip_once:
            results["once"] = bench_once(lab, args.runs, args.warmup)
        if not args.skip_daemon:
            plan = [(role, args.cycles, args.warm, args.interval)
                    for role in ("primary", "secondary")]
            if args.cold_cycles > 0:
                # The same work with a second between cycles: colder CPU caches, as in
                # production (30 s), where a cycle costs more than back to back.
                plan.append(("primary", args.cold_cycles + 10, 10, args.cold_interval))
            for role, cycles, warm, interval in plan:
                off = bench_daemon(lab, role, cycles, warm, interval)
                results["daemon"].append(off)
                if results["metrics"] is not None:
                    # Right after the same run without metrics: the difference is theirs.
                    on = bench_daemon(lab, role, cycles, warm, interval, metrics=True)
                    on["vs_off"] = vs_off(off, on)
                    results["metrics"]["daemon"].append(on)
        if results["metrics"] is not None:
            results["metrics"].update(
                bench_metrics_live(lab, args.scrapes, args.warmup, args.maintenance_runs,
                                   max(10, min(args.cycles, 1000))))
        if not args.skip_detect:
            results["detect"] = bench_detect(lab, args.detect_interval, args.detect_runs,
                                             args.default_interval_runs)
    except KeyboardInterrupt:
        print("bench: interrupted, cleaning up", file=sys.stderr)
        return 130
    except ClusterError as exc:  # BenchError is one
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        for writer in _writers:
            writer.stop.set()
        lab.close()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["targets"] = judge(results)
    table = markdown(results)
    _write(args.json, json.dumps(results, indent=2) + "\n")
    _write(args.markdown, table)
    print(table)
    log(f"figures written to {args.json} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
