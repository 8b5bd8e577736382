"""standbys: pure verdicts from hand-built and recorded walsender rows, then the real pair."""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest

from watchdog.checks.standbys import check_standbys
from watchdog.config import PostgresConfig, StandbysConfig
from watchdog.model import Failure, Status
from watchdog.probes.postgres import PgSnapshot, WalSender, parse_lsn, probe_postgres

MB = 1024**2
CFG = StandbysConfig(min_streaming=1, max_reply_age=15.0, warning_bytes=64 * MB)


def sender(**overrides: Any) -> WalSender:
    values: Dict[str, Any] = {
        "pid": 23613, "application_name": "standby1", "client_addr": "10.0.0.2",
        "state": "streaming", "replay_lsn": parse_lsn("0/3016070"), "reply_age": 0.4,
        "replay_lag_bytes": 0, "backend_age": 600.0, "sync_state": "async",
    }
    values.update(overrides)
    return WalSender(**values)


def primary(*senders: WalSender, **overrides: Any) -> PgSnapshot:
    values: Dict[str, Any] = {"reachable": True, "in_recovery": False, "server_version": 150020,
                              "current_lsn": parse_lsn("0/3016070"), "walsenders": senders}
    values.update(overrides)
    return PgSnapshot(**values)


def from_record(record: Dict[str, Any], current_lsn: str, reply_age: Any) -> WalSender:
    """A WalSender from a recorded pg_stat_replication row (ages given by the test)."""
    replay = parse_lsn(record["replay_lsn"])
    return WalSender(
        pid=int(record["pid"]), application_name=record["application_name"],
        client_addr=record["client_addr"], state=record["state"],
        sent_lsn=parse_lsn(record["sent_lsn"]), write_lsn=parse_lsn(record["write_lsn"]),
        flush_lsn=parse_lsn(record["flush_lsn"]), replay_lsn=replay, reply_age=reply_age,
        replay_lag_bytes=None if replay is None else parse_lsn(current_lsn) - replay,
        sync_state=record.get("sync_state"), backend_age=0.1,
    )


# ------------------------------------------------------------ recorded states


def test_recorded_fresh_streaming_standby_is_ok(pg_sample):
    (row,) = pg_sample("03")
    result = check_standbys(primary(from_record(row, "0/3000000", 0.1)), CFG)
    assert result.status == Status.OK
    assert result.summary.startswith("1 standby streaming (min 1): standby1@127.0.0.1")
    (entry,) = result.details["standbys"]
    assert entry["state"] == "streaming" and entry["replay_lag_bytes"] == 0


def test_recorded_idle_standby_with_null_lag_columns_is_ok(pg_sample):
    (row,) = pg_sample("10")  # *_lag columns NULL after 60 s idle: normal
    assert row["replay_lag"] is None
    # reply_time 09:42:51.33 vs the standby's clock 09:43:00.64 in the same run (sample 09)
    result = check_standbys(primary(from_record(row, "0/3016070", 9.3)), CFG)
    assert result.status == Status.OK
    assert result.details["standbys"][0]["reply_age"] == 9.3


def test_recorded_null_replay_lsn_at_connect_counts(pg_sample):
    (row,) = pg_sample("28")
    assert row["replay_lsn"] is None and row["reply_time"] is None
    record = dict(row, pid="1", application_name="standby1", client_addr="127.0.0.1",
                  sent_lsn=None, write_lsn=None, flush_lsn=None)
    result = check_standbys(primary(from_record(record, "0/3016038", None)), CFG)
    assert result.status == Status.OK
    entry = result.details["standbys"][0]
    assert entry["counted"] and entry["replay_lag_bytes"] is None and entry["reply_age"] is None


def test_recorded_paused_standby_still_streams_with_small_byte_lag(pg_sample):
    (row,) = pg_sample("15")
    result = check_standbys(primary(from_record(row, "0/3016110", 0.1)), CFG)
    assert result.status == Status.OK
    assert result.details["standbys"][0]["replay_lag_bytes"] == 0xA0


# ------------------------------------------------------------ hand-built branches


def test_duplicated_walsender_rows_count_once():
    frozen = sender(pid=100, reply_age=50.0)  # the old walsender, until wal_sender_timeout
    fresh = sender(pid=200, reply_age=0.2, backend_age=3.0)
    result = check_standbys(primary(frozen, fresh), StandbysConfig(min_streaming=2))
    assert result.status == Status.CRITICAL  # one standby, not two
    assert result.details["streaming"] == 1
    (entry,) = result.details["standbys"]
    assert entry["pids"] == [200, 100] and entry["rows"] == 2
    assert check_standbys(primary(frozen, fresh), CFG).status == Status.OK


@pytest.mark.parametrize("state", ["startup", "catchup", "backup", "stopping"])
def test_non_streaming_states_do_not_count(state):
    result = check_standbys(primary(sender(state=state)), CFG)
    assert result.status == Status.CRITICAL
    assert result.details["streaming"] == 0
    if state != "backup":
        assert f"standby1@10.0.0.2 state {state}" in result.summary


def test_backups_are_listed_but_never_counted():
    basebackup = sender(pid=300, application_name="pg_basebackup", state="streaming",
                        is_backup=True)
    copying = sender(pid=301, application_name="pg_basebackup", state="backup", is_backup=True)
    result = check_standbys(primary(basebackup, copying), CFG)
    assert result.status == Status.CRITICAL
    assert result.summary == "no standby connected (0 of 1 required standbys streaming)"
    assert [b["pid"] for b in result.details["backup_walsenders"]] == [300, 301]


def test_stale_reply_does_not_count():
    result = check_standbys(primary(sender(reply_age=16.0)), CFG)
    assert result.status == Status.CRITICAL
    assert "standby1@10.0.0.2 no reply for 16s (limit 15s)" in result.summary
    assert result.summary.startswith("0 of 1 required standbys streaming")


def test_no_reply_long_after_connect_does_not_count():
    result = check_standbys(primary(sender(reply_age=None, backend_age=20.0)), CFG)
    assert result.status == Status.CRITICAL
    assert "no reply since it connected 20s ago" in result.summary


def test_no_standby_at_all_is_critical():
    result = check_standbys(primary(), CFG)
    assert result.status == Status.CRITICAL
    assert result.details["standbys"] == []


def test_min_streaming_zero_accepts_none():
    result = check_standbys(primary(), StandbysConfig(min_streaming=0))
    assert result.status == Status.OK
    assert result.summary == "no standby streaming (min_streaming 0)"


def test_min_streaming_two_with_two_standbys():
    other = sender(pid=2, application_name="standby2", client_addr="10.0.0.3")
    result = check_standbys(primary(sender(), other), StandbysConfig(min_streaming=2))
    assert result.status == Status.OK
    assert result.summary.startswith("2 standbys streaming (min 2)")


def test_extra_unhealthy_standby_is_mentioned_when_minimum_is_met():
    other = sender(pid=2, application_name="standby2", client_addr="10.0.0.3", state="catchup")
    result = check_standbys(primary(sender(), other), CFG)
    assert result.status == Status.OK
    assert "not counted: standby2@10.0.0.3 state catchup" in result.summary


def test_large_flush_lag_in_bytes_is_warning():
    current = parse_lsn("1/0")
    behind = sender(flush_lsn=current - (64 * MB + 1), replay_lsn=current - (64 * MB + 1),
                    replay_lag_bytes=64 * MB + 1)
    result = check_standbys(primary(behind, current_lsn=current), CFG)
    assert result.status == Status.WARNING
    assert result.summary.startswith("standby flush lag too large:")
    assert "flush lag 64.0 MiB" in result.summary and "> 64.0 MiB" in result.summary
    assert result.details["standbys"][0]["flush_lag_bytes"] == 64 * MB + 1
    at_limit = sender(flush_lsn=current - 64 * MB)
    assert check_standbys(primary(at_limit, current_lsn=current), CFG).status == Status.OK


def test_replay_held_back_on_the_standby_is_not_judged_by_the_primary():
    """Issue 11 item 15: a pg_dump on the standby holds replay back inside the secondary's
    backup limits; the primary cannot see that backup, so it judges only what the standby
    has not yet flushed. The replay lag stays in the details (and the summary)."""
    current = parse_lsn("1/0")
    held = sender(flush_lsn=current, replay_lsn=current - 900 * MB, replay_lag_bytes=900 * MB)
    result = check_standbys(primary(held, current_lsn=current), CFG)
    assert result.status == Status.OK, result.summary
    (entry,) = result.details["standbys"]
    assert entry["replay_lag_bytes"] == 900 * MB and entry["flush_lag_bytes"] == 0
    assert "replay lag 900.0 MiB" in result.summary


def test_missing_and_hung_standbys_are_typed_for_the_core():
    """The core waits out a reconnect for a missing standby, not for a hung one."""
    gone = check_standbys(primary(), CFG)
    assert gone.status == Status.CRITICAL and gone.failure == Failure.MISSING
    catchup = check_standbys(primary(sender(state="catchup")), CFG)
    assert catchup.status == Status.CRITICAL and catchup.failure == Failure.MISSING
    stale = check_standbys(primary(sender(reply_age=16.0)), CFG)
    assert stale.status == Status.CRITICAL and stale.failure == Failure.HUNG
    mute = check_standbys(primary(sender(reply_age=None, backend_age=20.0)), CFG)
    assert mute.status == Status.CRITICAL and mute.failure == Failure.HUNG
    assert check_standbys(primary(sender()), CFG).failure is None
    hidden = sender(state=None, reply_age=None, replay_lsn=None, replay_lag_bytes=None)
    assert check_standbys(primary(hidden), CFG).failure is None  # UNKNOWN: no grace either


def test_hidden_state_without_pg_monitor_is_unknown():
    hidden = sender(state=None, reply_age=None, replay_lsn=None, replay_lag_bytes=None)
    result = check_standbys(primary(hidden), CFG)
    assert result.status == Status.UNKNOWN
    assert "pg_monitor" in result.summary


def test_unix_socket_standby_is_labelled_local():
    result = check_standbys(primary(sender(client_addr=None)), CFG)
    assert "standby1@local" in result.summary


def test_unreachable_and_wrong_role_are_unknown():
    down = check_standbys(PgSnapshot(reachable=False, error="timeout expired"), CFG)
    assert down.status == Status.UNKNOWN
    assert down.summary == "PostgreSQL unreachable: timeout expired (see postgres_role)"
    standby = check_standbys(PgSnapshot(reachable=True, in_recovery=True), CFG)
    assert standby.status == Status.UNKNOWN
    assert "in recovery" in standby.summary


def test_details_are_json_serialisable():
    frozen = sender(pid=100, reply_age=50.0)
    data = check_standbys(primary(frozen, sender(pid=200)), CFG).to_json()
    assert json.loads(json.dumps(data))["details"]["standbys"][0]["rows"] == 2


# ------------------------------------------------------------ the real pair


def _probe(dsn: str) -> PgSnapshot:
    return probe_postgres(PostgresConfig(dsn=dsn, connect_timeout=2.0, query_timeout=3.0))


@pytest.mark.postgres
def test_real_standby_streaming_then_stopped_then_back(pg):
    result = check_standbys(_probe(pg.primary_dsn), StandbysConfig())
    assert result.status == Status.OK, result.summary
    (entry,) = result.details["standbys"]
    assert entry["application_name"] == "standby1" and entry["client_addr"] == "127.0.0.1"

    pg.stop_standby()
    result = check_standbys(_probe(pg.primary_dsn), StandbysConfig())
    assert result.status == Status.CRITICAL
    assert "0 of 1" in result.summary

    pg.start_standby()  # waits until the primary sees it streaming
    result = check_standbys(_probe(pg.primary_dsn), StandbysConfig())
    assert result.status == Status.OK, result.summary


def test_recheck_in_is_when_the_stalest_counted_reply_goes_stale():
    """The daemon re-checks then: a standby hung with TCP open is caught on time."""
    result = check_standbys(primary(sender(reply_age=4.0),
                                    sender(application_name="standby2", reply_age=9.5)), CFG)
    assert result.status == Status.OK
    assert result.details["recheck_in"] == 5.5
    assert result.recheck_in == 5.5  # typed: what the daemon reads
    stale = check_standbys(primary(sender(reply_age=16.0)), CFG)
    assert stale.details["recheck_in"] is None  # nothing counted: nothing to re-check
    assert stale.recheck_in is None


# ------------------------------------------------------------ before 12: no reply_time

from watchdog.probes.postgres import CanaryWrite  # noqa: E402


def old_primary(taken_at: float, current: int, flush: int, version: int = 100023,
                canary_lsn: Any = None, pid: int = 23613, **extra: Any) -> PgSnapshot:
    """A 10 (or 9.x) primary: walsenders without reply_time; the canary as the runner wrote."""
    canary = CanaryWrite(ok=True, xid=9, before_lsn=canary_lsn) if canary_lsn else None
    row = sender(pid=pid, reply_age=None, flush_lsn=flush, replay_lsn=flush,
                 replay_lag_bytes=current - flush, **extra)
    return primary(row, server_version=version, current_lsn=current, taken_at=taken_at,
                   canary=canary)


@pytest.mark.parametrize("version", [90501, 90624, 100023, 110022])
def test_healthy_idle_pair_before_12_is_ok_however_long_connected(version):
    """The issue's PostgreSQL 10 report: a healthy idle pair paged as 'no reply since it
    connected 15m21s ago'. With the canary the flush position moves every cycle: OK."""
    first = old_primary(0.0, 1000, 1000, version, canary_lsn=1000, backend_age=921.0)
    once = check_standbys(first, CFG)
    assert once.status == Status.OK
    assert once.details["standbys"][0]["evidence"] == "first look"
    assert "first look" in once.summary and "no reply since" not in once.summary
    assert once.details["evidence"] == "flush position"
    assert once.details["recheck_in"] == CFG.max_reply_age  # the canary just written
    second = old_primary(30.0, 1040, 1040, version, canary_lsn=1040, backend_age=951.0)
    result = check_standbys(second, CFG, previous=first)
    assert result.status == Status.OK, result.summary
    entry = result.details["standbys"][0]
    assert entry["evidence"] == "flush position moved" and entry["counted"]
    assert entry["flush_lsn"] == "0/410" and entry["flush_stalled_for"] is None
    assert "first look" not in result.summary


@pytest.mark.parametrize("version", [90501, 100023, 110022])
def test_hung_standby_before_12_is_critical_after_max_reply_age(version):
    healthy = old_primary(0.0, 1040, 1040, version, canary_lsn=1040)
    # 15 s later (the daemon's re-check) the canary written then is still not flushed.
    early = check_standbys(old_primary(10.0, 1080, 1040, version, canary_lsn=1080), CFG,
                           previous=healthy)
    assert early.status == Status.OK
    assert early.details["standbys"][0]["evidence"] == "flush position waiting"
    assert early.details["recheck_in"] == pytest.approx(5.0)  # when it would pass the limit
    late_snap = old_primary(15.5, 1120, 1040, version, canary_lsn=1120)
    late = check_standbys(late_snap, CFG, previous=healthy)
    assert late.status == Status.CRITICAL
    entry = late.details["standbys"][0]
    assert entry["evidence"] == "flush position stalled" and not entry["counted"]
    assert entry["flush_stalled_for"] == 15.5
    assert "flush position stalled at 0/410 for 16s" in late.summary
    assert "no reply_time before PostgreSQL 12" in late.summary


def test_idle_pair_before_12_without_canary_is_unknown_naming_the_evidence():
    first = old_primary(0.0, 1000, 1000)
    idle = check_standbys(old_primary(30.0, 1000, 1000), CFG, previous=first)
    assert idle.status == Status.UNKNOWN
    assert idle.details["standbys"][0]["evidence"] == "no WAL moved"
    assert "PostgreSQL 10 has no reply_time" in idle.summary and "[canary]" in idle.summary
    assert "[canary]" in idle.details["advice"]
    # A failed canary is named instead.
    failed = primary(*old_primary(30.0, 1000, 1000).walsenders, server_version=90501,
                     current_lsn=1000, taken_at=30.0,
                     canary=CanaryWrite(ok=False, error="disk full"))
    result = check_standbys(failed, CFG, previous=first)
    assert result.status == Status.UNKNOWN and "disk full" in result.summary
    assert "PostgreSQL 9.5" in result.summary


def test_reply_time_servers_keep_their_evidence_and_verdicts():
    result = check_standbys(primary(sender(reply_age=3.0)), CFG)
    assert result.status == Status.OK
    assert result.details["standbys"][0]["evidence"] == "reply_time"
    assert "flush_lsn" not in result.details["standbys"][0]
    stale = check_standbys(primary(sender(reply_age=30.0)), CFG)
    assert stale.status == Status.CRITICAL and "no reply for 30s" in stale.summary


def test_hidden_walsender_details_on_9x_say_superuser():
    hidden = sender(application_name=None, client_addr=None, state=None, replay_lsn=None,
                    reply_age=None, replay_lag_bytes=None, backend_age=None)
    result = check_standbys(primary(hidden, server_version=90501), CFG)
    assert result.status == Status.UNKNOWN and "superuser" in result.summary
    assert "pg_monitor" in check_standbys(primary(hidden), CFG).summary


def test_before_12_without_canary_advice_is_there_from_the_first_cycle():
    """So the daemon's first cycle logs what to enable (details `advice`)."""
    first = check_standbys(old_primary(0.0, 1000, 1000), CFG)
    assert first.status == Status.OK and "[canary]" in first.details["advice"]
    assert "PostgreSQL 10 has no reply_time" in first.details["advice"]
    with_canary = check_standbys(old_primary(0.0, 1000, 1000, canary_lsn=1000), CFG)
    assert "advice" not in with_canary.details
    assert "advice" not in check_standbys(primary(sender()), CFG).details  # 12+: reply_time
