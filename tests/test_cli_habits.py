"""Issue 14, part 4: CLI habits. Options after a command, required options shown as
required, NO_COLOR on a real terminal (a pty), -v debug lines, a --help that covers what a
man page would. Real subprocesses of the CLI."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "drbd"


def run(*args: str, env: dict = None, cwd: str = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watchdog", *args], capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd)


def config(tmp_path: Path) -> Path:
    drbd = tmp_path / "proc_drbd"
    shutil.copy(FIXTURES / "proc-drbd-8.4-ug-connected-secondary-primary.txt", drbd)
    path = tmp_path / "c.toml"
    path.write_text(
        f'[node]\nname = "n1"\n[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[drbd]\npath = "{drbd}"\nformat = "proc"\n'
        '[postgres]\ndsn = "host=127.0.0.1 port=1"\nconnect_timeout = "1s"\n'
        '[maintenance]\nmax_duration = "2h"\n'
    )
    path.chmod(0o600)
    return path


def test_options_after_the_maintenance_command(tmp_path):
    """Before: `maintenance on ... --config F` was "unrecognized arguments: --config"."""
    path = config(tmp_path)
    result = run("maintenance", "on", "--for", "1h", "--reason", "x", "--wait", "0",
                 "--config", str(path))
    assert result.returncode == 0, result.stderr  # recorded; --wait 0: not waiting
    assert "not waiting for the daemon" in result.stdout
    assert (tmp_path / "state" / "maintenance.json").exists()
    status = run("maintenance", "status", "--json", "--config", str(path))
    assert status.returncode == 0 and '"active": true' in status.stdout
    both = run("--config", "/nonexistent.toml", "maintenance", "--config", str(path), "off",
               "--wait", "0")
    assert both.returncode in (0, 1), both.stderr  # the nearest --config wins
    assert "maintenance off" in both.stdout


def test_options_after_the_status_command(tmp_path):
    path = config(tmp_path)
    (tmp_path / "state").mkdir()
    result = run("status", "--json", "--config", str(path))
    assert result.returncode == 1, result.stderr  # readable, but no daemon has cycled
    assert '"stale": true' in result.stdout
    assert run("-v", "status", "--config", str(path)).returncode == 1


def test_a_config_file_named_like_a_command_is_a_config_file(tmp_path):
    path = config(tmp_path)
    named = tmp_path / "status"
    named.write_text(path.read_text())
    named.chmod(0o600)
    result = run("--config", "status", "--check-config", cwd=str(tmp_path))
    assert "[[alerts.targets]]" in result.stderr  # it was read as a config


def test_required_options_are_shown_as_required():
    usage = run("maintenance", "on", "--help").stdout
    assert "--for DURATION --reason REASON" in usage  # no [brackets]: required
    assert "[--for" not in usage and "[--reason" not in usage
    missing = run("maintenance", "on", "--for", "1h")
    assert missing.returncode == 3
    assert "the following arguments are required: --reason" in missing.stderr


def test_help_covers_what_a_man_page_would():
    text = run("--help").stdout
    for needle in ("ha-watchdog status", "ha-watchdog maintenance on --for DURATION",
                   "--check-config", "--connect", "--nagios", "--allow-silent",
                   "Exit 0 OK, 1 WARNING,", "NO_COLOR", "/etc/ha-watchdog/config.toml",
                   "state_dir", "refuses to start"):
        assert needle in text, needle
    assert "exit codes: 0 the daemon is cycling" in run("status", "--help").stdout
    assert "exit codes: 0 the running daemon applied it" in run("maintenance", "--help").stdout


def _on_a_terminal(argv, env) -> str:
    """Run with stdout on a pseudo-terminal (isatty() is true), return what it printed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(30)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_no_color_is_honoured_on_a_terminal(tmp_path):
    argv = [sys.executable, "-m", "watchdog", "--config", str(config(tmp_path)), "--once"]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    coloured = _on_a_terminal(argv, env)
    assert "role=secondary" in coloured and "\033[" in coloured
    plain = _on_a_terminal(argv, {**env, "NO_COLOR": "1"})
    assert "role=secondary" in plain and "\033[" not in plain
    assert "\033[" in _on_a_terminal(argv, {**env, "NO_COLOR": ""})  # empty: not set


def test_verbose_adds_debug_lines(tmp_path):
    path = config(tmp_path)
    quiet = run("--config", str(path), "--once")
    loud = run("--config", str(path), "--once", "-v")
    assert quiet.returncode == loud.returncode == 2
    assert "DEBUG" not in quiet.stderr
    assert "DEBUG watchdog.cli: cycle took" in loud.stderr
    assert "DEBUG watchdog.cli: postgres_role: critical: cannot connect" in loud.stderr
    assert loud.stdout == quiet.stdout or "role=secondary" in loud.stdout


def test_verbose_check_config_shows_each_probe_and_its_time(tmp_path):
    path = config(tmp_path)
    text = path.read_text() + '[[alerts.targets]]\nname = "h"\nurl = "json://127.0.0.1:9/"\n'
    path.write_text(text)
    result = run("--config", str(path), "--check-config", "--connect", "-v")
    for what in ("DRBD probe", "services probe", "PostgreSQL privileges", "URL check child"):
        assert f"DEBUG watchdog.preflight: {what}" in result.stderr, what
