"""Alert text: stable titles, the notify type that carries the meaning, bodies that help."""

from __future__ import annotations

import json

import pytest

from watchdog.alerts import message
from watchdog.alerts.message import Facts
from watchdog.alerts.notification import Notification, make_id
from watchdog.model import Status

T = 1717416000.0  # 2024-06-03 12:00:00 UTC


def facts(check="replay_lag", role="secondary", status=Status.CRITICAL, **details):
    details = details or {"lag_seconds": 412.5, "receive_lag_bytes": 3 * 1024**2, "streaming": True}
    return Facts("mail2", check, role, status, f"{check}: replay 412s behind (limit 300s)", details)


def test_format_time_is_utc_and_never_raises():
    assert message.format_time(T) == "2024-06-03 12:00:00 UTC"
    assert message.format_time(None) == "an unknown time"
    assert message.format_time(float("nan")) == "an unknown time"
    assert message.format_time(1e300) == "an unknown time"


@pytest.mark.parametrize(
    "level,severity,notify_type",
    [
        (Status.WARNING, "warning", "warning"),
        (Status.UNKNOWN, "warning", "warning"),
        (Status.CRITICAL, "critical", "failure"),
    ],
)
def test_problem_severity_and_type(level, severity, notify_type):
    n = message.problem(facts(), level, T - 120, T, T - 120)
    assert (n.kind, n.severity, n.notify_type, n.problem_severity) == (
        "problem",
        severity,
        notify_type,
        None,
    )
    assert n.title == "[mail2] replay_lag" and n.check == "replay_lag" and n.node == "mail2"
    assert n.created == T


def test_problem_body_says_what_since_numbers_role_and_first_look():
    """Issue 14: the numbers are a few lines in human units (they were every key of the
    details, raw, `lag_seconds: 412.5 (6m52s)`); the first step fits the failure; the full
    numbers are pointed to, not pasted."""
    details = {"lag_seconds": 412.5, "lag_bytes": 3 * 1024**2, "replay_paused": "not paused",
               "limits": {"warning": 60, "critical": 300},
               "walreceiver": {"status": "streaming", "sender_host": "10.0.0.1",
                               "sender_port": 5432, "last_msg_receipt_age": 1.2},
               "max_receive_age": 45, "receive_lsn": "0/3000000", "resampled": False}
    f = Facts("mail2", "replay_lag", "secondary", Status.CRITICAL,
              "replay lag 6m52s, 3.0 MiB not replayed", details)
    body = message.problem(f, Status.CRITICAL, T - 120, T, T - 120).body
    lines = body.splitlines()
    assert lines[0] == "PROBLEM CRITICAL: replay_lag on mail2 (secondary)"
    assert "replay lag 6m52s, 3.0 MiB not replayed" in lines
    assert "Since: 2024-06-03 11:58:00 UTC (2m00s ago)" in lines
    assert "  - replay lag 6m52s (warning over 1m00s, critical over 5m00s)" in lines
    assert "  - 3.0 MiB received but not replayed" in lines
    assert ("  - WAL receiver streaming from 10.0.0.1:5432, last message from the primary 1.2s "
            "ago (limit 45s)") in lines
    assert "Role: mail2 is the secondary" in lines
    assert "0/3000000" not in body and "resampled" not in body  # the rest: --once --json
    assert lines[-2].startswith(
        'First step: on the secondary: psql -c "SELECT EXTRACT(EPOCH FROM now() - '
    )
    assert lines[-1] == "Full numbers: ha-watchdog --once --json on mail2 (or its metrics)"


@pytest.mark.parametrize(
    "check,needles",
    [
        ("drbd", ["drbd-overview", "drbdadm status", "cat /proc/drbd"]),
        ("services", ["service greenarrow status"]),
        ("standbys", ["on the primary", "FROM pg_stat_replication"]),
        (
            "replay_lag",
            ["on the secondary", "pg_last_xact_replay_timestamp()", "pg_stat_wal_receiver"],
        ),
        ("postgres_role", ["SELECT pg_is_in_recovery()", "PostgreSQL log"]),
    ],
)
def test_first_look_is_the_vendor_guides_manual_command(check, needles):
    text = message.first_look(check)
    for needle in needles:
        assert needle in text
    assert message.first_look(check) in message.problem(facts(check), Status.WARNING, T, T, T).body


def test_unknown_status_is_explained():
    body = message.problem(facts(status=Status.UNKNOWN), Status.CRITICAL, T, T, T).body
    assert "could not run (UNKNOWN)" in body


def test_escalation_and_deescalation():
    esc = message.escalation(facts(), Status.WARNING, Status.CRITICAL, T - 600, T, T - 60, "warning")
    assert (esc.kind, esc.severity, esc.notify_type, esc.problem_severity) == (
        "escalation",
        "critical",
        "failure",
        "warning",
    )
    assert esc.body.startswith("ESCALATION WARNING -> CRITICAL: replay_lag on mail2")
    de = message.deescalation(facts(), Status.CRITICAL, Status.WARNING, T - 600, T, T - 60, "critical")
    assert (de.kind, de.severity, de.notify_type, de.problem_severity) == (
        "deescalation",
        "warning",
        "warning",
        "critical",
    )
    assert "not recovered yet" in de.body
    assert de.routes_to(["critical"])  # PagerDuty (critical only) hears about it


def test_recovery_says_how_long_it_lasted_and_routes_like_its_problem():
    n = message.recovery(facts(status=Status.OK), T - 3725, T - 60, T, Status.CRITICAL, "critical")
    assert (n.kind, n.severity, n.notify_type, n.problem_severity) == (
        "recovery",
        "recovery",
        "success",
        "critical",
    )
    assert n.body.startswith("RECOVERY: replay_lag on mail2 (secondary) is OK again after 1h01m")
    assert "lasted 1h01m: from 2024-06-03 10:57:55 UTC to 2024-06-03 11:59:00 UTC" in n.body
    assert n.routes_to(["critical"]) and not n.routes_to(["warning"])


def test_title_is_stable_between_problem_and_recovery():
    p = message.problem(facts(), Status.CRITICAL, T - 120, T, T - 120)
    r = message.recovery(facts(status=Status.OK), T - 120, T + 500, T + 600, Status.CRITICAL, "critical")
    assert p.title == r.title == "[mail2] replay_lag"


def test_reminder_keeps_the_problems_type():
    p = message.problem(facts(), Status.CRITICAL, T, T, T)
    r = message.reminder(facts(), Status.CRITICAL, T, T + 4 * 3600, T + 4 * 3600, "critical")
    assert (r.kind, r.notify_type, r.severity, r.problem_severity) == (
        "reminder",
        p.notify_type,
        "critical",
        "critical",
    )
    assert "still not OK after 4h00m" in r.body


def test_no_longer_applies_is_a_closure_not_a_recovery():
    n = message.no_longer_applies(
        facts("standbys", role="primary"),
        Status.CRITICAL,
        T - 600,
        T,
        T - 30,
        "primary",
        "secondary",
        "critical",
    )
    assert (n.kind, n.notify_type, n.problem_severity) == (
        "no_longer_applies",
        "success",
        "critical",
    )
    assert n.title == "[mail2] standbys"
    assert "role changed primary -> secondary" in n.body and "did NOT recover" in n.body
    assert "RECOVERY" not in n.body


def test_role_change_is_info_with_a_stable_title():
    n = message.role_change("mail2", "secondary", "primary", T - 30, T)
    assert (n.kind, n.severity, n.notify_type, n.title, n.check) == (
        "role_change",
        "info",
        "info",
        "[mail2] role",
        None,
    )
    assert "mail2 is now primary (was secondary) since 2024-06-03 11:59:30 UTC" in n.body
    assert "drbd-overview" in n.body
    lost = message.role_change("mail2", "primary", "unknown", T, T)
    assert "cannot be read" in lost.body
    back = message.role_change("mail2", "unknown", "secondary", T, T, last_known="primary")
    assert "Last known role before that: primary" in back.body


def test_flapping_says_what_it_flapped_between():
    n = message.flapping(
        facts(), [Status.OK, Status.WARNING, Status.CRITICAL], 4, 1800, 450, Status.CRITICAL, T - 900, T, T, None
    )
    assert (n.kind, n.severity, n.notify_type) == ("flapping", "critical", "failure")
    assert "flaps between ok, warning and critical" in n.body
    assert "4 changes within 30m00s" in n.body and "stable for 7m30s" in n.body


def test_ids_are_deterministic_and_distinct_per_event():
    a = message.problem(facts(), Status.CRITICAL, T - 120, T, T - 120)
    b = message.problem(
        facts(), Status.CRITICAL, T - 120, T + 7, T - 120
    )  # the same event, replayed later
    assert a.id == b.id == make_id("mail2", "replay_lag", "problem", T - 120)
    c = message.recovery(facts(), T - 120, T - 120, T, Status.CRITICAL, "critical")
    d = message.problem(facts(), Status.CRITICAL, T - 60, T, T - 60)
    assert len({a.id, c.id, d.id}) == 3


def test_notes_are_in_the_body():
    note = message.held_note(
        "backup window daily 01:00-03:00 UTC", T - 7200, "the relaxation ended"
    )
    n = message.problem(facts(), Status.WARNING, T - 3600, T, T - 3600, [note])
    assert (
        "Held by backup window daily 01:00-03:00 UTC since 2024-06-03 10:00:00 UTC; "
        "still there when the relaxation ended" in n.body
    )
    assert "Relaxed limits in effect (w, since" in message.relaxed_note("w", T)
    assert "never held" in message.ceiling_note("w", T)


def test_odd_details_do_not_break_the_body():
    """Details come back from JSON: odd ones give fewer numbers, never JSON or a repr."""
    many = {f"k{i}": i for i in range(30)}
    odd = {"nested": {"b": [1, 2]}, "long": "x" * 500, "nan": float("nan"), "none": None,
           "walreceiver": ["not", "a", "dict"], "limits": "x", "lag_seconds": "soon",
           "standbys": {"a": 1}, "resources": [None, 3, {"name": 7}], "error": "y" * 500}
    for check in ("replay_lag", "standbys", "drbd", "services", "postgres_role", "other"):
        for details in (many, odd, "garbage", None):
            body = message.problem(facts(check, **{}), Status.CRITICAL, T, T, T).body
            f = Facts("mail2", check, "primary", Status.CRITICAL, "s", details)
            body = message.problem(f, Status.CRITICAL, T, T, T).body
            assert "{" not in body and "[" not in body.replace("[mail2]", ""), body
            assert "x" * 100 not in body and "y" * 100 not in body
            assert len([ln for ln in body.splitlines() if ln.startswith("  - ")]) <= 5


def test_notification_survives_json():
    n = message.problem(facts(), Status.CRITICAL, T, T, T)
    assert Notification.from_json(json.loads(json.dumps(n.to_json()))) == n


def test_notices_about_the_watchdog_itself():
    """Issue 11: a failed state write and a damaged state file are said, routed like a
    WARNING, under the node's `ha-watchdog` title; two notices at once keep two ids."""
    from watchdog.alerts import message as m
    from watchdog.alerts.notification import Notification

    problem = m.self_problem("mail1", "it cannot save its state", ["Error: disk full."], 10.0, 10.0)
    recovery = m.self_recovery("mail1", "it cannot save its state", ["Saved."], 10.0, 40.0)
    assert (problem.kind, problem.severity, problem.title) == ("problem", "warning",
                                                               "[mail1] ha-watchdog")
    assert problem.body.startswith("PROBLEM WARNING: ha-watchdog on mail1: it cannot save")
    assert recovery.kind == "recovery" and recovery.routes_to(["warning"])
    assert recovery.id != problem.id
    one = m.self_notice("mail1", "its outbox was damaged", ["file A"], 5.0, 5.0)
    two = m.self_notice("mail1", "its outbox was damaged", ["file B"], 5.0, 5.0)
    assert one.id != two.id and one.routes_to(["warning"]) and not one.routes_to(["critical"])
    for note in (problem, recovery, one):
        assert Notification.from_json(note.to_json()) == note
