"""Issue 14, part 4: `--once --nagios`, a Nagios/NRPE plugin line with performance data.
Real subprocesses of the CLI against the lab's real PostgreSQL pair and recorded DRBD
outputs; the format checked against the plugin guidelines' grammar."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from watchdog.model import CheckResult, Report, Role, Status
from watchdog.nagios import perf, render_nagios

DRBD = Path(__file__).resolve().parent / "fixtures" / "drbd"
# 'label'=value[UOM];[warn];[crit];[min];[max]  (value may be U)
PERF_RE = re.compile(
    r"^(?:'[^']+'|[^'=\s]+)=(?:U|-?\d+(?:\.\d+)?(?:s|ms|us|%|B|KB|MB|TB|c)?)"
    r"(?:;[^;\s]*){0,4}$"
)
SERVICES = '["sh", "-c", "echo \'/service/hvmail-httpd: up (pid 100) 1000 seconds\'"]'


def once(tmp_path: Path, drbd_sample: str, dsn: str, *extra: str) -> subprocess.CompletedProcess:
    drbd = tmp_path / "proc_drbd"
    shutil.copy(DRBD / drbd_sample, drbd)
    config = tmp_path / "c.toml"
    config.write_text(
        f'[node]\nname = "n1"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[drbd]\npath = "{drbd}"\nformat = "proc"\n'
        f'[postgres]\ndsn = "{dsn}"\nconnect_timeout = "2s"\n'
        f"[services]\ncommand = {SERVICES}\n"
    )
    config.chmod(0o600)
    return subprocess.run([sys.executable, "-m", "watchdog", "--config", str(config), "--once",
                           "--nagios", *extra], capture_output=True, text=True, timeout=60)


def check_line(stdout: str) -> tuple:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout  # one line: NRPE passes the first line on
    text, _, data = lines[0].partition(" | ")
    for item in data.split():
        assert PERF_RE.match(item), item
    return text, data.split()


def test_secondary_line_with_replay_lag_perfdata(tmp_path, pg):
    result = once(tmp_path, "proc-drbd-8.4-ug-connected-secondary-primary.txt", pg.standby_dsn)
    assert result.returncode == 0, result.stdout + result.stderr
    text, data = check_line(result.stdout)
    assert text.startswith("HA-WATCHDOG OK - n1 secondary: all checks OK")
    names = {item.split("=")[0]: item for item in data}
    assert re.match(r"^replay_lag=(U|\d+(\.\d+)?s);60;300;0$", names["replay_lag"])
    assert re.match(r"^replay_lag_bytes=\d+B;67108864;1073741824;0$", names["replay_lag_bytes"])
    assert re.match(r"^last_receive_age=\d+(\.\d+)?s;;45;0$", names["last_receive_age"])
    assert "drbd0_synced=100%;;;0;100" in data


def test_primary_critical_exit_code_and_perfdata(tmp_path, pg):
    pg.stop_standby()
    result = once(tmp_path, "proc-drbd-8.4-connected-primary-secondary.txt", pg.primary_dsn)
    assert result.returncode == 2, result.stdout + result.stderr
    text, data = check_line(result.stdout)
    assert text.startswith("HA-WATCHDOG CRITICAL - n1 primary: standbys CRITICAL: ")
    assert "standbys_streaming=0;;1:;0" in data
    assert "services_up=1;;;0;1" in data and "services_unhealthy=0;;0;0" in data


def test_nagios_only_with_once_and_not_with_json(tmp_path):
    result = subprocess.run([sys.executable, "-m", "watchdog", "--nagios"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 3 and "--nagios only goes with --once" in result.stderr
    result = subprocess.run([sys.executable, "-m", "watchdog", "--once", "--json", "--nagios"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "not allowed with argument" in result.stderr


def test_render_is_one_line_without_pipes_in_the_text():
    report = Report("n1", Role.PRIMARY, [
        CheckResult("services", Status.WARNING, "a | b\nc", {"services": "junk"}),
        CheckResult("drbd", Status.UNKNOWN, "cannot read", {"resources": [None, {"name": 3}]}),
    ])
    line = render_nagios(report, notes=["maintenance ON"])
    assert "\n" not in line and line.count("|") == 0
    assert line.startswith("HA-WATCHDOG UNKNOWN - n1 primary: drbd UNKNOWN: cannot read; "
                           "services WARNING: a / b c; maintenance ON")


def test_perf_quotes_labels_and_marks_unknown_values():
    assert perf("replay lag", None, "s") == "'replay lag'=U;;;0"
    assert perf("x", 0.25, "s", "1", "2") == "x=0.25s;1;2;0"
    assert perf("n", 3, minimum=None) == "n=3"


def test_a_config_error_is_still_one_plugin_line_on_stdout(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[daemon]\ninterval = 30\n')
    config.chmod(0o600)
    result = subprocess.run([sys.executable, "-m", "watchdog", "--config", str(config), "--once",
                             "--nagios"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert result.stdout.startswith("HA-WATCHDOG UNKNOWN - config error: ")
    assert "[daemon.interval]" in result.stdout and len(result.stdout.splitlines()) == 1


def test_a_checks_perfdata_comes_from_its_registry_entry(monkeypatch):
    """nagios.py names no check: a check added through the registry alone brings its own
    performance data, and one raising on odd details costs only its own data."""
    import dataclasses

    from watchdog.checks import registry

    def counted(result):
        return [perf("resources", result.details.get("n"), "", "", "2:")]

    def broken(result):
        raise KeyError("odd details")

    new = dataclasses.replace(registry.find("drbd"), name="resource_count", perfdata=counted)
    odd = dataclasses.replace(new, name="odd_one", perfdata=broken)
    monkeypatch.setattr(registry, "CHECKS", registry.CHECKS + (new, odd))
    report = Report("n1", Role.PRIMARY, [
        CheckResult("resource_count", Status.CRITICAL, "1 resource", {"n": 1}),
        CheckResult("odd_one", Status.OK, "fine", {}),
        CheckResult("not_registered", Status.OK, "fine", {}),
        CheckResult("services", Status.OK, "all up", {"services": [
            {"state": "up", "verdict": "ok"}, {"state": "down", "verdict": "down"}]}),
    ])
    line = render_nagios(report)
    assert line.endswith("| resources=1;;2:;0 services_up=1;;;0;2 services_unhealthy=1;;0;0")
    for datum in line.split(" | ")[1].split():
        assert PERF_RE.match(datum), datum
