"""The `wal` check against real servers: a real inactive slot while the primary writes,
real archiving into a directory that becomes unwritable, and the SQL on every version."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
from pathlib import Path

import pytest

from watchdog.checks.wal import WalConfig, check_wal
from watchdog.config import PostgresConfig, parse_config
from watchdog.model import Status
from watchdog.probes.postgres import build_wal_queries, probe_postgres, track
from watchdog.runner import Probes, run_cycle

DRBD_PRIMARY = (Path(__file__).parent
                / "fixtures/drbd/proc-drbd-8.4-connected-primary-secondary.txt")


def _probe(cluster, which: str = "primary", **kwargs):
    return probe_postgres(PostgresConfig(dsn=cluster.dsn(which)), canary=None, **kwargs)


def _switch(cluster) -> None:
    """Close the current WAL segment (it becomes ready for archiving)."""
    name = "pg_switch_wal" if cluster.server_version_num >= 100000 else "pg_switch_xlog"
    cluster.query("primary", f"SELECT {name}()")


def _create_slot(cluster, name: str) -> None:
    if cluster.server_version_num >= 90600:  # reserve WAL at once (9.5 waits for a client)
        cluster.query("primary", "SELECT pg_create_physical_replication_slot(%s, true)", (name,))
    else:
        cluster.query("primary", "SELECT pg_create_physical_replication_slot(%s)", (name,))


def _drop_slot(cluster, name: str) -> None:
    cluster.query("primary", "SELECT pg_drop_replication_slot(slot_name) "
                  "FROM pg_replication_slots WHERE slot_name = %s", (name,))


def test_an_inactive_slot_while_the_primary_writes(pg):
    """The slot's retained bytes grow with every write; the check names the slot, its
    bytes, since when it is inactive and the command to drop it; the standby reads none."""
    _create_slot(pg, "gone_standby")
    try:
        first = track(_probe(pg), None)
        slot = {s.name: s for s in first.wal.slots}["gone_standby"]
        assert slot.active is False and slot.retained_bytes is not None
        verdict = check_wal(first, WalConfig())
        assert verdict.status == Status.WARNING
        assert "slot gone_standby inactive (since when unknown: first look" in verdict.summary
        assert "SELECT pg_drop_replication_slot('gone_standby');" in verdict.summary

        before = pg.current_lsn()
        for _ in range(3):
            after = pg.write(2000)
        _switch(pg)
        time.sleep(0.2)
        second = track(_probe(pg), first)
        grown = {s.name: s for s in second.wal.slots}["gone_standby"]
        assert grown.restart_lsn == slot.restart_lsn  # nobody consumes it
        assert grown.retained_bytes - slot.retained_bytes >= after - before > 100_000
        assert grown.inactive_since == first.taken_at  # inactive at the first look already
        small = WalConfig(slot_warning_bytes=1024, slot_critical_bytes=grown.retained_bytes)
        verdict = check_wal(second, small, previous=first)
        assert verdict.status == Status.CRITICAL
        assert verdict.summary.startswith("inactive physical slot gone_standby retains ")
        entry = verdict.details["slots"][0]
        assert entry["inactive_seconds"] >= 0.2 and entry["retained_bytes"] == grown.retained_bytes
        json.dumps(verdict.details)

        standby = _probe(pg, "standby")
        assert standby.in_recovery and standby.wal is None
    finally:
        _drop_slot(pg, "gone_standby")
    after = check_wal(track(_probe(pg), None), WalConfig())
    assert after.status == Status.OK, after.summary
    assert after.summary.startswith("no active slot; archive_mode off; WAL directory ")


@pytest.fixture
def archiving():
    """A primary (+ standby) of its own archiving with `cp` into a directory of ours."""
    pytest.importorskip("psycopg")
    from lab.pgcluster import PgCluster, PgClusterError, find_bindir

    try:
        find_bindir()
    except PgClusterError as exc:
        pytest.skip(str(exc))
    target = tempfile.mkdtemp(prefix="ha-watchdog-archive-")
    os.chmod(target, 0o777)
    command = f"test ! -f {target}/%f && cp %p {target}/%f"
    settings = {"archive_mode": "on", "archive_command": command}
    with PgCluster(tempfile.mkdtemp(prefix="ha-watchdog-pg-"), settings=settings) as cluster:
        yield cluster, target, command
    os.chmod(target, 0o700)
    for name in os.listdir(target):
        os.unlink(os.path.join(target, name))
    os.rmdir(target)


def _wait_for(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.skipif(os.geteuid() != 0, reason="the archive directory is made unwritable for "
                    "the servers' OS user, which needs root to arrange")
def test_archiving_into_a_directory_that_becomes_unwritable(archiving):
    cluster, target, command = archiving
    _switch(cluster)
    archived = _wait_for(lambda: os.listdir(target), "the first segment to be archived")
    healthy = _probe(cluster)
    verdict = check_wal(healthy, WalConfig())
    assert verdict.status == Status.OK, verdict.summary
    assert verdict.details["archiver"]["last_archived_wal"] in archived
    assert "archiving: last success " in verdict.summary and "nothing waiting" in verdict.summary
    assert command not in json.dumps(verdict.details) and target not in verdict.summary
    # Idle: the last success is older than the limit, but nothing waits: not a failure.
    idle = check_wal(healthy, WalConfig(archive_max_age=0.001))
    assert idle.status == Status.OK and healthy.wal.archiver.last_archived_age > 0.001

    os.chmod(target, 0o755)  # root's: the servers' OS user can no longer write into it
    cluster.write(10)
    _switch(cluster)

    def failed():
        snap = _probe(cluster)
        return snap if snap.wal.archiver.failed_count else None

    broken = _wait_for(failed, "archive_command to fail")
    verdict = check_wal(broken, WalConfig(), previous=healthy)
    assert verdict.status == Status.CRITICAL
    assert verdict.summary.startswith("WAL archiving failing: ")
    assert verdict.details["archive_failing"] is True
    assert verdict.details["ready_count"] >= 1
    # The same WAL, judged with a limit it has already passed: waiting too long as well.
    stuck = check_wal(broken, WalConfig(archive_max_age=0.01), previous=healthy)
    assert "WAL segment(s) waiting for archiving, the oldest for " in stuck.summary

    os.chmod(target, 0o777)
    cluster.write(10)
    _switch(cluster)  # a new ready segment wakes the archiver, which retries the old one

    def recovered():
        snap = _probe(cluster)
        return snap if snap.wal.ready_count == 0 else None

    fixed = _wait_for(recovered, "the archiver to catch up", timeout=30.0)
    verdict = check_wal(fixed, WalConfig(), previous=broken)
    assert verdict.status == Status.OK, verdict.summary
    assert verdict.details["archiver"]["failed_count"] >= 1


def test_the_wal_sql_on_every_version(pgv):
    """Each statement for this version runs on a real server of it (the ready listing
    too, though the shared cluster does not archive), and the probe reads an inactive slot."""
    version = pgv.server_version_num
    queries = build_wal_queries(version)
    _create_slot(pgv, "matrix_slot")
    try:
        pgv.write(100)
        for sql in (queries.facts, queries.waldir, queries.ready):
            assert len(pgv.query("primary", sql)) == 1
        snap = track(_probe(pgv), None)
        wal = snap.wal
        assert wal is not None and wal.error is None and wal.waldir_error is None
        assert wal.archive_mode == "off" and wal.archive_command_set is False
        assert wal.waldir_bytes >= 16 * 1024 * 1024 and wal.waldir_files >= 1
        assert wal.current_walfile and len(wal.current_walfile) == 24
        assert wal.archiver is not None and wal.archiver.failed_count == 0
        assert wal.slot_count == len(wal.slots) >= 1
        (slot,) = [s for s in wal.slots if s.name == "matrix_slot"]
        assert slot.active is False and slot.slot_type == "physical"
        if version >= 90600:
            assert slot.retained_bytes is not None and slot.retained_bytes > 0
        if version >= 130000:
            assert slot.wal_status == "reserved"
        if version >= 170000:
            assert slot.inactive_age is not None and slot.inactive_since is not None
        verdict = check_wal(snap, WalConfig())
        assert verdict.status == Status.WARNING and "slot matrix_slot inactive" in verdict.summary
        assert _probe(pgv, "standby").wal is None
        snap_off = _probe(pgv, wal=False)
        assert snap_off.wal is None and dataclasses.replace(snap_off, wal=wal).answered
    finally:
        _drop_slot(pgv, "matrix_slot")


def _no_services(cfg):
    raise ConnectionError("no services in this test")


def test_daemon_cycles_carry_since_when_a_slot_is_inactive(pg):
    """Through the runner, as the daemon runs it: the real probe (with the canary), the
    previous cycle's snapshot, and the check's verdict from the registry."""
    cfg = parse_config(f'[drbd]\nformat = "proc"\npath = "{DRBD_PRIMARY}"\n'
                       f'[postgres]\ndsn = "{pg.dsn("primary")}"\n', "/etc/x.toml")
    probes = Probes(services=_no_services)
    _create_slot(pg, "cycle_slot")
    try:
        first = run_cycle(cfg, probes)
        time.sleep(0.3)
        second = run_cycle(cfg, probes, previous=first)
    finally:
        _drop_slot(pg, "cycle_slot")
    one, two = ({c.name: c for c in cycle.report.checks}["wal"] for cycle in (first, second))
    assert one.status == two.status == Status.WARNING
    assert "inactive (since when unknown: first look" in one.summary
    assert re.search(r"physical slot cycle_slot inactive for at least \d+\.\ds", two.summary)
    assert two.details["slots"][0]["inactive_seconds"] >= 0.3
    others = {c.name: c.status for c in second.report.checks}
    assert others["postgres_role"] == others["standbys"] == Status.OK
    third = {c.name: c for c in run_cycle(cfg, probes, previous=second).report.checks}["wal"]
    assert third.status == Status.OK, third.summary  # dropped: nothing left to judge


def test_a_role_without_privileges_still_gets_slots_and_archiver(pg):
    """pg_ls_waldir is refused to a plain role: that part is said, the rest is judged;
    with pg_monitor (10+) the directory is listed too."""
    role = "hw_wal_plain"
    pg.query("primary", f"DROP ROLE IF EXISTS {role}")
    pg.query("primary", f"CREATE ROLE {role} LOGIN")
    _create_slot(pg, "plain_slot")
    try:
        cfg = PostgresConfig(dsn=pg.dsn("primary", user=role))
        plain = probe_postgres(cfg, canary=None)
        assert plain.answered and plain.wal.error is None
        assert "permission denied" in plain.wal.waldir_error
        assert [s.name for s in plain.wal.slots] == ["plain_slot"]
        verdict = check_wal(plain, WalConfig())
        assert verdict.status == Status.WARNING  # the inactive slot, judged all the same
        assert "permission denied" in verdict.details["waldir_error"]
        pg.query("primary", f"GRANT pg_monitor TO {role}")
        monitor = probe_postgres(cfg, canary=None)
        assert monitor.wal.waldir_error is None and monitor.wal.waldir_bytes > 0
    finally:
        _drop_slot(pg, "plain_slot")
        pg.query("primary", f"DROP ROLE IF EXISTS {role}")


class _RefusingWal:
    """A real connection whose WAL statements fail with a message quoting the DSN's
    password (what a careless driver or server message could do)."""

    def __init__(self, conn, secret: str):
        self._conn, self._secret = conn, secret

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def execute(self, sql, params=None):
        if "pg_replication_slots" in sql or "pg_ls_waldir" in sql:
            raise RuntimeError(f"refused for password={self._secret} (test)")
        return self._conn.execute(sql, params)


def test_a_failing_wal_statement_costs_only_its_part_and_leaks_no_secret(pg):
    import psycopg

    secret = "S3cret-wal-77"
    dsn = pg.dsn("primary", password=secret)  # trust auth: the password is not checked

    def connect(dsn: str, **kwargs):
        return _RefusingWal(psycopg.connect(dsn, **kwargs), secret)

    snap = probe_postgres(PostgresConfig(dsn=dsn), canary=None, connect=connect)
    assert snap.answered and snap.walsenders  # the other checks' facts are all there
    assert snap.wal.error and secret not in snap.wal.error
    verdict = check_wal(snap, WalConfig())
    assert verdict.status == Status.UNKNOWN
    assert verdict.summary.startswith("cannot read replication slots and pg_stat_archiver: ")
    assert secret not in json.dumps(verdict.details) + verdict.summary


def test_the_daemon_pages_an_inactive_slot_with_the_command_to_drop_it(tmp_path, pg,
                                                                       http_receiver):
    """The whole way: a real daemon, a real slot left inactive, a PROBLEM whose words name
    the slot and the drop command, and a RECOVERY once it is dropped."""
    from lab.cluster import lab_node
    from lab.receivers import is_about

    node, _ = lab_node(str(tmp_path / "p1"), "p1", "primary", str(pg.primary_dsn),
                       services_command=["sh", "-c", "echo '/service/x: up (pid 9) 99 seconds'"],
                       targets=[{"name": "hook", "url": http_receiver.url}],
                       overrides={"wal": {"for": "0s", "recover_for": "0s"}})

    def about_wal(kind: str):
        return lambda messages: [m for m in messages if is_about(m.get("title"), "[p1] wal")
                                 and kind in str(m.get("body") or m.get("message"))]

    with node:
        assert node.wait_log(r"wal=ok", 30), "\n".join(node.log()[-20:])
        _create_slot(pg, "page_slot")
        try:
            assert http_receiver.wait_for(about_wal("PROBLEM"), 30), http_receiver.messages
        finally:
            _drop_slot(pg, "page_slot")
        assert http_receiver.wait_for(about_wal("RECOVERY"), 30), http_receiver.messages
    (problem,) = about_wal("PROBLEM")(http_receiver.messages)
    words = str(problem.get("body") or problem.get("message"))
    assert "PROBLEM WARNING: wal on p1 (primary)" in words
    assert "physical slot page_slot inactive" in words
    assert "psql -c \"SELECT pg_drop_replication_slot('page_slot')\"" in words  # first step


def test_check_config_connect_says_what_the_wal_check_will_not_see(pg):
    from watchdog.preflight import WARNING, connect_findings

    role = "hw_wal_preflight"
    pg.query("primary", f"DROP ROLE IF EXISTS {role}")
    pg.query("primary", f"CREATE ROLE {role} LOGIN")
    try:
        cfg = parse_config(f'[drbd]\nformat = "proc"\npath = "{DRBD_PRIMARY}"\n'
                           f'[services]\ncommand = ["true"]\n'
                           f'[postgres]\ndsn = "{pg.dsn("primary", user=role)}"\n',
                           "/etc/x.toml")
        found = [f for f in connect_findings(cfg) if f.message.startswith("wal: ")]
        assert [(f.level, f.key) for f in found] == [(WARNING, "postgres.dsn")]
        assert "the WAL directory cannot be listed (permission denied" in found[0].message
        assert "GRANT pg_monitor" in found[0].fix
        pg.query("primary", f"GRANT pg_monitor TO {role}")
        assert not [f for f in connect_findings(cfg) if f.message.startswith("wal: ")]
    finally:
        pg.query("primary", f"DROP ROLE IF EXISTS {role}")


class _HangingWal(_RefusingWal):
    """A real connection whose first WAL statement hangs in the server (pg_sleep)."""

    def execute(self, sql, params=None):
        if "pg_replication_slots" in sql:
            self._conn.execute("SELECT pg_sleep(30)")
        return self._conn.execute(sql, params)


def test_a_hanging_wal_statement_costs_only_the_wal_facts(pg):
    """The main query's facts are in hand before the WAL statements run: a listing that
    hangs is cut at query_timeout and the other checks keep what they need."""
    import psycopg

    def connect(dsn: str, **kwargs):
        return _HangingWal(psycopg.connect(dsn, **kwargs), "")

    cfg = PostgresConfig(dsn=pg.dsn("primary"), query_timeout=1.0)
    start = time.monotonic()
    snap = probe_postgres(cfg, canary=None, connect=connect)
    elapsed = time.monotonic() - start
    # Bounded by the probe's deadlines (connect_timeout + query_timeout), not the 30 s hang.
    assert elapsed < cfg.connect_timeout + cfg.query_timeout + 0.5
    assert snap.answered and snap.walsenders and snap.error is None
    assert snap.wal.error == "no answer within query_timeout 1.0s (connection shut down)"
    assert check_wal(snap, WalConfig()).status == Status.UNKNOWN
