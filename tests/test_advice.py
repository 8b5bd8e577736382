"""Issue 14, part 3: alerts a person acts on. Subjects say what is wrong; bodies carry a few
numbers in human units and a first step that fits the failure. The details come from the
real checks over real snapshots: recorded DRBD outputs, a real PostgreSQL pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchdog.alerts import advice, message
from watchdog.alerts.message import Facts
from watchdog.checks.drbd import check_drbd
from watchdog.checks.replay_lag import check_replay_lag
from watchdog.checks.standbys import check_standbys
from watchdog.config import DrbdConfig, PostgresConfig, ReplayLagConfig, StandbysConfig
from watchdog.model import Status
from watchdog.probes.drbd import DrbdSnapshot, parse, probe_drbd
from watchdog.probes.postgres import PgSnapshot, WalReceiver, probe_postgres

T = 1717416000.0  # 2024-06-03 12:00:00 UTC
DRBD = Path(__file__).resolve().parent / "fixtures" / "drbd"


def alert(result, node="mail1", role="primary", level=Status.CRITICAL):
    facts = Facts(node, result.name, role, result.status, result.summary,
                  dict(result.details))
    return message.problem(facts, level, T - 300, T, T - 300)


def test_split_brain_gives_drbds_recovery_steps():
    """Before: "StandAlone means the nodes are not connected (split brain?)" and nothing to do."""
    snap = probe_drbd(DrbdConfig(path=str(DRBD / "proc-drbd-8.4-standalone-splitbrain-primary-node.txt"),
                                 format="proc"))
    result = check_drbd(snap)
    assert result.status.label == "critical"
    n = alert(result)
    step = [line for line in n.body.splitlines() if line.startswith("First step: ")][0]
    shown = result.details["resources"][0]["name"]
    assert shown == "drbd0"  # /proc/drbd names no resource, only the minor
    name = "<resource of /dev/drbd0: see drbdadm status>"  # drbdadm needs the resource
    assert f"split brain on {name}" in step
    assert f"drbdadm connect --discard-my-data {name}" in step and "the victim" in step
    assert f"drbdadm disconnect {name}" in step and f"drbdadm secondary {name}" in step
    assert f"  - {shown}: StandAlone" in n.body  # the state, in DRBD's words
    assert n.subject.startswith("[mail1] drbd CRITICAL: ")


def test_split_brain_with_a_resource_name_uses_it():
    text = (DRBD / "drbdadm-status-splitbrain-standalone-primary-node.txt").read_text()
    parsed = parse("drbdadm-status", text)
    result = check_drbd(DrbdSnapshot(tuple(parsed.resources), "drbdadm-status", "drbdadm status"))
    name = result.details["resources"][0]["name"]
    assert not name.startswith("drbd")
    step = advice.first_step("drbd", result.details, "mail1", "critical", "x")
    assert f"drbdadm connect --discard-my-data {name}" in step


def test_standby_postgres_down_points_at_the_standby_and_its_log(pg):
    """On the primary, a stopped standby shows as no walsender: the step is on the standby."""
    pg.stop_standby()
    snap = probe_postgres(PostgresConfig(dsn=pg.primary_dsn, connect_timeout=3, query_timeout=5))
    result = check_standbys(snap, StandbysConfig())
    assert result.status.label == "critical", result.summary
    n = alert(result)
    body = n.body
    assert "First step: no standby is connected: look at the standby (the other node" in body
    assert f"tail -n 100 {advice.PG_LOG}" in body and advice.PG_LOG.startswith("/var/hvmail/log/postgres")
    assert "  - 0 standby(s) streaming with a fresh reply (at least 1 wanted)" in body
    assert "  - no walsender at all" in body
    assert n.subject == f"[mail1] standbys CRITICAL: {advice.subject_summary(result.summary)}"


def _standby(**kw):
    base = dict(reachable=True, in_recovery=True, server_version=150004, receive_lsn=100,
                replay_lsn=100, replay_paused="not paused", last_replay_age=1.0)
    base.update(kw)
    return PgSnapshot(**base)


def test_standby_without_walreceiver_says_where_to_look():
    result = check_replay_lag(_standby(walreceiver=None), ReplayLagConfig())
    assert result.status.label == "critical"
    body = alert(result, node="mail2", role="secondary").body
    assert "  - no WAL receiver: this standby is not connected to the primary" in body
    assert "First step: mail2 does not receive WAL from the primary" in body
    assert "pg_stat_wal_receiver" in body and advice.PG_LOG in body


def test_paused_replay_says_how_to_resume():
    receiver = WalReceiver(pid=1, status="streaming", sender_host="10.0.0.1", sender_port=5432,
                           last_msg_receipt_age=0.5)
    snap = _standby(replay_paused="paused", receive_lsn=10 * 1024**3, replay_lsn=0,
                    last_replay_age=900.0, walreceiver=receiver)
    result = check_replay_lag(snap, ReplayLagConfig())
    body = alert(result, node="mail2", role="secondary").body
    assert "pg_wal_replay_resume()" in body
    assert "  - 10.0 GiB received but not replayed (warning over 64.0 MiB, critical over 1.0 GiB)" in body
    assert "  - replay paused" in body


def test_postgres_role_steps_fit_the_mismatch():
    promoted = {"reachable": True, "in_recovery": False, "drbd_role": "secondary",
                "server_version": 90524}
    step = advice.first_step("postgres_role", promoted, "mail2", "critical", "fallback")
    assert "NOT in recovery" in step and "rebuild it as a standby" in step
    assert "  - server version 9.5.24" in message.problem(
        Facts("mail2", "postgres_role", "secondary", Status.CRITICAL, "x", promoted),
        Status.CRITICAL, T, T, T).body
    down = {"reachable": False, "error": "connection refused"}
    assert advice.PG_LOG in advice.first_step("postgres_role", down, "mail1", "critical", "f")
    assert advice.key_numbers("postgres_role", down) == ["PostgreSQL: not reachable",
                                                         "error: connection refused"]


def test_unknown_check_says_how_to_see_why():
    step = advice.first_step("drbd", {"error": "cannot read /proc/drbd"}, "mail1", "unknown",
                             "drbd-overview")
    assert step.startswith("the check could not run; run ha-watchdog --once -v on mail1")


@pytest.mark.parametrize("kind", ["problem", "escalation", "reminder", "recovery", "flapping",
                                  "no_longer_applies"])
def test_subjects_start_with_the_stable_title_and_say_what_is_wrong(kind):
    f = Facts("mail2", "replay_lag", "secondary", Status.CRITICAL,
              "replay lag 6m52s, 3.0 MiB not replayed; streaming from 10.0.0.1", {})
    n = {
        "problem": lambda: message.problem(f, Status.CRITICAL, T - 60, T, T - 60),
        "escalation": lambda: message.escalation(f, Status.WARNING, Status.CRITICAL, T - 600, T, T, "warning"),
        "reminder": lambda: message.reminder(f, Status.CRITICAL, T - 4 * 3600, T, T, "critical"),
        "recovery": lambda: message.recovery(f, T - 3725, T - 60, T, Status.CRITICAL, "critical"),
        "flapping": lambda: message.flapping(f, [Status.OK, Status.WARNING], 4, 1800, 450, Status.WARNING,
                                             T - 900, T, T, None),
        "no_longer_applies": lambda: message.no_longer_applies(
            f, Status.CRITICAL, T - 600, T, T - 30, "secondary", "primary", "critical"),
    }[kind]()
    assert n.title == "[mail2] replay_lag"  # the incident key never moves
    assert n.subject.startswith("[mail2] replay_lag ")
    expected = {
        "problem": "[mail2] replay_lag CRITICAL: replay lag 6m52s, 3.0 MiB not replayed",
        "escalation": "[mail2] replay_lag WARNING -> CRITICAL: replay lag 6m52s, 3.0 MiB not replayed",
        "reminder": "[mail2] replay_lag still CRITICAL after 4h00m: replay lag 6m52s, 3.0 MiB not replayed",
        "recovery": "[mail2] replay_lag RECOVERED after 1h01m",
        "flapping": "[mail2] replay_lag FLAPPING between ok and warning",
        "no_longer_applies": "[mail2] replay_lag CLOSED, not recovered: no longer checked on a primary",
    }[kind]
    assert n.subject == expected


def test_role_change_subject():
    n = message.role_change("mail2", "secondary", "primary", T, T)
    assert n.title == "[mail2] role" and n.subject == "[mail2] role CHANGE: now primary (was secondary)"


def test_subject_summary_is_short_and_whole_words():
    assert advice.subject_summary("a; b") == "a"
    long = "word " * 40
    cut = advice.subject_summary(long)
    assert len(cut) <= 90 and cut.endswith("...")
