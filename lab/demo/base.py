"""The demo's state and plumbing; the scenarios are lab.demo.scenarios."""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import time
import urllib.request
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from lab.demo.console import Console, Expectation
from lab.demo.reading import (
    Alert,
    NodeView,
    detail_lines,
    parse_alert,
    parse_cycle_line,
    parse_samples,
)
from lab.demo.settings import _PRIVATE_ENV, DEMO_OVERRIDES, EXIT_FAILED, EXIT_OK, NODES, SERVICES
from lab.demo.util import _run, metrics_available
from watchdog.probes.command import CommandResult


class DemoBase:
    """The lab, the two daemons and what they said: the state the scenarios (lab.demo.
    scenarios) wait on, the output helpers, setup and cleanup."""

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
        self.mounts: List[str] = []  # tmpfs mounted by a scenario, unmounted in cleanup

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

    # ------------------------------------------------------------ summary, cleanup

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

    def mount_tmpfs(self, name: str, mib: int) -> Tuple[Optional[str], str]:
        """A tmpfs of `mib` MiB under the lab directory: (its path, "") or (None, why not).
        Unmounted in cleanup, before the lab directory is removed."""
        if os.geteuid() != 0:
            return None, "mounting a small filesystem needs root"
        path = os.path.join(self.base or "", name)
        os.makedirs(path, exist_ok=True)
        result = _run(["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0755",
                       "ha-watchdog-demo", path], timeout=20, env=os.environ)
        if not result.ok:
            return None, f"mount failed: {result.error or result.stderr.strip()}"
        self.mounts.append(path)
        return path, ""

    def unmount_all(self) -> None:
        while self.mounts:
            _run(["umount", "-l", self.mounts.pop()], timeout=20, env=os.environ)

    def cleanup(self) -> None:
        """Stop and remove everything; each part on its own so one failure stops nothing."""
        self.console.muted = True
        self.unmount_all()  # before the lab directory goes: rmtree cannot remove a mount point
        if self.cluster is not None:
            self.cluster.close()
        self.console.write(f"cleaned up: daemons, PostgreSQL, svscan and {self.base or 'nothing'}"
                           " removed", force=True)
