"""Texts about a node: the daily report and the maintenance messages (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

from watchdog.alerts import summaries
from watchdog.core.engine import ClosedIncident, MaintenanceEvent, MaintenanceRecord, RoleChangeSeen
from watchdog.core.maintenance import Maintenance
from watchdog.model import CheckResult, Status

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0


def checks(**statuses):
    return [CheckResult(name, s, f"{name} is {s.label}") for name, s in statuses.items()]


def test_all_clear_is_short_and_green():
    n = summaries.daily("mail1", T0 + 5, T0, "primary",
                        checks(drbd=Status.OK, standbys=Status.OK), [], [], [], [])
    assert (n.kind, n.severity, n.notify_type, n.title) == (
        "daily", "info", "success", "[mail1] daily report")
    lines = n.body.splitlines()
    assert lines[0] == "DAILY REPORT: mail1 is the primary; all checks OK"
    assert "Checks now: drbd ok, standbys ok" in lines
    assert "Last 24 hours: no incident closed." in lines
    assert "Alerts that failed to deliver: none." in lines
    assert not any("late" in line for line in lines)
    assert len(lines) == 4


def test_open_problems_history_failures_and_lateness():
    open_now = [summaries.StillOpen("replay_lag", Status.WARNING, T0 - 2 * HOUR, "lag 90s")]
    closed = [
        ClosedIncident("standbys", Status.CRITICAL, T0 - 5 * HOUR, T0 - 5 * HOUR + 138, "recovered", True),
        ClosedIncident("services", Status.CRITICAL, T0 - 3 * HOUR, T0 - 3 * HOUR + 60, "recovered", False),
    ]
    roles = [RoleChangeSeen(T0 - 4 * HOUR, "primary", "secondary")]
    m = Maintenance("m", "failover test", "alice", T0 - HOUR, T0 + HOUR, T0 + HOUR)
    n = summaries.daily(
        "mail2", T0 + 2 * HOUR, T0, "secondary", checks(replay_lag=Status.WARNING), open_now,
        closed, roles, ["target 'slack': 2 failed delivery round(s), all delivered since"], m,
    )
    body = n.body
    assert n.notify_type == "warning"
    assert body.startswith(
        "DAILY REPORT: mail2 is the secondary; 1 problem(s) open, alerts not delivered")
    assert "- replay_lag warning since 2026-11-30 06:00:00 UTC (4h00m): lag 90s" in body
    assert "Last 24 hours: 2 incident(s) closed:" in body
    assert "- standbys critical, 2m18s: 2026-11-30 03:00:00 UTC to 2026-11-30 03:02:18 UTC, " \
        "recovered" in body
    assert "services critical, 1m00s" in body and "(during maintenance, not paged)" in body
    assert "Role change at 2026-11-30 04:00:00 UTC: primary -> secondary" in body
    assert "- target 'slack': 2 failed delivery round(s)" in body
    assert "Maintenance is on until 2026-11-30 09:00:00 UTC, asked by alice: failover test" in body
    assert "Sent late: it was due at 2026-11-30 08:00:00 UTC" in body


def test_a_check_not_ok_but_not_confirmed_is_still_named():
    n = summaries.daily("n", T0, T0, "primary", checks(services=Status.CRITICAL), [], [], [], [])
    assert n.notify_type == "warning" and "1 check(s) not OK" in n.body
    assert "- services critical: services is critical" in n.body


def test_daily_ids_are_per_due_time():
    a = summaries.daily("n", T0 + 1, T0, "primary", [], [], [], [], [])
    b = summaries.daily("n", T0 + 9, T0, "primary", [], [], [], [], [])
    c = summaries.daily("n", T0 + 86401, T0 + 86400, "primary", [], [], [], [], [])
    assert a.id == b.id != c.id  # a replayed cycle does not send the same day twice


def test_maintenance_end_lists_events_and_open_problems():
    record = MaintenanceRecord("m", "disk swap", "bob", T0, T0 + HOUR, [
        MaintenanceEvent(T0 + 60, "problem", "standbys", "critical",
                         "PROBLEM CRITICAL: standbys on n (primary)", False),
        MaintenanceEvent(T0 + 120, "recovery", "drbd", "recovery",
                         "RECOVERY: drbd on n (primary) is OK again after 5m00s", True),
    ], dropped=3)
    still = [summaries.StillOpen("standbys", Status.CRITICAL, T0 + 60, "no standby", True)]
    n = summaries.maintenance_ended("n", record, "expired", T0 + HOUR, T0 + HOUR + 1, still,
                                    "primary")
    lines = n.body.splitlines()
    assert lines[0] == "MAINTENANCE OVER: n (the primary), expired at 2026-11-30 09:00:00 UTC " \
        "after 1h00m"
    assert "While it was on (5 notification(s); held back unless marked sent):" in lines
    assert "- 2026-11-30 08:01:00 UTC: PROBLEM CRITICAL: standbys on n (primary) [held back]" \
        in lines
    assert any(line.endswith("[sent]") for line in lines)
    assert "- ... and 3 more" in lines
    assert lines[-1].startswith("- standbys critical since 2026-11-30 08:01:00 UTC (59m01s)")
    assert lines[-1].endswith("no standby - paging now")
    assert n.severity == "info" and n.title == "[n] maintenance"
