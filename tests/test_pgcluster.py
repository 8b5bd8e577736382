"""The lab cluster itself: failover, and teardown that always leaves nothing behind."""

from __future__ import annotations

import os
import tempfile

import pytest

from lab.pgcluster import PgCluster, PgClusterError, _alive
from watchdog.checks.postgres_role import check_postgres_role
from watchdog.checks.standbys import check_standbys
from watchdog.config import PostgresConfig, StandbysConfig
from watchdog.model import Role, Status
from watchdog.probes.postgres import probe_postgres

pytestmark = pytest.mark.postgres


def _probe(dsn: str):
    return probe_postgres(PostgresConfig(dsn=dsn, connect_timeout=2.0, query_timeout=3.0))


def test_dsns_work_as_attribute_and_call(pg):
    assert pg.primary_dsn() == pg.primary_dsn
    assert f"port={pg.port('standby')}" in pg.standby_dsn
    assert set(pg.pids()) == {"primary", "standby"} and all(pg.pids().values())


def test_failover_split_brain_then_reattach(pg_private):
    cluster = pg_private
    old_primary_port = cluster.port("primary")
    cluster.write(10)
    cluster.wait_replayed()

    cluster.promote_standby()  # the old primary still runs: two primaries
    promoted = _probe(cluster.standby_dsn)
    assert promoted.in_recovery is False
    split = check_postgres_role(promoted, Role.SECONDARY)
    assert split.status == Status.CRITICAL and "split brain" in split.summary

    cluster.reattach_old_primary()
    assert cluster.port("standby") == old_primary_port  # roles swapped
    assert _probe(cluster.primary_dsn).in_recovery is False
    assert _probe(cluster.standby_dsn).in_recovery is True
    assert cluster.scalar("primary", "SELECT count(*) FROM lab_writes") == 10
    cluster.write(1)
    cluster.wait_replayed()
    assert check_standbys(_probe(cluster.primary_dsn), StandbysConfig()).status == Status.OK


def test_close_stops_frozen_servers_and_removes_everything():
    base = tempfile.mkdtemp(prefix="ha-watchdog-pg-")
    cluster = PgCluster(base).start()
    pids = cluster.pids()
    cluster.freeze_walreceiver()
    cluster.freeze("standby")
    cluster.freeze("primary")
    cluster.close()
    assert not os.path.exists(base)
    assert not any(_alive(pid) for pid in pids.values())


def test_failed_start_cleans_up():
    base = tempfile.mkdtemp(prefix="ha-watchdog-pg-")
    with pytest.raises(PgClusterError, match="shared_buffers"):
        PgCluster(base, settings={"shared_buffers": "lots"}, timeout=10).start()
    assert not os.path.exists(base)


def test_non_empty_base_dir_is_refused(tmp_path):
    (tmp_path / "something").write_text("x")
    with pytest.raises(PgClusterError, match="not empty"):
        PgCluster(str(tmp_path)).start()
    assert (tmp_path / "something").exists()  # not ours: left alone


# ---- the same lab on every PostgreSQL version of the matrix


def test_each_version_streams_pauses_and_names_its_walreceiver(pgv):
    from lab.pgversions import major_of

    assert major_of(pgv.server_version_num) == pgv.version or pgv.version in (None, "15")
    assert pgv.scalar("primary", "SELECT current_setting('server_version_num')::int") == \
        pgv.server_version_num
    before = pgv.current_lsn()
    after = pgv.write(50)
    assert after > before
    assert pgv.wait_replayed() >= after
    assert pgv.scalar("standby", "SELECT count(*) FROM lab_writes") >= 50
    pid = pgv.walreceiver_pid()
    assert pid and _alive(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        assert b"wal" in handle.read().replace(b" ", b"")  # "wal receiver" / "walreceiver"
    pgv.pause_replay()
    assert pgv.replay_pause_state() == "paused"
    pgv.resume_replay()
    assert pgv.replay_pause_state() == "not paused"


def test_each_version_fails_over_and_streams_back(pgv_private):
    cluster = pgv_private
    cluster.write(5)
    cluster.wait_replayed()
    old_primary_port = cluster.port("primary")
    cluster.failover()
    assert cluster.port("standby") == old_primary_port
    assert cluster.scalar("primary", "SELECT pg_is_in_recovery()") is False
    assert cluster.scalar("standby", "SELECT pg_is_in_recovery()") is True
    cluster.write(1)
    cluster.wait_replayed()
    assert cluster.scalar("standby", "SELECT count(*) FROM lab_writes") == 6


def test_a_missing_build_is_a_clear_error(tmp_path, monkeypatch):
    from lab.pgversions import ENV_CACHE, PgVersionMissing, bindir_for

    monkeypatch.setenv(ENV_CACHE, str(tmp_path))
    with pytest.raises(PgVersionMissing, match=r"PostgreSQL 9\.5 is not installed.*pg-builds 9\.5"):
        bindir_for("9.5")
    with pytest.raises(PgClusterError, match="PostgreSQL 12 is not installed"):
        PgCluster(str(tmp_path / "c"), version="12").start()
