"""The benchmark's lab: lab.cluster's two-node cluster with bytecode warmed up, settled
services and configs at the shipped defaults; the machine's description."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
from typing import Any, Dict, List, Mapping, Optional

from bench.common import DAEMON_IMPORTS, ROOT, SERVICES, log
from lab.cluster import TwoNodeCluster
from lab.node import render_config
from watchdog import __version__
from watchdog.config import ServicesConfig
from watchdog.probes.command import run_command

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
