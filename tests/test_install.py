"""watchdog.install: the unit and the example config a wheel carries, and the commands that
print or install them. Run as real subprocesses of this venv's `ha-watchdog`. (The built
wheel itself, installed into fresh venvs, is tested in test_wheel.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from watchdog import install

ROOT = Path(__file__).resolve().parent.parent
REPO_UNIT = ROOT / "systemd" / "ha-watchdog.service"
REPO_EXAMPLE = ROOT / "config.example.toml"


def run(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("ha-watchdog")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "watchdog"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)


def changed_lines(a: str, b: str) -> list:
    return [(x, y) for x, y in zip(a.splitlines(), b.splitlines()) if x != y]


def test_from_a_checkout_the_packaged_files_are_the_repository_files():
    # An editable install has no watchdog/data/: the one source is read in place.
    assert install.packaged_text(install.UNIT_NAME) == REPO_UNIT.read_text(encoding="utf-8")
    assert install.packaged_text(install.EXAMPLE_NAME) == REPO_EXAMPLE.read_text(encoding="utf-8")


def test_render_unit_changes_only_execstart():
    template = REPO_UNIT.read_text(encoding="utf-8")
    unit = install.render_unit(template, "/srv/hw/venv/bin/ha-watchdog", "/etc/hw/c.toml")
    assert changed_lines(template, unit) == [
        (
            "ExecStart=/opt/ha-watchdog/bin/ha-watchdog --config /etc/ha-watchdog/config.toml",
            "ExecStart=/srv/hw/venv/bin/ha-watchdog --config /etc/hw/c.toml",
        )
    ]
    assert len(unit.splitlines()) == len(template.splitlines())


@pytest.mark.parametrize(
    "bin_path, config, fragment",
    [
        ("bin/ha-watchdog", "/etc/c.toml", "must be an absolute path"),
        ("/opt/my venv/bin/ha-watchdog", "/etc/c.toml", "characters systemd reads specially"),
        ("/opt/v/bin/ha-watchdog", "/etc/100%.toml", "characters systemd reads specially"),
        ("/opt/$X/bin/ha-watchdog", "/etc/c.toml", "characters systemd reads specially"),
        ("/root/venv/bin/ha-watchdog", "/etc/c.toml", "ProtectHome=yes"),
        ("/opt/v/bin/ha-watchdog", "/home/ops/c.toml", "ProtectHome=yes"),
    ],
)
def test_render_unit_refuses_paths_systemd_would_misread_or_hide(bin_path, config, fragment):
    with pytest.raises(install.InstallError, match=fragment.replace("$", r"\$")):
        install.render_unit(REPO_UNIT.read_text(encoding="utf-8"), bin_path, config)


def test_install_unit_print_names_this_venv_script():
    result = run("install-unit", "--print")
    assert result.returncode == 0, result.stderr
    script = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "ha-watchdog")
    assert f"ExecStart={script} --config /etc/ha-watchdog/config.toml\n" in result.stdout
    assert changed_lines(REPO_UNIT.read_text(encoding="utf-8"), result.stdout) == [
        (
            "ExecStart=/opt/ha-watchdog/bin/ha-watchdog --config /etc/ha-watchdog/config.toml",
            f"ExecStart={script} --config /etc/ha-watchdog/config.toml",
        )
    ]


def test_install_unit_print_with_a_bin_that_is_not_here_warns(tmp_path):
    result = run("install-unit", "--print", "--bin", "/opt/elsewhere/bin/ha-watchdog")
    assert result.returncode == 0
    assert "ExecStart=/opt/elsewhere/bin/ha-watchdog --config" in result.stdout
    assert "not an executable file here" in result.stderr


def test_install_unit_writes_once_keeps_local_edits_and_replaces_with_force(tmp_path):
    units = tmp_path / "system"
    units.mkdir()
    config = tmp_path / "config.toml"
    first = run("install-unit", "--unit-dir", str(units), "--config", str(config))
    assert first.returncode == 0, first.stderr
    path = units / "ha-watchdog.service"
    assert f"{path}: written" in first.stdout
    assert "does not exist yet" in first.stdout and "daemon-reload" in first.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert f"--config {config}\n" in path.read_text()
    assert [p.name for p in units.iterdir()] == ["ha-watchdog.service"]  # no temp left

    again = run("install-unit", "--unit-dir", str(units), "--config", str(config))
    assert again.returncode == 0 and f"{path}: unchanged" in again.stdout

    edited = path.read_text().replace("RestartSec=10", "RestartSec=5")
    path.write_text(edited)
    refused = run("install-unit", "--unit-dir", str(units), "--config", str(config))
    assert refused.returncode == 3
    assert "exists with other content" in refused.stderr and "drop-in" in refused.stderr
    assert path.read_text() == edited

    forced = run("install-unit", "--unit-dir", str(units), "--config", str(config), "--force")
    assert forced.returncode == 0 and "written" in forced.stdout
    assert "RestartSec=10" in path.read_text()


def test_install_unit_refusals_exit_3_with_the_reason(tmp_path):
    missing_dir = run("install-unit", "--unit-dir", str(tmp_path / "nope"))
    assert missing_dir.returncode == 3 and "is not a directory" in missing_dir.stderr
    not_here = run("install-unit", "--unit-dir", str(tmp_path), "--bin", "/opt/no/ha-watchdog")
    assert not_here.returncode == 3 and "not an executable file" in not_here.stderr
    relative = run("install-unit", "--print", "--config", "config.toml")
    assert relative.returncode == 3 and "absolute path" in relative.stderr
    usage = run("install-unit", "--no-such-option")
    assert usage.returncode == 3 and "unrecognized arguments" in usage.stderr
    assert not list(tmp_path.iterdir())


def test_example_config_prints_and_writes_owner_only(tmp_path):
    printed = run("example-config")
    assert printed.returncode == 0
    assert printed.stdout == REPO_EXAMPLE.read_text(encoding="utf-8")

    out = tmp_path / "config.toml"
    written = run("example-config", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert out.read_text(encoding="utf-8") == printed.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    out.write_text(printed.stdout + "\n# mine\n")
    refused = run("example-config", "--output", str(out))
    assert refused.returncode == 3 and "exists with other content" in refused.stderr
    assert out.read_text().endswith("# mine\n")

    # As shipped it names no target, so it is refused for exactly that (the daemon would
    # tell nobody); with one target added, as the README says, it is valid.
    checked = run("--check-config", "--config", str(out))
    assert checked.returncode == 3, checked.stderr
    assert "tell nobody" in checked.stderr and "1 error(s)" in checked.stderr, checked.stderr
    out.write_text(printed.stdout + '\n[[alerts.targets]]\nname = "ops"\n'
                   'url = "json://127.0.0.1:9/"\n')
    checked = run("--check-config", "--config", str(out))
    assert checked.returncode == 0, checked.stderr
    assert f"{out}: OK" in checked.stdout


def test_help_of_each_command_exits_0():
    for command in ("install-unit", "example-config"):
        result = run(command, "--help")
        assert result.returncode == 0 and f"ha-watchdog {command}" in result.stdout


def test_a_fifo_or_directory_as_the_output_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    result = run("example-config", "--output", str(fifo))  # run() has a 60 s deadline
    assert result.returncode == 3 and "not a regular file" in result.stderr
    folder = tmp_path / "dir"
    folder.mkdir()
    result = run("example-config", "--output", str(folder))
    assert result.returncode == 3 and "not a regular file" in result.stderr

