"""ha-watchdog under a real systemd 252, with the shipped unit and all its hardening.

The daemon's systemd contract (READY=1 after the first cycle, WATCHDOG=1 only while the
loop progresses, SIGHUP reload bracketed by RELOADING=1/READY=1, STOPPING=1 and a flush on
SIGTERM, faulthandler on SIGABRT, `<N>` priority prefixes) only means something to a real
service manager. Here a container (lab.nspawn) boots one, the shipped unit is
installed with only its ExecStart= pointing at this venv's console script plus a test
drop-in (WatchdogSec=3, RestartSec=1, so the watchdog scenario takes seconds), and the
daemon pages a receiver that runs inside the container as a helper unit (the container
has its own loopback). The open problem is postgres_role on a DRBD primary whose
PostgreSQL does not answer (dsn port 1): no database is needed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from lab.drbdstate import DrbdStateFile
from lab.node import node_sections, render_config
from lab.nspawn import (
    SHARED_DIR_INSIDE,
    SystemdContainer,
    available,
    home_dropin,
    python_paths,
)
from lab.receivers import is_about

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_UNIT = ROOT / "systemd" / "ha-watchdog.service"
AVAILABLE, WHY_NOT = available()
needs_nspawn = pytest.mark.skipif(not AVAILABLE, reason=WHY_NOT)

UNIT = "ha-watchdog.service"
NODE = "lab1"
CONFIG_PATH = "/etc/ha-watchdog/config.toml"
STATE_DIR = "/var/lib/ha-watchdog"  # the unit's StateDirectory=
WATCHDOG_SEC = 3
PROBLEM_TITLE = f"[{NODE}] postgres_role"
HEALTHY_SERVICES = ["sh", "-c", "echo '/service/hvmail-httpd: up (pid 100) 1000 seconds'"]
CYCLE_RE = re.compile(r"watchdog\.daemon: cycle (\d+): ")


def console_script() -> str:
    """The `ha-watchdog` entry point of the interpreter running the tests (its venv)."""
    return os.path.join(os.path.dirname(sys.executable), "ha-watchdog")


def unit_text(exec_start: str) -> str:
    """The shipped unit, with only ExecStart= changed."""
    text = SHIPPED_UNIT.read_text(encoding="utf-8")
    new, count = re.subn(r"(?m)^ExecStart=\S+", f"ExecStart={exec_start}", text)
    assert count == 1, "the shipped unit should have exactly one ExecStart= line"
    return new


def unit_dropins(paths: List[str]) -> Dict[str, str]:
    """Shorter timings for the test; a home drop-in if the interpreter lives under /root."""
    dropins = {"10-test-timing.conf": f"[Service]\nWatchdogSec={WATCHDOG_SEC}\nRestartSec=1\n"}
    home = home_dropin(paths)
    if home:
        dropins["20-test-home.conf"] = home
    return dropins


class Lab:
    """A booted container with the receiver running and the unit installed (not started)."""

    def __init__(self, box: SystemdContainer, port: int):
        self.box = box
        self.port = port
        self.alerts_file = box.shared_dir / "alerts.jsonl"

    # -- config
    def sections(self) -> Dict[str, Any]:
        return node_sections(
            NODE,
            STATE_DIR,
            f"{SHARED_DIR_INSIDE}/proc_drbd",
            "host=127.0.0.1 port=1",  # nothing listens: postgres_role CRITICAL
            services_command=HEALTHY_SERVICES,
            targets=[{"name": "hook", "url": f"json://127.0.0.1:{self.port}/"}],
        )

    def write_config(self, text: str) -> None:
        self.box.install_file(CONFIG_PATH, text, mode=0o600)

    # -- what the unit and the daemon did
    def show(self, prop: str) -> Optional[str]:
        return self.box.show(UNIT, prop)

    def alerts(self) -> List[Dict[str, Any]]:
        if not self.alerts_file.exists():
            return []
        text = self.alerts_file.read_text(encoding="ascii")
        complete = text.split("\n")[:-1]  # a line still being appended has no "\n" yet
        return [json.loads(line) for line in complete if line.strip()]

    def problems(self) -> List[Dict[str, Any]]:
        return [
            a for a in self.alerts()
            if is_about(a.get("title"), PROBLEM_TITLE) and a.get("message", "").startswith("PROBLEM")
        ]

    def wait_problems(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.problems()) < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def journal(self, *match: str) -> str:
        """journalctl with matches (e.g. `-u UNIT`, `-p warning`, `FIELD=value`)."""
        argv = ["journalctl", "--no-pager", "-q", "-o", "short-precise", *match]
        result = self.box.run(argv, timeout=10)
        assert result.ok, result
        return result.stdout

    def instance_log(self, invocation: str) -> str:
        """What one run of the service (one invocation) wrote: stdout/stderr only."""
        return self.journal(f"_SYSTEMD_INVOCATION_ID={invocation}")

    def last_cycle(self, invocation: str) -> int:
        numbers = [int(n) for n in CYCLE_RE.findall(self.instance_log(invocation))]
        return max(numbers, default=0)

    def wait_cycle(self, invocation: str, number: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.last_cycle(invocation) < number:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def wait_instance_log(self, invocation: str, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.instance_log(invocation):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def tail(self) -> str:
        """For assertion messages: the unit's recent journal."""
        return "\n".join(self.journal("-u", UNIT).splitlines()[-40:])


@pytest.fixture
def lab(tmp_path):
    # The package and the interpreter must be visible inside: the repo (an editable
    # install imports from it) and the venv's base installation, read-only.
    binds = [str(ROOT)]
    for path in python_paths():
        if not any(path == b or path.startswith(b + "/") for b in binds):
            binds.append(path)
    box = SystemdContainer(tmp_path / "box", binds_ro=binds)
    box.start(timeout=30)
    try:
        port_file = box.shared_dir / "receiver.port"
        started = box.start_helper(
            "alert-receiver",
            [
                sys.executable, "-m", "lab.receivers", "http",
                "--out", f"{SHARED_DIR_INSIDE}/alerts.jsonl",
                "--port-file", f"{SHARED_DIR_INSIDE}/receiver.port",
            ],
        )
        assert started.ok, started
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert time.monotonic() < deadline, box.journal("alert-receiver.service")
            time.sleep(0.02)
        DrbdStateFile(str(box.shared_dir / "proc_drbd")).primary()
        lab = Lab(box, int(port_file.read_text()))
        script = console_script()
        assert os.access(script, os.X_OK), f"{script}: ha-watchdog is not installed in this venv"
        box.install_unit(
            UNIT,
            unit_text(f"{script} --config {CONFIG_PATH}"),
            unit_dropins([*python_paths(), str(ROOT), script]),
        )
        yield lab
    finally:
        box.stop()


@pytest.mark.systemd
@pytest.mark.slow
@needs_nspawn
def test_start_reload_watchdog_restart_and_stop_under_systemd(lab):
    box = lab.box
    good = render_config(lab.sections())
    lab.write_config(good)

    # -- start: Type=notify, so `systemctl start` returns once READY=1 came (first cycle).
    started = box.systemctl("start", UNIT, timeout=70)
    assert started.ok, f"{started}\n{lab.tail()}"
    assert lab.show("ActiveState") == "active" and lab.show("SubState") == "running"
    first_pid = lab.show("MainPID")
    first_run = lab.show("InvocationID")
    assert first_pid and first_pid != "0" and first_run
    assert lab.wait_cycle(first_run, 1, timeout=5), lab.tail()
    assert re.match(
        rf"cycle \d+: {NODE} primary critical: .*postgres_role=critical", lab.show("StatusText")
    ), lab.show("StatusText")
    assert f"watchdog ping every {WATCHDOG_SEC / 2:g}s" in lab.instance_log(first_run)

    # -- the open problem is paged once (postgres_role `for` is 1 s).
    assert lab.wait_problems(1, timeout=15), lab.tail()
    (problem,) = lab.problems()
    assert problem["type"] == "failure" and "cannot connect" in problem["message"]
    # ProtectSystem=strict leaves the StateDirectory writable (UMask=0077: files 0600).
    listing = box.run(["stat", "-c", "%a %n", f"{STATE_DIR}/engine.json", STATE_DIR])
    assert listing.stdout.split("\n")[:2] == [
        f"600 {STATE_DIR}/engine.json",
        f"750 {STATE_DIR}",
    ], listing

    # -- reload with a broken config: rejected, the daemon keeps running on the old one.
    broken = good.replace('interval = "0.5s"', "interval = 30")
    assert broken != good
    lab.write_config(broken)
    reloaded = box.systemctl("reload", UNIT)
    assert reloaded.ok, reloaded
    assert lab.wait_instance_log(first_run, "reload rejected"), lab.tail()
    rejected = [
        line for line in lab.instance_log(first_run).splitlines() if "reload rejected" in line
    ]
    assert len(rejected) == 1, rejected
    assert f"{CONFIG_PATH}:" in rejected[0] and "[daemon.interval]" in rejected[0], rejected
    # RELOADING=1 was followed by READY=1: back to running, same process.
    assert box.wait_for(UNIT, "SubState", "running", timeout=5), lab.show("SubState")
    assert lab.show("ActiveState") == "active"
    assert lab.show("MainPID") == first_pid
    # ... and still cycling every 0.5 s (a 30 s interval would show no new cycle soon).
    after_reject = lab.last_cycle(first_run)
    assert lab.wait_cycle(first_run, after_reject + 3, timeout=10), lab.tail()

    # A TOML syntax error: rejected too, with its line and column.
    lab.write_config("[daemon\ninterval = '1s'\n")
    assert box.systemctl("reload", UNIT).ok
    assert lab.wait_instance_log(first_run, "TOML syntax error"), lab.tail()
    syntax = [line for line in lab.instance_log(first_run).splitlines() if "TOML syntax" in line]
    assert f"{CONFIG_PATH}:1:" in syntax[0], syntax

    # Restore the good config; a valid reload is accepted in place.
    lab.write_config(good)
    assert box.systemctl("reload", UNIT).ok
    assert lab.wait_instance_log(first_run, "configuration reloaded from"), lab.tail()
    assert box.wait_for(UNIT, "SubState", "running", timeout=5)
    assert lab.show("MainPID") == first_pid
    assert lab.wait_cycle(first_run, lab.last_cycle(first_run) + 2), lab.tail()

    # -- SIGSTOP: no more WATCHDOG=1; systemd SIGABRTs it at WatchdogSec and restarts it.
    assert box.run(["kill", "-STOP", first_pid]).ok
    assert box.wait_for(UNIT, "NRestarts", lambda v: int(v) >= 1, timeout=WATCHDOG_SEC + 12), (
        lab.tail()
    )
    assert box.wait_for(UNIT, "SubState", "running", timeout=15), lab.tail()
    second_pid = lab.show("MainPID")
    second_run = lab.show("InvocationID")
    assert second_pid not in (first_pid, "0", None) and second_run != first_run
    unit_log = lab.journal("-u", UNIT)
    assert f"Watchdog timeout (limit {WATCHDOG_SEC}s)!" in unit_log, lab.tail()
    assert f"Killing process {first_pid} (ha-watchdog) with signal SIGABRT" in unit_log
    assert "Failed with result 'watchdog'" in unit_log

    # faulthandler: the killed instance left every thread's Python stack in the journal.
    assert lab.wait_instance_log(first_run, "Fatal Python error: Aborted"), lab.tail()
    dump = lab.instance_log(first_run)
    assert "Current thread 0x" in dump
    assert len(re.findall(r"(?:Current thread|Thread) 0x[0-9a-f]+", dump)) >= 2, dump[-3000:]
    assert re.search(r'File ".*watchdog/daemon\.py", line \d+ in run\b', dump), dump[-3000:]

    # -- the restarted daemon knows the problem is open and does not page it again.
    assert lab.wait_cycle(second_run, 5, timeout=15), lab.tail()
    second_log = lab.instance_log(second_run)
    first_cycle = next(line for line in second_log.splitlines() if CYCLE_RE.search(line))
    assert "cycle 1: " in first_cycle and ", 1 open)" in first_cycle, first_cycle
    assert "alert PROBLEM" not in second_log, second_log
    assert len(lab.problems()) == 1, lab.alerts()

    # -- priorities: `journalctl -p warning` shows the alert and the rejected reloads,
    # not the info-level cycle lines.
    warnings = lab.journal("-u", UNIT, "-p", "warning")
    assert f"watchdog.daemon: alert PROBLEM: {PROBLEM_TITLE}" in warnings, warnings
    assert "reload rejected" in warnings
    assert "cycle 1:" not in warnings and "watchdog.daemon: cycle" not in warnings, warnings
    assert "watchdog.daemon: cycle" in lab.journal("-u", UNIT, "-p", "info")

    # -- stop: SIGTERM -> STOPPING=1, flush, exit 0, well within TimeoutStopSec.
    stopped = box.systemctl("stop", UNIT, timeout=40)
    assert stopped.ok, stopped
    assert lab.show("ActiveState") == "inactive"
    assert lab.show("Result") == "success" and lab.show("ExecMainStatus") == "0"
    assert lab.wait_instance_log(second_run, "watchdog.daemon: stopped"), lab.tail()
    assert "stopping: flushing pending alerts" in lab.instance_log(second_run)
    unit_log = lab.journal("-u", UNIT)
    assert "timed out" not in unit_log and "SIGKILL" not in unit_log, lab.tail()
    assert len(lab.problems()) == 1, lab.alerts()


@pytest.mark.systemd
@pytest.mark.slow
@needs_nspawn
def test_config_error_at_start_fails_without_restart_loop(lab):
    """Exit status 3 (config error) is in RestartPreventExitStatus=: restarting cannot
    fix a config file, so the unit goes to `failed` at once instead of auto-restart."""
    lab.write_config(render_config(lab.sections()).replace('interval = "0.5s"', "interval = 30"))
    started = lab.box.systemctl("start", UNIT, timeout=70)
    assert not started.ok
    assert lab.show("ActiveState") == "failed", lab.tail()
    assert lab.show("SubState") == "failed"  # not "auto-restart"
    assert lab.show("Result") == "exit-code" and lab.show("ExecMainStatus") == "3"
    assert lab.show("NRestarts") == "0"
    assert lab.box.wait_for_journal(UNIT, "[daemon.interval]", timeout=10), lab.tail()
    assert f"config error: {CONFIG_PATH}:" in lab.journal("-u", UNIT)


METRICS_PORT = 9642
TEXTFILE = "/var/lib/node_exporter/textfile/ha_watchdog.prom"


def scrape_inside(lab: Lab) -> Dict[str, float]:
    """`/metrics` fetched inside the container (its own loopback), parsed by the library."""
    from prometheus_client.parser import text_string_to_metric_families

    code = (
        "import urllib.request;"
        f"print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics').read().decode())"
    )
    result = lab.box.run([sys.executable, "-c", code], timeout=15)
    assert result.ok, result
    return {
        sample.name + json.dumps({k: v for k, v in sorted(sample.labels.items()) if k != "node"}):
            sample.value
        for family in text_string_to_metric_families(result.stdout)
        for sample in family.samples
    }


@pytest.mark.systemd
@pytest.mark.slow
@needs_nspawn
def test_maintenance_and_metrics_under_the_hardened_unit(lab):
    """Maintenance shows in STATUS=, metrics are served and the textfile is written under
    ProtectSystem=strict once a drop-in allows its directory, and a restart mid-maintenance
    keeps it (no second start message, no re-page)."""
    box = lab.box
    sections = lab.sections()
    sections["metrics"] = {"listen": f"127.0.0.1:{METRICS_PORT}", "textfile": TEXTFILE}
    lab.write_config(render_config(sections))
    assert box.run(["mkdir", "-p", os.path.dirname(TEXTFILE)]).ok
    started = box.systemctl("start", UNIT, timeout=70)
    assert started.ok, f"{started}\n{lab.tail()}"
    run = lab.show("InvocationID")
    assert lab.wait_problems(1, timeout=15), lab.tail()
    # Metrics are what the last cycle saw: let one cycle pass after the delivery.
    assert lab.wait_cycle(run, lab.last_cycle(run) + 2), lab.tail()

    metrics = scrape_inside(lab)
    assert metrics['ha_watchdog_role{"role": "primary"}'] == 1
    assert metrics['ha_watchdog_check_status{"check": "postgres_role"}'] == 2
    assert metrics['ha_watchdog_check_confirmed_status{"check": "postgres_role"}'] == 2
    assert metrics['ha_watchdog_deliveries_total{"outcome": "delivered", "target": "hook"}'] >= 1
    # No ReadWritePaths= yet: refused by the sandbox, said once with the fix.
    assert lab.wait_instance_log(run, "cannot write textfile"), lab.tail()
    refused = [line for line in lab.instance_log(run).splitlines() if "cannot write textfile" in line]
    assert len(refused) == 1 and "Read-only file system" in refused[0], refused
    assert "ReadWritePaths=" in refused[0]

    cli = [console_script(), "--config", CONFIG_PATH, "maintenance"]
    on = box.run([*cli, "on", "--for", "1h", "--reason", "systemd test"], timeout=40)
    assert on.ok and "the running daemon applied it" in on.stdout, on
    assert box.wait_for(UNIT, "StatusText", lambda v: "MAINTENANCE until" in v, timeout=10), (
        lab.show("StatusText")
    )
    assert scrape_inside(lab)["ha_watchdog_maintenance_active{}"] == 1

    box.install_file(f"/etc/systemd/system/{UNIT}.d/30-textfile.conf",
                     f"[Service]\nReadWritePaths={os.path.dirname(TEXTFILE)}\n")
    assert box.systemctl("daemon-reload", timeout=30).ok
    assert box.systemctl("restart", UNIT, timeout=70).ok, lab.tail()
    second = lab.show("InvocationID")
    assert lab.wait_cycle(second, 3), lab.tail()
    listing = box.run(["stat", "-c", "%a", TEXTFILE])
    assert listing.ok and listing.stdout.strip() == "644", listing
    text = box.run(["cat", TEXTFILE]).stdout
    assert "ha_watchdog_maintenance_active{" in text and "} 1.0" in text
    assert "MAINTENANCE until" in lab.show("StatusText")

    off = box.run([*cli, "off"], timeout=40)
    assert off.ok and "the running daemon applied it" in off.stdout, off
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        notes = [a for a in lab.alerts() if is_about(a.get("title"), f"[{NODE}] maintenance")]
        if len(notes) >= 2:
            break
        time.sleep(0.1)
    assert [n["message"].split(":")[0] for n in notes] == ["MAINTENANCE ON", "MAINTENANCE OVER"]
    assert "postgres_role critical since" in notes[1]["message"]
    assert "paged before maintenance" in notes[1]["message"]
    assert len(lab.problems()) == 1, lab.alerts()  # never paged twice
    assert box.systemctl("stop", UNIT, timeout=40).ok


def test_receiver_cli_appends_each_json_body_as_a_line(tmp_path):
    """`python -m lab.receivers http`: the receiver the container test runs."""
    out, port_file = tmp_path / "alerts.jsonl", tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.receivers", "http",
         "--out", str(out), "--port-file", str(port_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.02)
        port = int(port_file.read_text())
        for body in ({"title": "a", "message": "one\ntwo"}, {"title": "b"}):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("POST", "/", body=json.dumps(body, indent=2).encode(),
                             headers={"Content-Type": "application/json"})
                assert conn.getresponse().status == 200
            finally:
                conn.close()
        lines = out.read_text(encoding="ascii").splitlines()
        assert [json.loads(line) for line in lines] == [
            {"title": "a", "message": "one\ntwo"},
            {"title": "b"},
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert f"listening on json://127.0.0.1:{port}/" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
