"""The PostgreSQL probe: LSNs, per-version queries, deadlines (real sockets), real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Any, Dict, List

import pytest

from watchdog.checks.replay_lag import check_replay_lag
from watchdog.checks.standbys import check_standbys
from watchdog.config import BackupConfig, PostgresConfig, ReplayLagConfig, StandbysConfig
from watchdog.lab.pgcluster import free_port
from watchdog.model import Status
from watchdog.probes.postgres import (
    RESAMPLE_MIN_AGE,
    SESSION,
    WALSENDER,
    PgSnapshot,
    _replay_gap_suspect,
    build_query,
    format_lsn,
    parse_lsn,
    probe_postgres,
)


def _cfg(dsn: str, connect_timeout: float = 2.0, query_timeout: float = 3.0) -> PostgresConfig:
    return PostgresConfig(dsn=dsn, connect_timeout=connect_timeout, query_timeout=query_timeout)


# ------------------------------------------------------------ LSNs and queries


def test_lsn_round_trip_on_recorded_values(pg_sample):
    (row,) = pg_sample("04")
    assert parse_lsn(row["flushed_lsn"]) == 0x3000000
    assert row["written_lsn"] is None and parse_lsn(row["written_lsn"]) is None
    for text in ("0/3016070", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/0"):
        assert format_lsn(parse_lsn(text)) == text
    assert parse_lsn("1/0") - parse_lsn("0/FFFFFFFF") == 1
    assert format_lsn(None) is None


def test_query_follows_the_server_version():
    q15 = build_query(150000, with_backups=True)
    assert "pg_get_wal_replay_pause_state()" in q15
    assert "flushed_lsn" in q15 and "written_lsn" in q15 and "reply_time" in q15
    assert "pg_stat_activity" in q15
    q13 = build_query(130000, with_backups=False)
    assert "pg_is_wal_replay_paused()" in q13 and "pg_get_wal_replay_pause_state" not in q13
    assert "pg_stat_activity" not in q13
    q12 = build_query(120000, with_backups=False)
    assert "received_lsn" in q12 and "flushed_lsn" not in q12 and "reply_time" in q12
    q11 = build_query(110000, with_backups=False)
    assert "reply_time" not in q11 and "sender_host" in q11
    # Recovery-only functions are never evaluated on a primary (they raise ERROR there).
    assert "CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state()" in q15
    assert "CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()" in q15


# ------------------------------------------------------------ failures, real sockets


def test_connection_refused_has_libpq_reason():
    port = free_port()  # nobody listens there
    snap = probe_postgres(_cfg(f"host=127.0.0.1 port={port} user=x dbname=x"))
    assert not snap.reachable and not snap.answered
    assert "Connection refused" in snap.error
    assert "\n" not in snap.error


def test_silent_server_is_abandoned_at_connect_timeout():
    """A peer that accepts TCP but never speaks, as a SIGSTOPped postmaster does."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        start = time.monotonic()
        snap = probe_postgres(_cfg(f"host=127.0.0.1 port={port} user=x dbname=x",
                                   connect_timeout=0.5))
        elapsed = time.monotonic() - start
    finally:
        listener.close()
    assert elapsed < 0.5 + 1.0  # a deadline: libpq alone would wait at least 2 s
    assert not snap.reachable
    assert snap.error.startswith("no answer within connect_timeout")
    assert snap.duration == pytest.approx(elapsed, abs=0.2)


def test_malformed_dsn_is_a_reason_not_an_exception():
    snap = probe_postgres(_cfg("this is not a dsn"))
    assert not snap.reachable
    assert snap.error.startswith("invalid dsn:")


def test_injected_clock_measures_duration():
    ticks = iter([100.0, 107.5])
    snap = probe_postgres(_cfg("this is not a dsn"), clock=lambda: next(ticks))
    assert snap.duration == 7.5


# ------------------------------------------------------------ real servers


@pytest.mark.postgres
def test_primary_snapshot(pg):
    pg.write(1)
    pg.wait_replayed()
    snap = probe_postgres(_cfg(pg.primary_dsn))
    assert snap.answered and snap.in_recovery is False
    assert snap.server_version >= 120000
    assert snap.current_lsn is not None
    assert snap.receive_lsn is None and snap.replay_lsn is None and snap.replay_paused is None
    assert snap.walreceiver is None
    (sender,) = [s for s in snap.walsenders if s.application_name == "standby1"]
    assert sender.state == "streaming" and sender.client_addr == "127.0.0.1"
    assert sender.replay_lag_bytes is not None and sender.replay_lag_bytes >= 0
    assert sender.backend_start is not None and sender.backend_age >= 0
    assert not sender.is_backup


@pytest.mark.postgres
def test_standby_snapshot_over_the_unix_socket(pg):
    pg.write(1)
    pg.wait_replayed()
    snap = probe_postgres(_cfg(pg.dsn("standby", socket_dir=True)))
    assert snap.answered and snap.in_recovery is True
    assert snap.current_lsn is None and snap.walsenders == ()
    assert snap.replay_paused == "not paused"
    assert snap.receive_lsn is not None and snap.replay_lsn is not None
    assert snap.last_replay_age is not None
    receiver = snap.walreceiver
    assert receiver is not None and receiver.status == "streaming"
    assert (receiver.sender_host, receiver.sender_port) == ("127.0.0.1", pg.port("primary"))
    assert receiver.last_msg_receipt_age is not None and receiver.received_lsn is not None


@pytest.mark.postgres
def test_session_settings_keep_the_dsn_options(pg):
    seen: Dict[str, Any] = {}

    def connect(dsn: str, **kwargs: Any) -> Any:
        import psycopg

        conn = psycopg.connect(dsn, **kwargs)
        for name in ("statement_timeout", "default_transaction_read_only", "work_mem",
                     "application_name"):
            seen[name] = conn.execute(f"SHOW {name}").fetchone()[0]
        seen["kwargs"] = kwargs
        return conn

    dsn = pg.primary_dsn + " options='-c work_mem=7MB'"
    snap = probe_postgres(_cfg(dsn, query_timeout=2.5), connect=connect)
    assert snap.answered
    assert seen["statement_timeout"] == "2500ms"
    assert seen["default_transaction_read_only"] == "on"
    assert seen["work_mem"] == "7MB"
    assert seen["application_name"] == "ha-watchdog"
    assert seen["kwargs"]["connect_timeout"] == 2  # libpq's minimum; our deadline is outside


@pytest.mark.postgres
def test_frozen_backend_is_cut_off_at_query_timeout(pg):
    """Connected, then the backend stops: the socket is shut down from outside in time."""
    frozen: List[int] = []

    def connect_then_freeze(dsn: str, **kwargs: Any) -> Any:
        import psycopg

        conn = psycopg.connect(dsn, **kwargs)
        frozen.append(conn.info.backend_pid)
        os.kill(conn.info.backend_pid, signal.SIGSTOP)
        return conn

    try:
        start = time.monotonic()
        snap = probe_postgres(_cfg(pg.standby_dsn, connect_timeout=2.0, query_timeout=1.0),
                              connect=connect_then_freeze)
        elapsed = time.monotonic() - start
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    assert elapsed < 2.0 + 1.0 + 0.5  # connect_timeout + query_timeout, not "forever"
    assert snap.reachable and not snap.answered
    assert snap.error.startswith("connected, but no answer within query_timeout 1.0s")
    assert snap.server_version is not None


@pytest.mark.postgres
def test_backup_sessions_on_the_standby(pg):
    import psycopg

    with psycopg.connect(pg.standby_dsn, application_name="pg_dump") as dump:
        snap = probe_postgres(_cfg(pg.standby_dsn))
        (backup,) = [b for b in snap.backups if b.pid == dump.info.backend_pid]
        assert backup.application_name == "pg_dump" and backup.kind == SESSION
        assert backup.age is not None and backup.age >= 0
        assert backup.started is not None and abs(backup.started - time.time()) < 3600
        off = probe_postgres(_cfg(pg.standby_dsn), BackupConfig(detect=False))
        assert off.answered and off.backups == ()
        # Our own session never counts, whatever application_name the DSN sets.
        own = probe_postgres(_cfg(pg.standby_dsn + " application_name=pg_dumpall"))
        assert [b.application_name for b in own.backups] == ["pg_dump"]


@pytest.mark.postgres
def test_running_basebackup_seen_on_primary_and_not_counted_as_standby(pg):
    target = os.path.join(pg.base_dir, "basebackup")
    argv = [os.path.join(pg.bindir, "pg_basebackup"), "-D", target, "-X", "stream", "-c",
            "fast", "--max-rate=32k", "-d", f"host=127.0.0.1 port={pg.port('primary')} "
            "user=replicator"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", pg.os_user, "--"] + argv
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        snap: PgSnapshot = probe_postgres(_cfg(pg.primary_dsn))
        while time.monotonic() < deadline and not any(
                b.kind == WALSENDER and b.application_name == "pg_basebackup"
                for b in snap.backups):
            time.sleep(0.1)
            snap = probe_postgres(_cfg(pg.primary_dsn))
        assert any(b.kind == WALSENDER for b in snap.backups), snap
        assert any(s.state == "backup" and s.is_backup for s in snap.walsenders)
        result = check_standbys(snap, StandbysConfig())
        assert result.status == Status.OK
        assert result.details["streaming"] == 1
        assert [e["application_name"] for e in result.details["standbys"]] == ["standby1"]
        assert result.details["backup_walsenders"]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ------------------------------------------------------------ a standby read twice


def _standby_row(receive: str = "0/3000100", replay: str = "0/3000000",
                 paused: Any = "not paused", age: Any = 60.0, in_recovery: bool = True
                 ) -> tuple:
    return (in_recovery, 160000, None, receive, replay, paused, age, None, None, None)


def test_only_an_unreplayed_gap_after_idle_is_read_again():
    assert _replay_gap_suspect(_standby_row())
    assert not _replay_gap_suspect(_standby_row(receive="0/3000000"))  # all replayed
    assert not _replay_gap_suspect(_standby_row(paused="paused"))  # the pause explains it
    assert not _replay_gap_suspect(_standby_row(paused="pause requested"))
    assert not _replay_gap_suspect(_standby_row(age=RESAMPLE_MIN_AGE / 2))  # lag is small
    assert not _replay_gap_suspect(_standby_row(age=None))  # nothing replayed yet
    assert not _replay_gap_suspect(_standby_row(receive=None))
    assert not _replay_gap_suspect(_standby_row(in_recovery=False))


@pytest.mark.postgres
@pytest.mark.slow
def test_a_gap_gone_on_the_second_read_is_no_lag(pg_private):
    """After an idle stretch a commit is received but not yet replayed (held for 1.5 s here by
    recovery_min_apply_delay, in production for a few ms): a single read says lag = the idle
    time. Read again once it is replayed: lag 0. Read again too early: the lag stands."""
    pg = pg_private
    pg.query("standby", "ALTER SYSTEM SET recovery_min_apply_delay = '1500ms'")
    pg.query("standby", "SELECT pg_reload_conf()")
    lag_cfg = ReplayLagConfig(warning=1.0, critical=60.0)
    seen = {}
    for name, resample_after in (("once", None), ("too early", 0.1), ("replayed", 2.5)):
        pg.write(1)
        pg.wait_replayed(timeout=10)
        time.sleep(1.2)  # idle: the last replayed commit ages past warning
        lsn = pg.write(1)
        deadline = time.monotonic() + 5
        while parse_lsn(pg.scalar("standby", "SELECT pg_last_wal_receive_lsn()::text")) < lsn:
            assert time.monotonic() < deadline, "the commit never reached the standby"
            time.sleep(0.01)
        snap = probe_postgres(_cfg(pg.standby_dsn, query_timeout=10.0),
                              resample_after=resample_after)
        seen[name] = (snap, check_replay_lag(snap, lag_cfg))

    snap, result = seen["once"]
    assert not snap.resampled and snap.replay_gap_bytes > 0 and snap.last_replay_age > 1.0
    assert result.status == Status.WARNING, result.summary
    snap, result = seen["too early"]
    assert snap.resampled and snap.replay_gap_bytes > 0, snap
    assert result.status == Status.WARNING and result.details["resampled"] is True
    snap, result = seen["replayed"]
    assert snap.resampled and snap.replay_gap_bytes == 0, snap
    assert result.status == Status.OK and result.details["lag_seconds"] == 0.0, result.summary
    assert snap.duration >= 2.5
