"""`ha-watchdog demo`: its parsers and helpers, then the real thing in its quick form.

The slow test runs `python -m watchdog demo --quick` as a subprocess (real PostgreSQL,
svscan, two daemons, the HTTP receiver) and asserts the alert lines it printed, its exit
status, and that nothing of it is left behind: no directory, no process.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import List

import pytest

from lab.demo import (
    EXIT_MISSING,
    Alert,
    Console,
    Interrupted,
    _run,
    _still_open,
    backup_window_around,
    detail_lines,
    missing_prerequisites,
    parse_alert,
    parse_cycle_line,
    parse_samples,
)
from lab.node import node_sections, render_config
from watchdog.alerts import message as msg
from watchdog.alerts import summaries
from watchdog.config import parse_config
from watchdog.core import maintenance as core
from watchdog.core.engine import MaintenanceEvent, MaintenanceRecord
from watchdog.core.windows import relaxation
from watchdog.daemon import Daemon
from watchdog.model import CheckResult, Report, Role, Status

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_700_000_000.0


def as_posted(notification) -> dict:
    """What apprise's json:// posts for a notification (title, message, type)."""
    # Since issue 14 chat titles are the subject ("[mail1] standbys CRITICAL: ...").
    return {"version": "1.0", "title": notification.subject or notification.title,
            "message": notification.body, "type": notification.notify_type}


# ---------------------------------------------------------------- what arrives


def test_parse_alert_problem_from_the_real_message_text():
    facts = msg.Facts("mail1", "standbys", "primary", "critical",
                      "no standby connected (0 of 1 required standbys streaming)", {"n": 0})
    alert = parse_alert(as_posted(msg.problem(facts, "critical", NOW, NOW + 2, NOW)), 12.5)
    assert (alert.node, alert.check, alert.kind, alert.type) == (
        "mail1", "standbys", "PROBLEM", "failure")
    assert alert.headline == "PROBLEM CRITICAL: standbys on mail1 (primary)"
    assert alert.summary == "no standby connected (0 of 1 required standbys streaming)"
    assert alert.at == 12.5


def test_parse_alert_multiword_kinds_and_recovery():
    role = parse_alert(as_posted(msg.role_change("mail2", "secondary", "primary", NOW, NOW)), 1)
    assert (role.node, role.check, role.kind, role.type) == ("mail2", "role", "ROLE CHANGE",
                                                             "info")
    assert role.headline.startswith("ROLE CHANGE: mail2 is now primary (was secondary)")
    facts = msg.Facts("mail1", "services", "primary", "critical", "hvmail-httpd down", {})
    closed = parse_alert(as_posted(msg.no_longer_applies(
        facts, "critical", NOW, NOW + 5, NOW + 5, "primary", "secondary", "critical")), 2)
    assert closed.kind == "NO LONGER APPLIES" and closed.check == "services"
    back = parse_alert(as_posted(msg.recovery(facts, NOW, NOW + 9, NOW + 9, "critical",
                                              "critical")), 3)
    assert back.kind == "RECOVERY" and back.type == "success"
    assert back.headline.startswith("RECOVERY: services on mail1 (primary) is OK again after")


def test_parse_alert_tolerates_foreign_bodies():
    alert = parse_alert({"title": "something else", "message": ""}, 0.0)
    assert alert.node == "?" and alert.check == "something else" and alert.kind == "?"


def test_parse_cycle_line_reads_the_daemons_summary():
    report = Report("mail2", Role.SECONDARY, [
        CheckResult("drbd", Status.OK, ""),
        CheckResult("postgres_role", Status.CRITICAL, ""),
        CheckResult("replay_lag", Status.UNKNOWN, ""),
    ])
    line = (f"2026-01-01 10:00:00,000 INFO watchdog.daemon: cycle 17: {report.summary_line()}"
            " (12 ms, 1 alert(s), 1 open)")
    view = parse_cycle_line(line)
    assert view is not None
    assert (view.node, view.role, view.status) == ("mail2", "secondary", "critical")
    assert view.checks == {"drbd": "ok", "postgres_role": "critical", "replay_lag": "unknown"}
    assert view.text == "secondary critical: drbd=ok postgres_role=critical replay_lag=unknown"
    assert not view.all_ok()
    assert parse_cycle_line("2026-01-01 INFO watchdog.daemon: alert PROBLEM: [mail2] x") is None


def test_maintenance_messages_parse_and_print_whole():
    m = core.request("abc", "planned standby restart", "root", NOW, 15, 8 * 3600)
    start = parse_alert(as_posted(summaries.maintenance_started("mail1", m, NOW, [],
                                                                "primary")), 1)
    assert (start.node, start.check, start.kind, start.type) == (
        "mail1", "maintenance", "MAINTENANCE ON", "info")
    assert "Open now: nothing." in detail_lines(start)
    record = MaintenanceRecord("abc", m.reason, m.by, NOW, NOW + 15, [
        MaintenanceEvent(NOW + 4, "problem", "standbys", "critical",
                         "PROBLEM CRITICAL: standbys on mail1 (primary)", False),
        MaintenanceEvent(NOW + 7, "recovery", "standbys", "recovery",
                         "RECOVERY: standbys on mail1 (primary) is OK again after 4.5s", False),
    ])
    end = parse_alert(as_posted(summaries.maintenance_ended(
        "mail1", record, "expired", NOW + 15, NOW + 15, [], "primary")), 2)
    assert (end.check, end.kind, end.type) == ("maintenance", "MAINTENANCE OVER", "info")
    lines = detail_lines(end)
    assert lines[0] == "It was asked by root: planned standby restart."
    assert [line for line in lines if line.endswith("[held back]")] == [
        "- 2023-11-14 22:13:24 UTC: PROBLEM CRITICAL: standbys on mail1 (primary) [held back]",
        "- 2023-11-14 22:13:27 UTC: RECOVERY: standbys on mail1 (primary) is OK again after "
        "4.5s [held back]",
    ]
    assert lines[-1] == "Still open: nothing."


def test_detail_lines_of_a_check_alert_is_its_summary_cut_to_width():
    facts = msg.Facts("mail2", "postgres_role", "secondary", "critical", "x" * 300, {})
    alert = parse_alert(as_posted(msg.problem(facts, "critical", NOW, NOW + 2, NOW)), 0)
    assert detail_lines(alert) == ["x" * 157 + "..."]
    assert detail_lines(Alert(0.0, "n", "c", "?", "info", "h", "", "h")) == []


def test_parse_cycle_line_reads_the_maintenance_the_daemon_reports(tmp_path):
    cfg = parse_config(render_config(node_sections(
        "mail1", str(tmp_path / "state"), str(tmp_path / "drbd"), "host=127.0.0.1")))
    daemon = Daemon(cfg)
    report = Report("mail1", Role.PRIMARY, [CheckResult("standbys", Status.CRITICAL, "")])
    daemon.maintenance = core.request("abc", "planned", "root", NOW, 15, 3600)
    line = daemon._summary(report, 0.012, 0)
    view = parse_cycle_line(f"2026-01-01 10:00:00,000 INFO watchdog.daemon: {line}")
    assert view is not None and view.maintenance == "22:13:35 UTC", line
    assert view.checks == {"standbys": "critical"}
    assert view.text == "primary critical: standbys=critical (maintenance until 22:13:35 UTC)"
    daemon.maintenance = None
    view = parse_cycle_line(daemon._summary(report, 0.012, 1))
    assert view is not None and view.maintenance == ""


def test_still_open_pairs_problems_with_their_closing():
    def alert(node: str, check: str, kind: str) -> Alert:
        return Alert(0.0, node, check, kind, "failure", kind, "", kind)

    alerts = [alert("mail1", "standbys", "PROBLEM"), alert("mail2", "role", "ROLE CHANGE"),
              alert("mail1", "postgres_role", "PROBLEM"), alert("mail1", "standbys", "RECOVERY")]
    assert [(a.node, a.check) for a in _still_open(alerts)] == [("mail1", "postgres_role")]
    alerts.append(alert("mail1", "postgres_role", "NO LONGER APPLIES"))
    assert _still_open(alerts) == []


# ---------------------------------------------------------------- the backup window


@pytest.mark.parametrize("clock", ["12:00:00", "23:59:30", "00:00:20", "23:49:10", "00:30:00"])
def test_backup_window_covers_now_and_the_next_minutes_across_midnight(clock):
    now = datetime.fromisoformat(f"2024-03-09T{clock}+00:00").timestamp()
    start, end = backup_window_around(now)
    text = render_config({
        "backup_windows": [{"start": start, "end": end, "timezone": "UTC"}],
        "backup": {"max_duration": "1h"},
    })
    cfg = parse_config(text)  # the demo's own config text must be valid
    for later in (0, 60, 590):
        relax = relaxation(now + later, "replay_lag", cfg, [], {})
        assert relax.active, (start, end, later, relax)
        assert not relax.expired


def test_backup_window_is_in_utc_whole_minutes():
    now = datetime(2024, 3, 9, 10, 20, 45, tzinfo=timezone.utc).timestamp()
    assert backup_window_around(now) == ("10:19", "10:31")


# ---------------------------------------------------------------- metrics, commands


def test_parse_samples_reads_what_the_exporter_serves():
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest

    from watchdog.config import MetricsConfig
    from watchdog.exporter import MetricsExporter
    from watchdog.metrics import MetricsView

    exporter = MetricsExporter(MetricsConfig(), "mail1")
    exporter.update(MetricsView("mail1", "1.0", "secondary", [
        CheckResult("drbd", Status.OK, ""), CheckResult("replay_lag", Status.CRITICAL, ""),
    ], maintenance_active=True, maintenance_until=NOW))
    samples = parse_samples(generate_latest(exporter.registry).decode())
    roles = {labels["role"]: value for name, labels, value, _ in samples
             if name == "ha_watchdog_role"}
    assert roles == {"primary": 0.0, "secondary": 1.0, "unknown": 0.0}
    status = {labels["check"]: (value, line) for name, labels, value, line in samples
              if name == "ha_watchdog_check_status"}
    assert status["replay_lag"][0] == 2.0
    assert status["replay_lag"][1].startswith('ha_watchdog_check_status{check="replay_lag"')
    assert ("ha_watchdog_maintenance_active", {"node": "mail1"}, 1.0) in [
        s[:3] for s in samples]


def test_parse_samples_skips_comments_and_unescapes_labels():
    text = ('# HELP x_total help\n# TYPE x_total counter\n'
            'x_total{a="q\\"uote",b="back\\\\slash"} 3 1700000000000\n'
            'plain 1.5e3\nbroken{a="1"} not-a-number\n')
    assert [s[:3] for s in parse_samples(text)] == [
        ("x_total", {"a": 'q"uote', "b": "back\\slash"}, 3.0), ("plain", {}, 1500.0)]


def test_run_kills_its_command_when_the_demo_is_interrupted(tmp_path):
    pidfile = tmp_path / "pid"
    script = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); " \
             "time.sleep(60)"

    def interrupt(signum, frame):
        raise Interrupted(143, "SIGTERM")

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(Interrupted):
            _run([sys.executable, "-c", script], timeout=30, env=os.environ)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")
    slow = _run([sys.executable, "-c", "import time; time.sleep(60)"], 0.5, os.environ)
    assert slow.returncode is None and slow.error == "no answer within 0.5s"
    done = _run([sys.executable, "-c", "print('hi')"], 30, os.environ)
    assert done.ok and done.stdout == "hi\n"


# ---------------------------------------------------------------- console


def test_console_falls_back_to_ascii_and_never_dies_printing():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    console = Console(stream)
    assert (console.tick, console.cross) == ("ok", "FAIL")
    assert not console.colour  # not a terminal
    console.event("mail1 says: caf\u00e9 \u2192 \u2713")
    stream.flush()
    assert re.match(rb"\[\+ +\d+\.\ds\] mail1 says: caf\? \? \?\n$", raw.getvalue())
    utf8 = Console(io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert (utf8.tick, utf8.cross) == ("\u2713", "\u2717")


# ---------------------------------------------------------------- prerequisites


def test_missing_daemontools_exits_3_and_says_what_to_install(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no svscan, svstat, pg_config, runuser
    result = subprocess.run(
        [sys.executable, "-m", "watchdog", "demo", "--quick"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == EXIT_MISSING, result.stdout + result.stderr
    assert "daemontools not installed" in result.stdout
    assert ".ci/setup" in result.stdout
    assert "lab directory" not in result.stdout  # nothing was started


# ---------------------------------------------------------------- the real demo


def _processes_using(path: str) -> List[str]:
    """Processes with `path` in their command line or working directory (not us)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            cwd = ""
        if path in cmdline or cwd == path or cwd.startswith(path + os.sep):
            found.append(f"{entry}: {cmdline.strip()} (cwd {cwd})")
    return found


@pytest.mark.slow
@pytest.mark.postgres
def test_quick_demo_prints_the_alerts_and_leaves_nothing_behind():
    missing = missing_prerequisites()
    if missing:
        pytest.skip("; ".join(missing))
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchdog", "demo", "--quick"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the demo cleans up on SIGTERM
        out, _ = proc.communicate(timeout=60)
        pytest.fail("the quick demo did not finish within 240 s:\n" + out)
    assert proc.returncode == 0, out

    expected = [
        r"ALERT +mail1 +failure +PROBLEM CRITICAL: standbys on mail1 \(primary\)",
        r"ALERT +mail1 +success +RECOVERY: standbys on mail1 \(primary\) is OK again after",
        r"ALERT +mail1 +failure +PROBLEM CRITICAL: services on mail1 \(primary\)\n"
        r" +.*hvmail-httpd crash-looping",
        r"ALERT +mail1 +success +RECOVERY: services on mail1 \(primary\)",
        r"ALERT +mail1 +info +ROLE CHANGE: mail1 is now secondary \(was primary\)",
        r"ALERT +mail2 +info +ROLE CHANGE: mail2 is now primary \(was secondary\)",
        r"mail2 says: secondary critical: .*postgres_role=critical",
        r"\n {3}mail1 +role +ROLE CHANGE +info +1\n",
        r"(\d+) of \1 expectations held",
    ]
    for pattern in expected:
        assert re.search(pattern, out), f"{pattern!r} not in the output:\n{out}"
    assert "\u2717" not in out and "\u2713" in out
    # The quick form skips the lag spike and the backup window: no replay_lag alert at all.
    assert "replay_lag on" not in out

    # Planned work: the real `maintenance on` and `status` against mail1's daemon; mail1's
    # standbys PROBLEM and RECOVERY are held back and listed when the maintenance expires.
    section = re.search(r"\n== \d+\. Planned work: maintenance mode ==\n(.*?)\n== ", out, re.S)
    assert section, out
    planned = section.group(1)
    for pattern in [
        r"\$ ha-watchdog --config \S+/mail1/config\.toml maintenance on --for \d+s "
        r"--reason 'planned standby restart'\n",
        r"maintenance on until .*: planned standby restart; the running daemon applied it\n",
        r"ALERT +mail1 +info +MAINTENANCE ON: mail1 until .*asked by \S+: planned standby",
        r"mail1 says: primary critical: .*standbys=critical.* \(maintenance until ",
        r"maintenance: ON until .*\n +daemon: applied; 1 notification\(s\) during it so far\n"
        r" +- .*: PROBLEM CRITICAL: standbys on mail1 \(primary\) \[held back\]\n",
        r"ALERT +mail2 +failure +PROBLEM CRITICAL: postgres_role on mail2",
        r"ALERT +mail1 +info +MAINTENANCE OVER: mail1 \(the primary\), expired at .*\n"
        r" +It was asked by .*\n +While it was on \(2 notification\(s\).*\n"
        r" +- .*PROBLEM CRITICAL: standbys on mail1 \(primary\) \[held back\]\n"
        r" +- .*RECOVERY: standbys on mail1 \(primary\) is OK again after .*\[held back\]\n"
        r" +Still open: nothing\.\n",
    ]:
        assert re.search(pattern, planned), f"{pattern!r} not in planned work:\n{planned}"
    assert not re.search(r"ALERT +mail1 +\S+ +(PROBLEM|RECOVERY)", planned), planned
    assert re.search(r"\n {3}mail1 +maintenance +MAINTENANCE OVER +info +1\n", out), out
    if "publishes Prometheus metrics" in out:
        assert 'ha_watchdog_maintenance_active{node="mail1"} 1.0' in planned
        assert re.search(r'\n +ha_watchdog_role\{node="mail1",role="secondary"\} 1\.0\n', out)
        assert re.search(r'\n +ha_watchdog_check_status\{check="drbd",node="mail1"\} 0\.0\n',
                         out)

    match = re.search(r"^lab directory: (.+)$", out, re.MULTILINE)
    assert match, out
    lab = match.group(1).strip()
    assert os.path.isabs(lab)
    assert not os.path.exists(lab), f"{lab} was not removed"
    assert _processes_using(lab) == []
