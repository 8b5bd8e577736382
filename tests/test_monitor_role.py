"""The README's database role for the watchdog (GreenArrow section), on the real servers:
`LOGIN` plus `pg_monitor` (PostgreSQL 10+) is enough for every check on both nodes, and
without pg_monitor the checks that need it say so instead of passing.

`ha-watchdog --once --json` runs as a subprocess with a DRBD state file per role, against
the suite's primary and streaming standby, connecting as that role.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.drbdstate import DrbdStateFile
from lab.node import node_sections, render_config
from watchdog.model import Role
from watchdog.runner import ROLE_CHECKS

pytestmark = pytest.mark.postgres

ROLE = "hw_monitor_test"
HEALTHY_SERVICES = ["sh", "-c", "echo '/service/hvmail-httpd: up (pid 100) 1000 seconds'"]


@pytest.fixture
def monitor_role(pg):
    pg.wait_streaming()
    pg.query("primary", f"DROP ROLE IF EXISTS {ROLE}")
    pg.query("primary", f"CREATE ROLE {ROLE} LOGIN")  # the README's statements, minus PASSWORD
    pg.wait_replayed()
    try:
        yield pg
    finally:
        pg.query("primary", f"DROP ROLE IF EXISTS {ROLE}")


def once(tmp_path: Path, pg, which: str) -> dict:
    drbd = DrbdStateFile(str(tmp_path / f"drbd-{which}"))
    drbd.primary() if which == "primary" else drbd.secondary()
    config = tmp_path / f"{which}.toml"
    config.write_text(render_config(node_sections(
        "mail1", str(tmp_path / f"state-{which}"), drbd.path, pg.dsn(which, user=ROLE),
        services_command=HEALTHY_SERVICES,
    )))
    config.chmod(0o600)
    script = Path(sys.executable).with_name("ha-watchdog")
    result = subprocess.run([str(script), "--once", "--json", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout, result
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_login_plus_pg_monitor_is_enough_on_both_nodes(monitor_role, tmp_path):
    pg = monitor_role
    pg.query("primary", f"GRANT pg_monitor TO {ROLE}")
    pg.wait_replayed()
    primary = once(tmp_path, pg, "primary")
    assert {n: c["status"] for n, c in primary.items()} == dict.fromkeys(
        ROLE_CHECKS[Role.PRIMARY], "ok"), primary
    assert "WAL directory " in primary["wal"]["summary"]  # pg_monitor may list pg_wal
    assert "not readable" not in primary["wal"]["summary"]
    assert "1 standby streaming" in primary["standbys"]["summary"]
    standby = once(tmp_path, pg, "standby")
    assert {n: c["status"] for n, c in standby.items()} == dict.fromkeys(
        ROLE_CHECKS[Role.SECONDARY], "ok"), standby
    assert "streaming from" in standby["replay_lag"]["summary"]


def test_without_pg_monitor_the_checks_say_what_is_missing(monitor_role, tmp_path):
    pg = monitor_role
    primary = once(tmp_path, pg, "primary")
    assert primary["postgres_role"]["status"] == "ok"
    assert primary["standbys"]["status"] != "ok", primary
    assert "pg_monitor" in primary["standbys"]["summary"], primary
    assert primary["wal"]["status"] == "ok", primary  # slots and archiver need no grant
    assert "WAL directory size not readable (permission denied" in primary["wal"]["summary"]
    assert "grant pg_monitor" in primary["wal"]["summary"], primary
    standby = once(tmp_path, pg, "standby")
    assert "pg_monitor" in standby["replay_lag"]["summary"], standby
    # The primary's run above wrote the canary, and its replay proves replication end to
    # end: the verdict does not need the hidden WAL receiver view, the missing grant is named.
    assert standby["replay_lag"]["details"]["evidence"].startswith("canary"), standby
    assert standby["replay_lag"]["status"] == "ok", standby
