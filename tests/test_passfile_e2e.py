"""The PostgreSQL password of the watchdog's role, under the real systemd and the unit that
`ha-watchdog install-unit` writes from a wheel: where the README says to put it, and why
not /root.

ha-watchdog is installed from this checkout's wheel into a fresh venv (as the README's
steps do; dependencies from the package index), and that venv's `install-unit` writes the
unit from the wheel's package data: the checkout itself is not bound into the container.

The unit's ProtectHome=yes hides /root from the service, so libpq's default passfile
(~/.pgpass, i.e. /root/.pgpass) is invisible to the daemon even though root can read it
from a shell. The README's answer is /etc/ha-watchdog/pgpass (mode 0600) named by
`passfile=` in the DSN. This test reproduces the failure with /root/.pgpass and shows the
fix, against the suite's real PostgreSQL primary (reached through its unix socket, bound
into the container) with a role that must authenticate with a password (scram-sha-256).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

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
from lab.wheel import WheelError, build_wheel, install_venv
from watchdog.probes.command import run_command

AVAILABLE, WHY_NOT = available()
UNIT = "ha-watchdog.service"
NODE = "lab1"
CONFIG_PATH = "/etc/ha-watchdog/config.toml"
PASSFILE = "/etc/ha-watchdog/pgpass"
HEALTHY_SERVICES = ["sh", "-c", "echo '/service/hvmail-httpd: up (pid 100) 1000 seconds'"]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel-venv")
    try:
        wheel = build_wheel(base / "dist")
        return install_venv(sys.executable, wheel, base / "opt-ha-watchdog")
    except WheelError as exc:
        pytest.fail(str(exc))


@pytest.mark.systemd
@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not AVAILABLE, reason=WHY_NOT)
def test_pgpass_in_root_home_is_hidden_from_the_unit_and_etc_passfile_works(
    password_role, wheel_venv, tmp_path
):
    pg, role, password = password_role
    script = str(wheel_venv / "bin" / "ha-watchdog")
    assert os.access(script, os.X_OK), script
    unit = run_command([script, "install-unit", "--print", "--config", CONFIG_PATH], 30)
    assert unit.ok, unit
    assert f"ExecStart={script} --config {CONFIG_PATH}\n" in unit.stdout
    assert "\nProtectHome=yes\n" in unit.stdout

    socket_dir = pg.socket_dir
    port = pg.port("primary")
    base_dsn = f"host={socket_dir} port={port} user={role} dbname=postgres"
    # Without a password the role is refused: the test means something.
    assert not run_command(
        [sys.executable, "-c", f"import psycopg; psycopg.connect({base_dsn!r}).close()"],
        30, env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PGPASSFILE": "/nonexistent"},
    ).ok

    binds = [str(wheel_venv), socket_dir]
    for path in python_paths():
        if not any(path == b or path.startswith(b + "/") for b in binds):
            binds.append(path)
    box = SystemdContainer(tmp_path / "box", binds_ro=binds)
    box.start(timeout=30)
    try:
        DrbdStateFile(str(box.shared_dir / "proc_drbd")).primary()

        def config(dsn: str) -> str:
            return render_config(node_sections(
                NODE, "/var/lib/ha-watchdog", f"{SHARED_DIR_INSIDE}/proc_drbd", dsn,
                services_command=HEALTHY_SERVICES,
                targets=[{"name": "hook", "url": "json://127.0.0.1:9/"}],
            ))

        def once(env_home: str) -> dict:
            """`--once --json` from a root shell in the container (no sandbox)."""
            result = box.run([script, "--once", "--json", "--config", CONFIG_PATH], 30,
                             env={"HOME": env_home})
            assert result.stdout, result
            return {c["name"]: c for c in json.loads(result.stdout)["checks"]}

        def unit_status() -> str:
            return box.show(UNIT, "StatusText") or ""

        dropins = {"10-test.conf": "[Service]\nRestartSec=1\n"}
        home = home_dropin([*python_paths(), str(wheel_venv), script])
        if home:  # a pyenv under /root: ProtectHome=tmpfs + binds, /root/.pgpass stays hidden
            dropins["20-test-home.conf"] = home
        box.install_unit(UNIT, unit.stdout, dropins)

        # -- 1. The password in /root/.pgpass: root's shell connects, the unit cannot.
        box.install_file("/root/.pgpass", f"*:{port}:*:{role}:{password}\n", mode=0o600)
        box.install_file(CONFIG_PATH, config(base_dsn), mode=0o600)
        from_shell = once("/root")
        assert from_shell["postgres_role"]["status"] == "ok", from_shell
        no_passfile = once("/nonexistent")
        assert no_passfile["postgres_role"]["status"] == "critical", no_passfile
        assert "password" in no_passfile["postgres_role"]["summary"], no_passfile

        started = box.systemctl("start", UNIT, timeout=70)
        assert started.ok, f"{started}\n{box.journal(UNIT)}"
        assert box.wait_for(UNIT, "StatusText",
                            lambda s: "postgres_role=critical" in s, timeout=15), unit_status()
        assert re.match(rf"cycle \d+: {NODE} primary critical: ", unit_status()), unit_status()
        assert password not in box.journal(UNIT)

        # -- 2. The README's way: /etc/ha-watchdog/pgpass (0600), passfile= in the DSN.
        box.install_file(PASSFILE, f"*:{port}:*:{role}:{password}\n", mode=0o600)
        box.run(["rm", "-f", "/root/.pgpass"])
        box.install_file(CONFIG_PATH, config(f"{base_dsn} passfile={PASSFILE}"), mode=0o600)
        restarted = box.systemctl("restart", UNIT, timeout=70)
        assert restarted.ok, f"{restarted}\n{box.journal(UNIT)}"
        assert box.wait_for(UNIT, "StatusText",
                            lambda s: "postgres_role=ok" in s, timeout=15), (
            f"{unit_status()}\n{box.journal(UNIT)[-3000:]}"
        )
        status = unit_status()
        assert re.match(rf"cycle \d+: {NODE} primary \w+: drbd=ok postgres_role=ok ", status), status
        # pg_monitor: the role sees the standby's walsender (standbys is not unknown).
        assert "standbys=unknown" not in status, status
        assert password not in box.journal(UNIT)
    finally:
        box.stop()
