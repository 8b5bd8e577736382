"""replay_lag: pure verdicts from hand-built and recorded snapshots, then the real pair."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Dict, Optional

import pytest

from watchdog.checks.replay_lag import check_replay_lag, limits
from watchdog.config import PostgresConfig, ReplayLagConfig
from watchdog.model import Status
from watchdog.probes.postgres import PgSnapshot, WalReceiver, parse_lsn, probe_postgres

MB = 1024**2


def interval_seconds(text: str) -> float:
    """psql's '00:01:01.025834' -> 61.025834."""
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def timestamp(text: str) -> datetime:
    """psql's '2026-11-25 09:43:00.640817+00' (Python 3.9 wants '+00:00')."""
    return datetime.fromisoformat(text + ":00")


def receiver(**overrides: Any) -> WalReceiver:
    values: Dict[str, Any] = {
        "pid": 100, "status": "streaming", "sender_host": "10.0.0.1", "sender_port": 5432,
        "received_lsn": parse_lsn("0/3016070"), "last_msg_receipt_age": 0.3,
    }
    values.update(overrides)
    return WalReceiver(**values)


def standby(**overrides: Any) -> PgSnapshot:
    """A healthy, caught-up standby on an idle primary; override what a test is about."""
    values: Dict[str, Any] = {
        "reachable": True, "in_recovery": True, "server_version": 150020,
        "receive_lsn": parse_lsn("0/3016070"), "replay_lsn": parse_lsn("0/3016070"),
        "replay_paused": "not paused", "last_replay_age": 61.0, "walreceiver": receiver(),
    }
    values.update(overrides)
    return PgSnapshot(**values)


CFG = ReplayLagConfig(warning=5.0, critical=10.0, warning_bytes=16 * MB,
                      critical_bytes=256 * MB, max_receive_age=30.0,
                      backup_warning=600.0, backup_critical=1200.0)


# ------------------------------------------------------------ recorded states


def test_idle_primary_recorded_is_ok_although_naive_delay_is_61s(pg_sample):
    (functions,) = pg_sample("09")  # primary idle 60 s, standby caught up
    (liveness,) = pg_sample("23")  # walreceiver 45 s into an idle primary
    naive = interval_seconds(functions["replay_delay"])
    assert naive > CFG.critical
    snap = standby(
        receive_lsn=parse_lsn(functions["pg_last_wal_receive_lsn"]),
        replay_lsn=parse_lsn(functions["pg_last_wal_replay_lsn"]),
        last_replay_age=naive,
        walreceiver=receiver(status=liveness["status"],
                             last_msg_receipt_age=interval_seconds(liveness["since_last_msg"])),
    )
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.OK, result.summary
    assert result.details["lag_seconds"] == 0.0
    assert result.details["lag_bytes"] == 0
    assert result.details["naive_lag_seconds"] == pytest.approx(61.026, abs=0.001)
    assert "lag 0.0s, 0 B not replayed" in result.summary


def test_primary_down_recorded_is_critical_not_receiving(pg_sample):
    (functions,) = pg_sample("17")  # LSNs equal ("caught up") with the primary stopped
    assert pg_sample("16") == []  # and pg_stat_wal_receiver had no row
    assert functions["pg_last_wal_receive_lsn"] == functions["pg_last_wal_replay_lsn"]
    snap = standby(
        receive_lsn=parse_lsn(functions["pg_last_wal_receive_lsn"]),
        replay_lsn=parse_lsn(functions["pg_last_wal_replay_lsn"]),
        last_replay_age=interval_seconds(functions["replay_delay"]),
        walreceiver=None,
    )
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.CRITICAL
    assert result.summary.startswith("not receiving WAL: no WAL receiver process")
    assert result.details["lag_seconds"] is None  # unknown, never a reassuring 0
    # Still CRITICAL with backup limits: a pg_basebackup does not stop the walreceiver.
    relaxed = check_replay_lag(snap, CFG, relaxed=True)
    assert relaxed.status == Status.CRITICAL
    assert "not receiving WAL" in relaxed.summary


def test_paused_recorded_is_reported_as_paused(pg_sample):
    (paused,) = pg_sample("14")
    (primary_view,) = pg_sample("15")  # same moment, seen from the primary
    age = (timestamp(primary_view["reply_time"])
           - timestamp(paused["pg_last_xact_replay_timestamp"])).total_seconds()
    snap = standby(
        receive_lsn=parse_lsn(paused["pg_last_wal_receive_lsn"]),
        replay_lsn=parse_lsn(paused["pg_last_wal_replay_lsn"]),
        replay_paused=paused["pg_get_wal_replay_pause_state"],
        last_replay_age=age,
    )
    result = check_replay_lag(snap, ReplayLagConfig())  # default limits: 60 s / 5 min
    assert result.status == Status.WARNING
    assert "replay paused by an operator" in result.summary
    assert result.details["lag_bytes"] == 0x3016110 - 0x3016070
    assert result.details["lag_seconds"] == pytest.approx(age, abs=0.001)
    assert result.details["replay_paused"] == "paused"


def test_promoted_server_is_not_a_standby(pg_sample):
    (functions,) = pg_sample("20")  # pg_last_* keep old values after promotion
    assert functions["pg_is_in_recovery"] == "f"
    assert pg_sample("21") == []
    snap = PgSnapshot(reachable=True, in_recovery=False, server_version=150020,
                      current_lsn=parse_lsn(functions["pg_current_wal_lsn"]))
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.UNKNOWN
    assert "not in recovery" in result.summary and "postgres_role" in result.summary


# ------------------------------------------------------------ hand-built branches


def test_unreachable_is_unknown_with_reason():
    snap = PgSnapshot(reachable=False, error="connection refused")
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.UNKNOWN
    assert result.summary == "PostgreSQL unreachable: connection refused (see postgres_role)"


def test_query_failure_is_unknown():
    snap = PgSnapshot(reachable=True, error="query failed: permission denied")
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.UNKNOWN
    assert "permission denied" in result.summary


@pytest.mark.parametrize("status", ["waiting", "starting", "restarting", "stopping"])
def test_walreceiver_not_streaming_is_critical(status):
    result = check_replay_lag(standby(walreceiver=receiver(status=status)), CFG)
    assert result.status == Status.CRITICAL
    assert result.summary.startswith(f"not receiving WAL: WAL receiver is {status}")


def test_no_message_from_primary_for_too_long_is_critical():
    snap = standby(walreceiver=receiver(last_msg_receipt_age=31.0))
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.CRITICAL
    assert "no message from the primary for 31s (limit 30s)" in result.summary


def test_receipt_age_at_limit_is_fine_and_unknown_age_is_not_a_failure():
    assert check_replay_lag(standby(walreceiver=receiver(last_msg_receipt_age=30.0)),
                            CFG).status == Status.OK
    assert check_replay_lag(standby(walreceiver=receiver(last_msg_receipt_age=None)),
                            CFG).status == Status.OK


def test_hidden_walreceiver_state_is_unknown():
    result = check_replay_lag(standby(walreceiver=receiver(status=None)), CFG)
    assert result.status == Status.UNKNOWN
    assert "pg_monitor" in result.summary


@pytest.mark.parametrize("age,expected", [(4.9, Status.OK), (5.0, Status.WARNING),
                                          (9.0, Status.WARNING), (10.0, Status.CRITICAL)])
def test_time_lag_counts_while_wal_is_pending(age, expected):
    snap = standby(receive_lsn=parse_lsn("0/3016110"), last_replay_age=age)
    result = check_replay_lag(snap, CFG)
    assert result.status == expected, result.summary
    assert result.details["lag_seconds"] == age
    assert result.details["lag_bytes"] == 0xA0


@pytest.mark.parametrize("gap,expected", [(16 * MB - 1, Status.OK), (16 * MB, Status.WARNING),
                                          (256 * MB, Status.CRITICAL)])
def test_byte_lag_limits(gap, expected):
    replay = parse_lsn("1/0")
    snap = standby(receive_lsn=replay + gap, replay_lsn=replay, last_replay_age=0.5)
    result = check_replay_lag(snap, CFG)
    assert result.status == expected, result.summary
    assert result.details["lag_bytes"] == gap


def test_receive_behind_replay_reads_zero_bytes_not_negative():
    # Right after a restart pg_last_wal_receive_lsn() is the segment start, before replay.
    snap = standby(receive_lsn=parse_lsn("0/3000000"), replay_lsn=parse_lsn("0/3016038"))
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.OK
    assert result.details["lag_bytes"] == 0


def test_pending_wal_without_replayed_transaction_uses_bytes_only():
    snap = standby(receive_lsn=parse_lsn("0/3016110"), last_replay_age=None)
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.OK
    assert result.details["lag_seconds"] is None
    assert "no transaction replayed since the standby started" in result.summary


def test_pause_requested_counts_as_paused_even_with_nothing_pending():
    snap = standby(replay_paused="pause requested", last_replay_age=2.0)
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.WARNING
    assert "replay pause requested by an operator" in result.summary
    assert result.details["lag_seconds"] == 2.0


def test_paused_and_old_enough_is_critical():
    snap = standby(replay_paused="paused", receive_lsn=parse_lsn("0/4000000"),
                   last_replay_age=11.0)
    result = check_replay_lag(snap, CFG)
    assert result.status == Status.CRITICAL
    assert result.summary.startswith("replay lag 11s >= 10s")
    assert "paused" in result.summary


def test_relaxed_uses_backup_limits_and_says_so():
    snap = standby(receive_lsn=parse_lsn("0/3016110"), last_replay_age=300.0)
    assert check_replay_lag(snap, CFG).status == Status.CRITICAL
    result = check_replay_lag(snap, CFG, relaxed=True)
    assert result.status == Status.OK
    assert result.summary.endswith("[backup limits applied]")
    assert result.details["backup_limits_applied"] is True
    assert result.details["limits"]["warning"] == 600.0
    late = check_replay_lag(standby(receive_lsn=parse_lsn("0/3016110"), last_replay_age=700.0),
                            CFG, relaxed=True)
    assert late.status == Status.WARNING
    assert "replay lag 11m40s >= 10m00s" in late.summary


def test_relaxed_byte_limits_scale_with_the_time_limits():
    lim = limits(CFG, relaxed=True)
    assert lim["warning_bytes"] == 16 * MB * 120  # 600 s / 5 s
    assert lim["critical_bytes"] == 256 * MB * 120  # 1200 s / 10 s
    # Backup limits that are smaller than the normal ones never make it stricter.
    odd = ReplayLagConfig(warning=60.0, critical=300.0, backup_warning=30.0,
                          backup_critical=60.0)
    assert limits(odd, relaxed=True)["warning_bytes"] == odd.warning_bytes
    snap = standby(receive_lsn=parse_lsn("1/0") + 100 * MB, replay_lsn=parse_lsn("1/0"),
                   last_replay_age=1.0)
    assert check_replay_lag(snap, CFG).status == Status.WARNING
    assert check_replay_lag(snap, CFG, relaxed=True).status == Status.OK


def test_relaxed_pause_is_named_but_not_a_warning_by_itself():
    snap = standby(replay_paused="paused", last_replay_age=3.0)
    result = check_replay_lag(snap, CFG, relaxed=True)
    assert result.status == Status.OK
    assert "replay paused by an operator" in result.summary
    assert "[backup limits applied]" in result.summary


def test_details_are_json_serialisable():
    import json

    snap = standby(receive_lsn=parse_lsn("0/3016110"), last_replay_age=6.0)
    data = check_replay_lag(snap, CFG).to_json()
    assert json.loads(json.dumps(data))["details"]["receive_lsn"] == "0/3016110"


# ------------------------------------------------------------ the real pair

def _probe(dsn: str, **kw: Any) -> PgSnapshot:
    return probe_postgres(PostgresConfig(dsn=dsn, connect_timeout=2.0, query_timeout=3.0), **kw)


def _probe_until(dsn: str, condition, timeout: float = 10.0) -> Optional[PgSnapshot]:
    """Probe until `condition(snapshot)` holds (bounded); that snapshot or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = _probe(dsn)
        if condition(snap):
            return snap
        time.sleep(0.05)
    return None


def _next_xid(pg) -> int:
    """The primary's next transaction id; reading it assigns none (unlike txid_current)."""
    return int(pg.scalar("primary", "SELECT txid_snapshot_xmax(txid_current_snapshot())"))


def _idle_standby_snapshot(pg, seconds: float, attempts: int = 3) -> PgSnapshot:
    """The standby's snapshot after `seconds` in which the primary committed nothing.

    The shared cluster's autovacuum may analyze a catalog (a commit, which moves the replay
    timestamp) at any time; a window with any transaction in it is not the premise, so it
    is tried again, and a test that never gets a quiet window fails saying so.
    """
    for _ in range(attempts):
        pg.write(1)
        pg.wait_replayed()
        before = _next_xid(pg)
        time.sleep(seconds)  # the primary writes nothing
        snap = _probe(pg.standby_dsn)
        if _next_xid(pg) == before:
            return snap
    raise AssertionError(f"the primary was never idle for {seconds} s in {attempts} tries: "
                         + repr(pg.query("primary", "SELECT pid, backend_type, query "
                                                    "FROM pg_stat_activity")))


@pytest.mark.slow  # 20-60 s of an idle pair; the server's behaviour, not Python's
@pytest.mark.postgres
def test_real_idle_primary_does_not_false_alarm(pg):
    snap = _idle_standby_snapshot(pg, 20)
    assert snap.last_replay_age is not None and snap.last_replay_age > 5.0  # the naive value
    cfg = ReplayLagConfig(warning=5.0, critical=10.0)
    result = check_replay_lag(snap, cfg)
    assert result.status == Status.OK, result.summary
    assert result.details["lag_seconds"] == 0.0
    assert result.details["walreceiver"]["status"] == "streaming"


@pytest.mark.postgres
def test_real_paused_replay_while_primary_writes(pg):
    pg.write(1)
    pg.wait_replayed()
    pg.pause_replay()
    pg.write(500)
    snap = _probe_until(pg.standby_dsn, lambda s: bool(s.replay_gap_bytes))
    assert snap is not None, "the paused standby never received the new WAL"
    assert snap.replay_paused == "paused"
    result = check_replay_lag(snap, ReplayLagConfig())
    assert result.status in (Status.WARNING, Status.CRITICAL)
    assert "paused" in result.summary
    assert result.details["lag_bytes"] > 0
    pg.resume_replay()
    pg.wait_replayed()
    assert check_replay_lag(_probe(pg.standby_dsn), ReplayLagConfig()).status == Status.OK


@pytest.mark.postgres
def test_real_primary_stopped_is_not_receiving_although_lsns_are_equal(pg):
    pg.write(1)
    pg.wait_replayed()
    pg.stop_primary()
    snap = _probe_until(pg.standby_dsn,
                        lambda s: s.walreceiver is None and s.receive_lsn == s.replay_lsn)
    assert snap is not None, "walreceiver still listed with the primary stopped"
    assert snap.receive_lsn is not None and snap.receive_lsn == snap.replay_lsn
    result = check_replay_lag(snap, ReplayLagConfig())
    assert result.status == Status.CRITICAL
    assert "not receiving WAL" in result.summary
    pg.start_primary()


@pytest.mark.postgres
def test_real_frozen_walreceiver_is_not_receiving(pg):
    pg.write(1)
    pg.wait_replayed()
    pg.freeze_walreceiver()
    time.sleep(2.5)
    snap = _probe(pg.standby_dsn)
    assert snap.walreceiver is not None and snap.walreceiver.status == "streaming"
    result = check_replay_lag(snap, ReplayLagConfig(max_receive_age=2.0))
    assert result.status == Status.CRITICAL
    assert "not receiving WAL: no message from the primary for" in result.summary
    pg.thaw_walreceiver()


@pytest.mark.postgres
def test_real_replay_lag_on_the_primary_is_a_wrong_role(pg):
    result = check_replay_lag(_probe(pg.primary_dsn), ReplayLagConfig())
    assert result.status == Status.UNKNOWN
    assert "not in recovery" in result.summary


def test_recheck_in_is_when_the_primary_silence_passes_the_limit():
    result = check_replay_lag(standby(walreceiver=receiver(last_msg_receipt_age=12.0)), CFG)
    assert result.status == Status.OK and result.details["recheck_in"] == 18.0
    assert result.recheck_in == 18.0  # typed: what the daemon reads
    gone = check_replay_lag(standby(walreceiver=None), CFG)
    assert gone.status == Status.CRITICAL and gone.details["recheck_in"] is None
    assert gone.recheck_in is None


# ------------------------------------------------------------ versions and the canary

from watchdog.probes.postgres import ReceiverProcess  # noqa: E402


def standby95(**overrides: Any) -> PgSnapshot:
    """A caught-up 9.5 standby: no pg_stat_wal_receiver, its receiver seen in /proc."""
    values: Dict[str, Any] = {
        "server_version": 90501, "walreceiver": None, "server_age": 3600.0,
        "receiver_process": ReceiverProcess(found=True, pid=42, status="streaming",
                                            lsn=parse_lsn("0/3016070"), state="S"),
    }
    values.update(overrides)
    return standby(**values)


def test_95_with_canary_fresh_is_ok_naming_its_evidence():
    result = check_replay_lag(standby95(last_replay_age=20.0), CFG, canary=True)
    assert result.status == Status.OK, result.summary
    assert result.details["evidence"] == "canary + process title"
    assert result.details["canary_age"] == 20.0 and result.details["canary_stale"] is False
    assert result.details["walreceiver"] is None
    assert result.details["walreceiver_process"]["status"] == "streaming"
    assert result.details["recheck_in"] == 10.0  # when the canary would pass max_receive_age
    assert "canary 20s old" in result.summary


@pytest.mark.parametrize("version", [90501, 100023, 150020])
def test_stale_canary_with_everything_replayed_is_not_receiving(version):
    snap = standby95(server_version=version, last_replay_age=95.0)
    if version >= 90600:  # the receiver looks alive, but its view is hidden
        snap = standby(server_version=version, last_replay_age=95.0,
                       walreceiver=receiver(status=None, last_msg_receipt_age=None))
    result = check_replay_lag(snap, CFG, canary=True)
    assert result.status == Status.CRITICAL
    assert "not receiving WAL: the primary's last canary replayed here is 1m35s old " \
           "(limit 30s)" in result.summary
    assert result.details["evidence"].startswith("canary")
    assert result.details["lag_seconds"] is None and result.details["canary_stale"] is True


def test_stale_canary_but_streaming_view_blames_the_primarys_canary_not_replication():
    result = check_replay_lag(standby(last_replay_age=95.0), CFG, canary=True)
    assert result.status == Status.OK
    assert "is the primary's watchdog running with [canary] on?" in result.summary
    assert result.details["evidence"] == "pg_stat_wal_receiver"


def test_hidden_view_is_proven_by_a_fresh_canary():
    snap = standby(walreceiver=receiver(status=None, last_msg_receipt_age=None),
                   last_replay_age=12.0)
    assert check_replay_lag(snap, CFG).status == Status.UNKNOWN  # canary off: as before
    result = check_replay_lag(snap, CFG, canary=True)
    assert result.status == Status.OK and result.details["evidence"] == "canary"


def test_95_receiver_gone_or_stopped_is_critical_without_the_canary():
    gone = check_replay_lag(standby95(receiver_process=ReceiverProcess(found=False)), CFG)
    assert gone.status == Status.CRITICAL
    assert "not receiving WAL: no WAL receiver process" in gone.summary
    assert gone.details["evidence"] == "process title"
    stopped = standby95(receiver_process=ReceiverProcess(found=True, pid=42, state="T",
                                                         status="streaming"))
    result = check_replay_lag(stopped, CFG)
    assert result.status == Status.CRITICAL and "42 is stopped (process state T)" in result.summary
    waiting = standby95(receiver_process=ReceiverProcess(found=True, pid=42, state="S",
                                                         status="restarting"))
    assert "WAL receiver is restarting" in check_replay_lag(waiting, CFG, canary=True).summary


def test_95_without_canary_says_what_to_enable_instead_of_a_silent_ok():
    idle = check_replay_lag(standby95(last_replay_age=600.0), CFG)
    assert idle.status == Status.UNKNOWN
    assert "PostgreSQL 9.5 has no pg_stat_wal_receiver" in idle.summary
    assert "[canary] is off" in idle.summary and "[canary]" in idle.details["advice"]
    assert idle.details["lag_seconds"] is None
    busy = check_replay_lag(standby95(last_replay_age=2.0), CFG)
    assert busy.status == Status.OK
    assert busy.details["evidence"] == "process title + last replayed transaction"
    blind = standby95(last_replay_age=600.0,
                      receiver_process=ReceiverProcess(found=False, error="hidepid"))
    unknown = check_replay_lag(blind, CFG)
    assert unknown.status == Status.UNKNOWN and "hidepid" in unknown.summary


def test_no_transaction_since_start_counts_against_the_canary_after_the_limit():
    young = check_replay_lag(standby95(last_replay_age=None, server_age=10.0), CFG, canary=True)
    assert young.status == Status.OK
    old = check_replay_lag(standby95(last_replay_age=None, server_age=300.0), CFG, canary=True)
    assert old.status == Status.CRITICAL
    assert "no transaction replayed since the standby started 5m00s ago" in old.summary


@pytest.mark.parametrize("version", [90501, 150020])
def test_clock_skew_is_reported_not_hidden(version):
    snap = standby95(server_version=version, last_replay_age=-4.0)
    if version >= 90600:
        snap = standby(last_replay_age=-4.0)
    result = check_replay_lag(snap, CFG, canary=True)
    assert result.status == Status.WARNING
    assert "clock skew: this standby's clock is at least 4.0s behind" in result.summary
    assert result.details["clock_skew_seconds"] == 4.0 and result.details["lag_seconds"] == 0.0
    small = check_replay_lag(standby95(last_replay_age=-0.2), CFG, canary=True)
    assert small.status == Status.OK and small.details["clock_skew_seconds"] == 0.2


@pytest.mark.parametrize("version", [90501, 150020])
def test_paused_replay_gives_the_same_levels_on_95_and_15(version):
    behind = {"receive_lsn": parse_lsn("0/4000000"), "replay_paused": "paused",
              "last_replay_age": 3.0}
    snap = standby95(**behind) if version < 90600 else standby(**behind)
    result = check_replay_lag(snap, CFG, canary=True)
    assert result.status == Status.WARNING, result.summary
    assert "replay paused by an operator" in result.summary
    late = dict(behind, last_replay_age=95.0)
    snap = standby95(**late) if version < 90600 else standby(**late)
    result = check_replay_lag(snap, CFG, canary=True)
    assert result.status == Status.CRITICAL and "replay lag 1m35s >= 10s" in result.summary
    assert "not receiving" not in result.summary  # paused, not broken
