"""End to end through the console script: `--once`, `--json`, exit codes, config errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DRBD = FIXTURES / "drbd"


def script() -> str:
    """The installed console script next to this interpreter (falls back to -m)."""
    path = Path(sys.executable).with_name("ha-watchdog")
    return str(path) if path.exists() else ""


# Root without the capabilities that let it read any file (it stays uid 0, so the
# interpreter's own files stay reachable).
NO_DAC = "-dac_override,-dac_read_search"


def run(*args: str, timeout: float = 60, drop_dac: bool = False) -> subprocess.CompletedProcess:
    argv = [script()] if script() else [sys.executable, "-m", "watchdog"]
    argv += list(args)
    if drop_dac:
        argv = ["setpriv", f"--bounding-set={NO_DAC}", f"--inh-caps={NO_DAC}", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def write_config(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def node_config(tmp_path: Path, drbd_sample: str, dsn: str = "", services: str = "") -> Path:
    """A config whose DRBD state is a real recorded sample and PostgreSQL a real server."""
    drbd = tmp_path / "proc_drbd"
    shutil.copy(DRBD / drbd_sample, drbd)
    text = f"""
[node]
name = "test1"
[drbd]
path = "{drbd}"
format = "proc"
[postgres]
dsn = "{dsn or 'host=127.0.0.1 port=1 connect_timeout=1'}"
connect_timeout = "1s"
query_timeout = "2s"
[services]
command = {services or '["true"]'}
timeout = "3s"
"""
    return write_config(tmp_path, text)


# ---------------------------------------------------------------- basics


def test_version():
    result = run("--version")
    assert result.returncode == 0
    from watchdog import __version__

    assert result.stdout.strip() == f"ha-watchdog {__version__}"


def test_usage_error_exits_unknown():
    result = run("--no-such-option")
    assert result.returncode == 3
    assert "unrecognized arguments" in result.stderr
    assert "Traceback" not in result.stderr


def test_json_needs_once(tmp_path):
    result = run("--json", "--config", str(write_config(tmp_path, "")))
    assert result.returncode == 3 and "--json only goes with --once" in result.stderr


def test_python_dash_m_is_the_same_program():
    result = subprocess.run(
        [sys.executable, "-m", "watchdog", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("ha-watchdog ")


# ---------------------------------------------------------------- config errors


# A target apprise parses (nothing is sent by --check-config). Since issue 14 a config
# without any way to tell somebody is an error of --check-config (the daemon refuses it).
TARGET = '[[alerts.targets]]\nname = "hook"\nurl = "json://127.0.0.1:9/"\n'


def test_check_config_valid(tmp_path):
    path = write_config(tmp_path, '[daemon]\ninterval = "10s"\n' + TARGET)
    result = run("--config", str(path), "--check-config")
    assert result.returncode == 0, result.stderr
    assert f"{path}: OK" in result.stdout


def test_check_config_example_is_valid(tmp_path):
    """The example is valid as it stands; --check-config asks for a target before the
    daemon may use it (the example's targets are commented out on purpose)."""
    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    load_config_text = example.read_text()
    path = write_config(tmp_path, load_config_text)
    result = run("--config", str(path), "--check-config")
    assert result.returncode == 3
    assert "[alerts.targets]" in result.stderr and "tell nobody" in result.stderr
    path = write_config(tmp_path, load_config_text + "\n" + TARGET)
    result = run("--config", str(path), "--check-config")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "text,expected",
    [
        ('[daemon]\ninterval = "30s\n', [":2:", "TOML syntax error"]),  # syntax: line:column
        ("[daemon]\nintervall = \"30s\"\n", [":2:", "[daemon.intervall]", "unknown key"]),
        ("[standbys]\nmin_streaming = \"one\"\n", [":2:", "[standbys.min_streaming]", "integer"]),
        ('[replay_lag]\nwarning = "soon"\n', [":2:", "[replay_lag.warning]", "bad duration"]),
    ],
    ids=["toml-syntax", "unknown-key", "wrong-type", "bad-duration"],
)
def test_config_error_classes(tmp_path, text, expected):
    path = write_config(tmp_path, text)
    for mode in ("--once", "--check-config"):
        result = run("--config", str(path), mode)
        assert result.returncode == 3, result
        assert str(path) in result.stderr
        for fragment in expected:
            assert fragment in result.stderr, (fragment, result.stderr)
        assert "Traceback" not in result.stderr


def test_syntax_error_has_line_and_column(tmp_path):
    path = write_config(tmp_path, '[node]\nname = "a"\n[drbd]\npath = /proc/drbd\n')
    result = run("--config", str(path), "--once")
    assert result.returncode == 3
    assert f"{path}:4:" in result.stderr  # file:line:column
    line = result.stderr.strip().splitlines()[0]
    assert line.split(f"{path}:4:")[1].split(":")[0].isdigit()


def test_check_config_reports_every_error(tmp_path):
    path = write_config(
        tmp_path,
        '[daemon]\ninterval = 30\n[drbd]\nformat = "xml"\n[services]\ncommand = "svstat"\n',
    )
    result = run("--config", str(path), "--check-config")
    assert result.returncode == 3
    for key in ("[daemon.interval]", "[drbd.format]", "[services.command]"):
        assert key in result.stderr
    assert "3 errors" in result.stderr


def test_missing_config_file(tmp_path):
    result = run("--config", str(tmp_path / "nope.toml"), "--once")
    assert result.returncode == 3
    assert "nope.toml" in result.stderr and "not found" in result.stderr


def test_unreadable_config_file():
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="ha-watchdog-cfg-"))
    try:
        path = write_config(directory, "")
        path.chmod(0)
        if os.geteuid() == 0:
            if not shutil.which("setpriv"):
                pytest.skip("root reads any file and setpriv is missing to drop privileges")
            # Root reads anything: run without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH.
            result = run("--config", str(path), "--once", drop_dac=True)
        else:
            result = run("--config", str(path), "--once")
        assert result.returncode == 3, result
        assert "permission denied" in result.stderr and str(path) in result.stderr
    finally:
        shutil.rmtree(directory)


def test_group_readable_config_warns(tmp_path):
    path = write_config(tmp_path, TARGET)
    path.chmod(0o644)
    result = run("--config", str(path), "--check-config")
    assert result.returncode == 0
    assert "readable by group or others" in result.stderr


# ---------------------------------------------------------------- --once, each exit code


def test_once_critical_when_nothing_answers(tmp_path):
    path = node_config(tmp_path, "proc-drbd-8.4-ug-connected-secondary-primary.txt")
    result = run("--config", str(path), "--once", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 2
    assert report["role"] == "secondary" and report["status"] == "critical"
    by_name = {c["name"]: c for c in report["checks"]}
    assert list(by_name) == ["drbd", "postgres_role", "replay_lag"]
    assert by_name["drbd"]["status"] == "ok"
    assert by_name["postgres_role"]["status"] == "critical"


def test_once_unknown_on_unreadable_drbd(tmp_path):
    path = node_config(tmp_path, "proc-drbd-8.4-connected-primary-secondary.txt")
    (tmp_path / "proc_drbd").write_text("version: 8.4.11-1 (api:1/proto:86-101)\n 0: garbage here\n")
    result = run("--config", str(path), "--once", "--json")
    report = json.loads(result.stdout)
    assert report["role"] == "unknown"
    drbd = report["checks"][0]
    assert drbd["status"] == "unknown" and "garbage here" in drbd["summary"]
    # postgres_role is CRITICAL (nothing listens), so the worst is critical
    assert result.returncode == 2


@pytest.mark.postgres
def test_once_primary_ok_table_and_json(tmp_path, pg, service_tree):
    tree = service_tree({"hvmail-httpd": "up", "hvmail-dnscache": "normally_down"})
    services = json.dumps(tree.status_command())
    path = node_config(
        tmp_path, "proc-drbd-8.4-connected-primary-secondary.txt", pg.primary_dsn, services
    )
    result = run("--config", str(path), "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("test1  role=primary  status=OK")
    rows = [line.split()[0] for line in lines[2:] if line and not line.startswith(" ")]
    assert rows == ["drbd", "postgres_role", "services", "standbys", "wal"]
    assert "\033[" not in result.stdout  # no colour when not a terminal

    result = run("--config", str(path), "--once", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0
    assert set(report) == {"node", "role", "status", "checks", "maintenance"}
    assert report["maintenance"] == {"active": False}
    assert report["node"] == "test1" and report["role"] == "primary" and report["status"] == "ok"
    for check in report["checks"]:
        assert set(check) == {"name", "status", "summary", "details"}
        assert check["status"] == "ok", check


@pytest.mark.postgres
def test_once_secondary_ok(tmp_path, pg):
    path = node_config(tmp_path, "proc-drbd-8.4-ug-connected-secondary-primary.txt", pg.standby_dsn)
    result = run("--config", str(path), "--once", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert [c["name"] for c in report["checks"]] == ["drbd", "postgres_role", "replay_lag"]


@pytest.mark.postgres
def test_once_warning_during_resync(tmp_path, pg):
    path = node_config(tmp_path, "proc-drbd-8.4-syncsource-tabs-M.txt", pg.primary_dsn,
                       '["sh", "-c", "echo /service/hvmail-httpd: up \\\\(pid 1\\\\) 100 seconds"]')
    result = run("--config", str(path), "--once", "--json")
    report = json.loads(result.stdout)
    drbd = report["checks"][0]
    assert drbd["status"] == "warning" and "55.1" in drbd["summary"]
    assert report["status"] == "warning" and result.returncode == 1, report


@pytest.mark.postgres
def test_once_critical_on_split_brain(tmp_path, pg):
    path = node_config(tmp_path, "proc-drbd-8.4-standalone-splitbrain-primary-node.txt", pg.primary_dsn)
    result = run("--config", str(path), "--once")
    assert result.returncode == 2
    assert "split brain" in result.stdout


def test_once_hung_command_is_cut_off(tmp_path):
    path = node_config(tmp_path, "proc-drbd-8.4-connected-primary-secondary.txt",
                       services='["sleep", "60"]')
    start = time.monotonic()
    result = run("--config", str(path), "--once", "--json")
    elapsed = time.monotonic() - start
    report = json.loads(result.stdout)
    services = next(c for c in report["checks"] if c["name"] == "services")
    assert services["status"] == "unknown" and "timed out" in services["summary"]
    assert elapsed < 30  # a deadline, not a speed claim: the 60 s sleep was killed


def test_once_does_not_import_apprise(tmp_path):
    path = node_config(tmp_path, "proc-drbd-8.4-connected-primary-secondary.txt")
    code = (
        "import sys\n"
        "from watchdog.cli import main\n"
        f"rc = main(['--config', {str(path)!r}, '--once', '--json'])\n"
        "assert 'apprise' not in sys.modules, 'apprise imported'\n"
        "print('rc', rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "rc 2" in result.stdout


def test_test_alert_reports_each_target(tmp_path, http_receiver):
    from lab.receivers import free_port

    dead = f"json://127.0.0.1:{free_port()}/"
    path = write_config(
        tmp_path,
        f"""
[node]
name = "test1"
[alerts]
send_timeout = "5s"
[[alerts.targets]]
name = "hook"
url = "{http_receiver.url}"
[[alerts.targets]]
name = "dead"
url = "{dead}"
""",
    )
    result = run("--config", str(path), "--test-alert")
    assert result.returncode == 2, result
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines())
    assert lines["hook"].startswith("ok")
    assert lines["dead"].startswith("FAILED")
    assert dead not in result.stdout + result.stderr  # targets by name, never by URL
    (message,) = http_receiver.messages
    assert message["title"].startswith("[test1]")


def test_config_errors_carry_a_syslog_priority_under_systemd(tmp_path):
    """Under a unit (INVOCATION_ID set, stderr not a terminal) `journalctl -p err` shows them."""
    import os as _os

    path = write_config(tmp_path, "[daemon]\ninterval = 30\n")
    argv = [script()] if script() else [sys.executable, "-m", "watchdog"]
    env = {**_os.environ, "INVOCATION_ID": "0123456789abcdef"}
    env.pop("JOURNAL_STREAM", None)
    result = subprocess.run([*argv, "--config", str(path)], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 3
    assert result.stderr.startswith("<3>config error: ")


# ---------------------------------------------------------------- hostile configs (issue 11)


@pytest.mark.parametrize("text, expected", [
    # A size of 400 nines overflowed a float: OverflowError and a traceback.
    ('[replay_lag]\nwarning_bytes = "' + "9" * 400 + '"\n',
     ":2: [replay_lag.warning_bytes] size '999"),
    # A 3,000-deep array: RecursionError inside the TOML parser.
    ("[daemon]\nstate_dir = \"/x\"\nx = " + "[" * 3000 + "]" * 3000 + "\n",
     ":3:37: [daemon.x] arrays or inline tables nested more than 32 levels deep"),
    ('[daemon]\nstate_dir = ""\n', ':2: [daemon.state_dir] must not be empty'),
])
def test_check_config_locates_what_used_to_crash_it(tmp_path, text, expected):
    path = write_config(tmp_path, text)
    result = run("--config", str(path), "--check-config")
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    assert f"{path}{expected}" in result.stderr


def test_state_dir_that_is_a_regular_file_is_refused(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("")
    path = write_config(tmp_path, f'[daemon]\nstate_dir = "{blocker}"\n')
    result = run("--config", str(path), "--check-config")
    assert result.returncode == 3
    assert f"{path}:2: [daemon.state_dir] {blocker} exists and is not a directory" in result.stderr


def test_a_fifo_or_a_device_as_the_config_is_refused_unread(tmp_path):
    """A FIFO hung `ha-watchdog` (deaf to SIGTERM); /dev/zero died with MemoryError."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    for path, kind in ((str(fifo), "a FIFO"), ("/dev/zero", "a character device")):
        result = run("--config", path, "--check-config", timeout=30)
        assert result.returncode == 3 and "Traceback" not in result.stderr
        assert f"config error: {path}: config file is {kind}, not a regular file" in result.stderr


def test_a_config_beyond_the_size_cap_is_refused(tmp_path):
    path = tmp_path / "config.toml"
    with open(path, "wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    path.chmod(0o600)
    result = run("--config", str(path), "--check-config")
    assert result.returncode == 3 and "is too large (2097152 bytes" in result.stderr


def test_demo_without_the_lab_says_it_needs_a_checkout_and_exits_3(monkeypatch, capsys):
    """An installed wheel has no lab/ package (the harness stays in the repository): the
    demo says what it needs instead of a traceback, with the prerequisite-missing code."""
    from watchdog import cli

    monkeypatch.setitem(sys.modules, "lab", None)
    monkeypatch.setitem(sys.modules, "lab.demo", None)
    assert cli.main(["demo", "--quick"]) == 3
    err = capsys.readouterr().err
    assert "checkout" in err and ".ci/setup && .venv/bin/ha-watchdog demo" in err, err
    assert "Traceback" not in err


def test_editable_install_exposes_the_lab_next_to_the_package(tmp_path):
    """`.ci/setup`'s editable install puts the checkout on sys.path, so a child started
    anywhere (the demo's daemons, the container's helpers) imports `lab` and `watchdog`
    from this checkout without PYTHONPATH."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [sys.executable, "-c", "import lab.demo, watchdog; print(lab.__file__); "
         "print(watchdog.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path), env=env,
    )
    assert probe.returncode == 0, probe.stderr
    lab_file, watchdog_file = probe.stdout.split()
    assert Path(lab_file).resolve() == root / "lab" / "__init__.py"
    assert Path(watchdog_file).resolve() == root / "watchdog" / "__init__.py"
