"""The PostgreSQL probe: LSNs, per-version queries, deadlines (real sockets), real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import Any, Dict, List

import pytest

from lab.pgcluster import free_port
from watchdog.checks.replay_lag import check_replay_lag
from watchdog.checks.standbys import check_standbys
from watchdog.config import BackupConfig, PostgresConfig, ReplayLagConfig, StandbysConfig
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
        deadline = time.monotonic() + 30  # a loaded machine starts pg_basebackup slowly

        def started(snap: PgSnapshot) -> bool:
            # Its walsender shows in pg_stat_activity before BASE_BACKUP puts it in state
            # "backup" (seen under load): wait for both.
            return any(b.kind == WALSENDER and b.application_name == "pg_basebackup"
                       for b in snap.backups) and any(s.state == "backup"
                                                      for s in snap.walsenders)

        snap: PgSnapshot = probe_postgres(_cfg(pg.primary_dsn))
        while time.monotonic() < deadline and not started(snap):
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


# ------------------------------------------------------------ versions 9.5 - 18 (pure)

from watchdog.probes.postgres import (  # noqa: E402
    CanaryWrite,
    WalSender,
    build_canary,
    find_receiver_process,
    parse_receiver_title,
    sql_names,
    track,
)

VERSIONS = (90501, 90624, 100023, 110022, 120022, 130023, 140023, 150020, 160010, 170006,
            180001)


@pytest.mark.parametrize("version", VERSIONS)
def test_query_uses_each_versions_names(version):
    query = build_query(version, with_backups=True)
    old = version < 100000
    for name in ("pg_current_xlog_location()", "pg_last_xlog_receive_location()",
                 "pg_last_xlog_replay_location()", "pg_is_xlog_replay_paused()",
                 "sent_location", "write_location", "flush_location", "replay_location"):
        assert (name in query) == old, name
    for name in ("pg_current_wal_lsn()", "pg_last_wal_receive_lsn()",
                 "pg_last_wal_replay_lsn()", "sent_lsn::", "flush_lsn::"):
        assert (name in query) == (not old), name
    assert ("FROM pg_stat_wal_receiver" in query) == (version >= 90600)
    assert ("reply_time" in query) == (version >= 120000)
    assert ("pg_get_wal_replay_pause_state()" in query) == (version >= 140000)
    assert ("'backend_type', backend_type" in query) == (version >= 100000)
    assert ("sender_host" in query) == (version >= 110000)
    assert ("flushed_lsn" in query) == (version >= 130000)
    assert ("received_lsn::text" in query) == (90600 <= version < 130000)
    # The row has the same shape everywhere: 12 columns, the same names.
    assert query.count(" AS ") >= 12 and "AS server_age" in query and "AS backend_pid" in query


@pytest.mark.parametrize("version", VERSIONS)
def test_canary_statement_per_version(version):
    sql = build_canary(version)
    assert ("txid_current()" in sql) == (version < 130000)
    assert ("pg_current_xact_id()" in sql) == (version >= 130000)
    insert = "pg_current_xlog_insert_location()" if version < 100000 else \
        "pg_current_wal_insert_lsn()"
    assert insert in sql
    # Never on a server in recovery; never waits for a synchronous standby.
    assert sql.count("WHEN NOT pg_is_in_recovery()") == 2
    assert "set_config('synchronous_commit', 'local', true)" in sql
    assert sql_names(version).xact_id in sql


def test_receiver_titles_of_every_version():
    assert parse_receiver_title("postgres: wal receiver process   streaming 0/3000060") == (
        "streaming", 0x3000060)
    assert parse_receiver_title("postgres: wal receiver process   ") == (None, None)
    assert parse_receiver_title("postgres: walreceiver streaming 1/A0") == ("streaming",
                                                                          (1 << 32) | 0xA0)
    assert parse_receiver_title("postgres: main: walreceiver restarting at 0/3000000") == (
        "restarting", None)
    for other in ("postgres: wal sender process rep 127.0.0.1(1) streaming 0/1",
                  "postgres: startup process   recovering 000000010000000000000003",
                  "/usr/lib/postgresql/9.5/bin/postgres -D /data", ""):
        assert parse_receiver_title(other) is None, other


def _fake_proc(root, pid, ppid, title, state="S", children=None):
    entry = root / str(pid)
    (entry / "task" / str(pid)).mkdir(parents=True)
    (entry / "stat").write_text(f"{pid} (post gres) {state} {ppid} 1 1 0 -1 4194560 0 0")
    (entry / "cmdline").write_bytes(title.encode() + b"\0")
    if children is not None:
        (entry / "task" / str(pid) / "children").write_text(" ".join(map(str, children)) + " ")


@pytest.mark.parametrize("kernel_children_list", [True, False])
def test_receiver_process_found_from_our_backend(tmp_path, kernel_children_list):
    kids = [201, 202, 203] if kernel_children_list else None
    _fake_proc(tmp_path, 200, 1, "/opt/pg95/bin/postgres -D /data", children=kids)
    _fake_proc(tmp_path, 201, 200, "postgres: startup process   recovering 0001")
    _fake_proc(tmp_path, 202, 200, "postgres: wal receiver process   streaming 0/3015660",
               state="T")
    _fake_proc(tmp_path, 203, 200, "postgres: postgres postgres 127.0.0.1(5) SELECT")
    _fake_proc(tmp_path, 300, 1, "postgres: wal receiver process   streaming 0/1")  # not ours
    (tmp_path / "self").mkdir()
    found = find_receiver_process(203, str(tmp_path))
    assert (found.found, found.pid, found.status, found.state) == (True, 202, "streaming", "T")
    assert found.lsn == parse_lsn("0/3015660") and found.error is None


def test_receiver_process_absent_or_unreadable(tmp_path):
    _fake_proc(tmp_path, 200, 1, "/opt/pg95/bin/postgres -D /data", children=[203])
    _fake_proc(tmp_path, 203, 200, "postgres: postgres postgres 127.0.0.1(5) SELECT")
    gone = find_receiver_process(203, str(tmp_path))
    assert gone.found is False and gone.error is None
    unknown = find_receiver_process(999, str(tmp_path))  # not on this host / hidepid
    assert unknown.found is False and "cannot read the process table" in unknown.error


def test_receiver_process_reads_are_bounded(tmp_path):
    _fake_proc(tmp_path, 200, 1, "postmaster", children=[202, 203])
    _fake_proc(tmp_path, 203, 200, "x")
    _fake_proc(tmp_path, 202, 200, "postgres: walreceiver streaming 0/1" + " " * 10**6 + "Z")
    found = find_receiver_process(203, str(tmp_path))
    assert found.found and len(found.title) <= 4096


def _primary_at(taken_at, current, flush, pid=7, canary_lsn=None, **extra):
    canary = CanaryWrite(ok=True, xid=1, before_lsn=canary_lsn) if canary_lsn else None
    sender = WalSender(pid=pid, application_name="standby1", client_addr="10.0.0.2",
                       state="streaming", flush_lsn=flush, **extra)
    return PgSnapshot(reachable=True, in_recovery=False, server_version=100023,
                      current_lsn=current, walsenders=(sender,), taken_at=taken_at,
                      canary=canary)


def test_track_flush_moving_waiting_and_carried_over_cycles():
    first = track(_primary_at(0.0, 1000, 1000, canary_lsn=1000), None)
    assert first.tracked and first.walsenders[0].flush_moved is None
    # The canary written after the first look was flushed: moved.
    moved = track(_primary_at(30.0, 1040, 1040, canary_lsn=1040), first)
    assert moved.walsenders[0].flush_moved is True
    assert moved.walsenders[0].flush_waiting_since is None
    # Hung right after: the canary of the previous cycle is still not flushed.
    hung = track(_primary_at(45.5, 1080, 1040, canary_lsn=1080), moved)
    assert hung.walsenders[0].flush_moved is False
    assert hung.walsenders[0].flush_waiting_since == 30.0
    # The waiting time is carried however many cycles follow (and however spaced).
    later = track(_primary_at(50.0, 1120, 1040), hung)
    assert later.walsenders[0].flush_waiting_since == 30.0


def test_track_idle_without_canary_and_reconnects():
    first = track(_primary_at(0.0, 1000, 1000), None)
    idle = track(_primary_at(30.0, 1000, 1000), first)
    assert idle.walsenders[0].flush_moved is False
    assert idle.walsenders[0].flush_waiting_since is None  # nothing to flush: no evidence
    # WAL that appeared between two looks: waiting from now on (when exactly is unknown).
    fresh = track(_primary_at(60.0, 1200, 1000), idle)
    assert fresh.walsenders[0].flush_waiting_since == 60.0
    # A reconnected standby (new walsender pid) starts afresh.
    again = track(_primary_at(90.0, 1300, 1000, pid=8), fresh)
    assert again.walsenders[0].flush_moved is None
    # A standby, an unanswered probe or a probe without a clock are never compared.
    down = PgSnapshot(reachable=False, error="x", taken_at=95.0)
    assert track(down, again) is down
    assert track(_primary_at(99.0, 1300, 1000, pid=8), down).walsenders[0].flush_moved is None


# ------------------------------------------------------------ the canary (real server)

from watchdog.config import CanaryConfig  # noqa: E402


@pytest.mark.postgres
def test_canary_commits_with_the_standby_gone_synchronous(pg):
    """A synchronous standby that never answers holds every normal commit; the canary's
    commit is local and returns at once, and the standby replays it once it streams."""
    pg.query("primary", "ALTER SYSTEM SET synchronous_standby_names = 'nobody_here'")
    pg.query("primary", "SELECT pg_reload_conf()")
    try:
        time.sleep(0.3)
        snap = probe_postgres(_cfg(pg.primary_dsn), canary=CanaryConfig(timeout=2.0))
        assert snap.answered and snap.canary is not None
        assert snap.canary.ok, snap.canary
        assert snap.canary.duration < 2.0 and snap.canary.xid > 0
    finally:
        pg.query("primary", "ALTER SYSTEM RESET synchronous_standby_names")
        pg.query("primary", "SELECT pg_reload_conf()")
    pg.wait_replayed()
    assert pg.scalar("standby", "SELECT pg_last_xact_replay_timestamp() IS NOT NULL")


@pytest.mark.postgres
class _SlowCanary:
    """A real connection on which the canary's statement waits in the server first (a
    deadline of 1 microsecond alone raced with a canary done in half a millisecond)."""

    def __init__(self, conn: Any):
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, sql: str, params: Any = None) -> Any:
        if "set_config('synchronous_commit'" in sql:
            self._conn.execute("SELECT pg_sleep(30)")
        return self._conn.execute(sql, params)


def test_canary_deadline_is_its_own_and_its_failure_a_result(pg):
    """A canary that misses its deadline is shut down from outside and reported; the
    snapshot itself is complete (the probe's answer came first)."""
    import psycopg

    def connect(dsn: str, **kwargs: Any) -> Any:
        return _SlowCanary(psycopg.connect(dsn, **kwargs))

    snap = probe_postgres(_cfg(pg.primary_dsn), canary=CanaryConfig(timeout=0.2),
                          connect=connect)
    assert snap.answered and snap.walsenders
    assert snap.canary is not None and not snap.canary.ok
    assert "no answer within [canary] timeout" in snap.canary.error
    # The wal facts come after the canary on the same connection: said, not waited for.
    assert snap.wal is not None and "[canary] timeout" in snap.wal.error


@pytest.mark.postgres
def test_failed_canary_is_reported_by_postgres_role_and_logged_once(pg, tmp_path, caplog):
    """A hardened server where the watchdog's role may not take a transaction id: the probe
    still answers, the failed canary is in postgres_role (verdict unchanged) and logged at
    WARNING once per failing stretch, tried once per cycle."""
    import logging

    from lab.drbdstate import DrbdStateFile
    from watchdog.config import Config, DrbdConfig, ServicesConfig
    from watchdog.probes.postgres import sql_names
    from watchdog.runner import run_cycle

    drbd = DrbdStateFile(str(tmp_path / "proc_drbd"))
    drbd.primary()
    xact = sql_names(int(pg.scalar("primary", "SHOW server_version_num"))).xact_id
    pg.query("primary", "CREATE ROLE canary_fails LOGIN")
    pg.query("primary", "GRANT pg_monitor TO canary_fails")
    pg.query("primary", f"REVOKE EXECUTE ON FUNCTION {xact} FROM PUBLIC")
    try:
        cfg = Config(drbd=DrbdConfig(path=drbd.path, format="proc"),
                     services=ServicesConfig(command=("true",)),
                     postgres=_cfg(pg.dsn("primary", user="canary_fails")))
        with caplog.at_level(logging.DEBUG, logger="watchdog.runner"):
            first = run_cycle(cfg)
            second = run_cycle(cfg, previous=first)
    finally:
        pg.query("primary", f"GRANT EXECUTE ON FUNCTION {xact} TO PUBLIC")
        pg.query("primary", "DROP ROLE canary_fails")
    for cycle in (first, second):
        role = {c.name: c for c in cycle.report.checks}["postgres_role"]
        assert role.status == Status.OK, role.summary
        assert role.details["canary"]["written"] is False
        assert "permission denied" in role.details["canary"]["error"]
        assert "canary write failed: " in role.summary
        standbys = {c.name: c for c in cycle.report.checks}["standbys"]
        assert standbys.status == Status.OK  # 15: reply_time does not need the canary
    failed = [r for r in caplog.records if "canary write failed" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING, logging.DEBUG]
