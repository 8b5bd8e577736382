"""`--once` as a non-root user (NRPE, cron), set up as the README's GreenArrow section says.

ha-watchdog is installed from this checkout's wheel with the system's /usr/bin/python3
(Debian's, the README's Debian 12 path) into a directory any user can read, and runs as
`nobody`: the config group-readable, the passfile owned by that user (0600), a DRBD state
file, the real PostgreSQL primary over TCP with a password role, and a real svscan tree
whose supervise/ directories are root's. Expected, as the README says: DRBD and PostgreSQL
OK, `services` CRITICAL with svstat's `unable to open supervise/ok`, the state directory
unreadable reported as `maintenance: unknown`, never a traceback. Then the same `--once`
as root shows services OK: the sudo rule of the README is what makes the difference.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lab.drbdstate import DrbdStateFile
from lab.node import node_sections, render_config
from lab.services import ServiceTree, missing_tools
from lab.wheel import build_wheel, install_venv

SYSTEM_PYTHON = "/usr/bin/python3"
USER = "nobody"

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.daemontools]


def usable() -> str:
    if os.geteuid() != 0:
        return "needs root (to run as another user)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON}"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER}"
    return missing_tools() or ""


@pytest.fixture
def public_dir():
    base = tempfile.mkdtemp(prefix="ha-watchdog-nonroot-", dir="/tmp")
    os.chmod(base, 0o755)
    try:
        yield Path(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_once_as_a_non_root_user_reads_what_the_readme_says(password_role, public_dir):
    reason = usable()
    if reason:
        pytest.skip(reason)
    pg, role, password = password_role
    nobody = pwd.getpwnam(USER)
    venv = install_venv(SYSTEM_PYTHON, build_wheel(public_dir / "dist"), public_dir / "opt")
    script = str(venv / "bin" / "ha-watchdog")

    etc = public_dir / "etc"
    etc.mkdir()
    os.chown(etc, 0, nobody.pw_gid)
    etc.chmod(0o750)
    passfile = etc / "pgpass"
    passfile.write_text(f"*:{pg.port('primary')}:*:{role}:{password}\n")
    os.chown(passfile, nobody.pw_uid, 0)
    passfile.chmod(0o600)
    state = public_dir / "state"
    state.mkdir(mode=0o750)  # root's, like /var/lib/ha-watchdog
    drbd = DrbdStateFile(str(public_dir / "proc_drbd"))
    drbd.primary()
    os.chmod(drbd.path, 0o644)

    with ServiceTree(str(public_dir), {"hvmail-httpd": "up"}) as tree:
        assert tree.dir is not None
        os.chmod(tree.dir, 0o755)
        dsn = f"host=127.0.0.1 port={pg.port('primary')} user={role} dbname=postgres " \
              f"passfile={passfile}"
        config = etc / "config.toml"
        config.write_text(render_config(node_sections(
            "mail1", str(state), drbd.path, dsn, services_command=tree.status_command(),
        )))
        os.chown(config, 0, nobody.pw_gid)
        config.chmod(0o640)

        def once(*prefix: str) -> dict:
            result = subprocess.run([*prefix, script, "--once", "--json", "--config",
                                     str(config)], capture_output=True, text=True,
                                    timeout=120, cwd="/")
            assert "Traceback" not in result.stderr, result.stderr
            assert result.stdout, result
            report = json.loads(result.stdout)
            report["exit"] = result.returncode
            report["checks"] = {c["name"]: c for c in report["checks"]}
            return report

        as_user = once("runuser", "-u", USER, "--")
        checks = as_user["checks"]
        assert checks["drbd"]["status"] == "ok", checks
        assert checks["postgres_role"]["status"] == "ok", checks  # password from the passfile
        assert checks["standbys"]["status"] == "ok", checks  # pg_monitor
        assert checks["services"]["status"] == "critical", checks
        assert "unable to open supervise/ok" in json.dumps(checks["services"]), checks
        assert as_user["maintenance"]["active"] is False and "error" in as_user["maintenance"]
        assert as_user["exit"] == 2
        assert password not in json.dumps(as_user)

        as_root = once()
        assert as_root["checks"]["services"]["status"] == "ok", as_root["checks"]
        assert as_root["exit"] == 0 and "error" not in as_root["maintenance"]
