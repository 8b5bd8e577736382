"""watchdog.alerts.compose: events in, the words people read out."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from watchdog.alerts import compose, message
from watchdog.alerts.message import Facts
from watchdog.alerts.notification import make_id
from watchdog.core import events as ev
from watchdog.core.maintenance import Maintenance
from watchdog.core.state import HeldEvent, MaintenanceEvent, MaintenanceRecord
from watchdog.model import Status

T0 = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc).timestamp()
PROBLEM = ev.CheckEvent(
    kind="problem", node="mail2", check="replay_lag", role="secondary", now=T0, at=T0 - 120,
    since=T0 - 120, new=Status.CRITICAL, status=Status.CRITICAL, summary="replay lag 6m52s",
    details={"lag_seconds": 412.0}, seq=5,
)


def test_a_problem_event_reads_as_the_problem_message_and_its_id_has_the_number():
    note = compose.compose(PROBLEM)
    facts = Facts("mail2", "replay_lag", "secondary", Status.CRITICAL, "replay lag 6m52s",
                  {"lag_seconds": 412.0})
    words = message.problem(facts, Status.CRITICAL, T0 - 120, T0, T0 - 120)
    assert dataclasses.replace(note, id=words.id) == words
    assert note.id == make_id("mail2", "replay_lag", "problem", T0 - 120, 5) != words.id
    assert note.subject == "[mail2] replay_lag CRITICAL: replay lag 6m52s"
    assert note.body.startswith("PROBLEM CRITICAL: replay_lag on mail2 (secondary)")
    # Same event, another number: another id (the clock-stepped-back case); same number: same.
    assert compose.compose(dataclasses.replace(PROBLEM, seq=6)).id != note.id
    assert compose.compose(dataclasses.replace(PROBLEM)).id == note.id


def test_every_reason_has_its_sentence():
    texts = [compose.reason_text(r) for r in (
        ev.Relaxed("backup window", T0),
        ev.Ceiling("backup window", T0),
        ev.RelaxationExpired("pg_dump running"),
        ev.HeldBack("backup window", T0, False),
        ev.HeldBack("pg_dump running", T0, True),
        ev.HeldByMaintenance("disk swap", T0, T0 + 600),
        ev.SettledAfterFlapping((Status.OK, Status.WARNING, Status.CRITICAL)),
        ev.StillFlapping((Status.OK, Status.CRITICAL)),
        ev.RoleChangeGrace("standbys", 300.0, T0),
        ev.ReconnectGrace("standbys", 120.0),
    )]
    assert texts[0].startswith("Relaxed limits in effect (backup window, since 2024-06-03 12:00:00")
    assert texts[2] == "Backup relaxation over: pg_dump running."
    assert texts[3].endswith("still there when the relaxation ended, so it is sent now.")
    assert "when backup.max_duration was reached" in texts[4]
    assert texts[5].startswith("Held back by maintenance (disk swap) from 2024-06-03 12:00:00")
    assert texts[6] == "Stable again after flapping between ok, warning and critical."
    assert texts[7] == "Still flapping between ok and critical."
    assert texts[8] == ("Still missing 5m00s after this node's role change at 2024-06-03 12:00:00 "
                        "UTC (standbys.role_change_grace).")
    assert texts[9] == "Missing for longer than standbys.reconnect_grace (2m00s): not a reconnect."
    body = compose.compose(dataclasses.replace(PROBLEM, reasons=(ev.RelaxationExpired("x"),))).body
    assert "Backup relaxation over: x." in body


def test_maintenance_summaries_list_held_events_in_words_old_entries_as_they_were():
    m = Maintenance("m1", "disk swap", "alice", T0, T0 + 3600, T0 + 3600)
    old = MaintenanceEvent(T0 + 1, "problem", "drbd", "warning", "PROBLEM WARNING: drbd (v1)", False)
    record = MaintenanceRecord("m1", "disk swap", "alice", T0, T0 + 3600,
                               [old, HeldEvent(PROBLEM, False)])
    note = compose.compose(ev.MaintenanceEnded("mail2", record, "expired", T0 + 3600,
                                               T0 + 3600, (), "secondary", seq=9))
    assert note.kind == "maintenance" and note.title == "[mail2] maintenance"
    assert "- 2024-06-03 12:00:01 UTC: PROBLEM WARNING: drbd (v1) [held back]" in note.body
    assert ("- 2024-06-03 12:00:00 UTC: PROBLEM CRITICAL: replay_lag on mail2 (secondary) "
            "[held back]") in note.body
    started = compose.compose(ev.MaintenanceStarted("mail2", m, T0, (), "secondary", seq=1))
    assert started.body.startswith("MAINTENANCE ON: mail2 until 2024-06-03 13:00:00 UTC")
    # `maintenance status` reads engine.json: both kinds of entry as one shape.
    shown = compose.held_lines_json(record.to_json()["events"] + ["junk", {"event": {}}])
    assert [e["line"] for e in shown] == [
        "PROBLEM WARNING: drbd (v1)", "PROBLEM CRITICAL: replay_lag on mail2 (secondary)"]
    assert set(shown[1]) == {"at", "kind", "check", "severity", "line", "sent"}


def test_event_kinds_are_the_public_notification_kinds():
    from watchdog.alerts import notification as nt

    assert ev.CHECK_KINDS + (ev.ROLE_CHANGE,) == (
        nt.PROBLEM, nt.ESCALATION, nt.DEESCALATION, nt.RECOVERY, nt.REMINDER,
        nt.NO_LONGER_APPLIES, nt.FLAPPING, nt.ROLE_CHANGE)
    kinds = [compose.compose(dataclasses.replace(PROBLEM, kind=k, old=Status.WARNING, peak=Status.WARNING,
                                                 new_role="primary", reasons=(),
                                                 flap=ev.Flap((Status.OK, Status.CRITICAL), 3, 60.0, 30.0)))
             .kind for k in ev.CHECK_KINDS]
    assert kinds == list(ev.CHECK_KINDS)


def test_the_words_of_an_incidents_events_come_from_their_levels_and_times():
    """What the engine tests once asserted as words (they now assert the events): the
    levels, peak and times of each event, put into words here."""
    C, W = Status.CRITICAL, Status.WARNING
    base = dataclasses.replace(PROBLEM, check="replay_lag", since=T0 - 600, status=W,
                               summary="replay lag 1m30s")
    esc = compose.compose(dataclasses.replace(base, kind="escalation", old=W, new=C, peak=W))
    assert esc.body.startswith("ESCALATION WARNING -> CRITICAL: replay_lag on mail2")
    assert (esc.severity, esc.notify_type, esc.problem_severity) == ("critical", "failure",
                                                                     "warning")
    rec = compose.compose(dataclasses.replace(base, kind="recovery", old=W, new=Status.OK,
                                              peak=C, at=T0, status=Status.OK))
    assert "The problem (worst: critical) lasted 10m00s" in rec.body
    assert (rec.severity, rec.notify_type, rec.problem_severity) == ("recovery", "success",
                                                                     "critical")
    closed = compose.compose(dataclasses.replace(
        base, kind="no_longer_applies", check="standbys", old=C, new=C, peak=C, role="primary",
        new_role="secondary"))
    assert "role changed primary -> secondary" in closed.body and "did NOT recover" in closed.body
    assert (closed.notify_type, closed.problem_severity) == ("success", "critical")
    flap = compose.compose(dataclasses.replace(base, kind="flapping", new=W, peak=None,
                                               flap=ev.Flap((Status.OK, W), 5, 1800.0, 450.0)))
    assert "flaps between ok and warning" in flap.body and "stable for 7m30s" in flap.body
    assert (flap.severity, flap.notify_type, flap.problem_severity) == ("warning", "warning", None)
    ceiling = compose.reason_text(ev.Ceiling("backup window daily 12:00-14:00 UTC", T0))
    assert ceiling == ("Relaxed by backup window daily 12:00-14:00 UTC since 2024-06-03 "
                       "12:00:00 UTC, but a critical problem is never held.")
    unknown = compose.compose(dataclasses.replace(base, new=C, status=Status.UNKNOWN))
    assert unknown.body.startswith("PROBLEM CRITICAL") and "could not run (UNKNOWN)" in unknown.body


def test_a_role_change_names_the_grace_it_starts():
    change = ev.RoleChanged("mail1", "secondary", "primary", T0 + 1000, T0 + 1030, "secondary",
                            (("standbys", 300.0),))
    body = compose.compose(change).body
    assert "ROLE CHANGE: mail1 is now primary (was secondary) since 2024-06-03 12:16:40 UTC" in body
    assert ("Grace after this change: standbys pages a standby that is not streaming only if "
            "it is still missing at 2024-06-03 12:21:40 UTC (5m00s, standbys.role_change_grace)."
            ) in body
    plain = compose.compose(dataclasses.replace(change, old="primary", new="secondary", graces=()))
    assert "Grace after this change" not in plain.body


def test_maintenance_events_in_words():
    """The words of the maintenance events the engine tests assert as events."""
    C, OK = Status.CRITICAL, Status.OK
    HOUR = 3600.0
    m = Maintenance("m1", "failover test", "alice", T0 + 10, T0 + 2 * HOUR + 10,
                    T0 + 2 * HOUR + 10)
    standbys = ev.StillOpen("standbys", C, T0 + 10, "standbys says critical")
    started = compose.compose(ev.MaintenanceStarted("mail1", m, T0 + 20, (standbys,), "primary"))
    body = started.body
    assert "until 2024-06-03 14:00:10 UTC" in body and "alice" in body
    assert "failover test" in body and "ha-watchdog maintenance off" in body
    assert "Open now (already paged):" in body and "standbys critical" in body
    assert (started.kind, started.severity, started.title) == (
        "maintenance", "info", "[mail1] maintenance")
    part2 = dataclasses.replace(m, reason="failover test, part 2", until=T0 + 2 * HOUR)
    changed = compose.compose(ev.MaintenanceChanged("mail1", part2, T0 + 90)).body
    assert "MAINTENANCE CHANGED" in changed and "part 2" in changed
    assert "until 2024-06-03 14:00:00 UTC" in changed

    def event(kind, new, **more):
        return ev.CheckEvent(kind=kind, node="mail1", check="standbys", role="primary",
                             now=T0 + 60, at=T0 + 60, since=T0 + 20, new=new, **more)

    held = [HeldEvent(event("problem", C, status=C), False),
            HeldEvent(event("recovery", OK, old=C, peak=C), False),
            HeldEvent(event("reminder", C, peak=C, status=C), False),
            HeldEvent(ev.RoleChanged("mail1", "primary", "secondary", T0 + 800, T0 + 800), False),
            HeldEvent(event("recovery", OK, old=C, peak=C), True)]
    record = MaintenanceRecord("m1", "failover test", "alice", T0 + 10, T0 + 2 * HOUR + 10,
                               held, dropped=7)
    ended = compose.compose(ev.MaintenanceEnded("mail1", record, "expired", T0 + 2 * HOUR + 10,
                                                T0 + 2 * HOUR + 10, (), "primary")).body
    assert ended.startswith("MAINTENANCE OVER: mail1 (the primary), expired at 2024-06-03 14:00:10")
    assert "PROBLEM CRITICAL: standbys on mail1 (primary) [held back]" in ended
    assert "RECOVERY: standbys on mail1 (primary) is OK again after 40s [held back]" in ended
    assert "REMINDER CRITICAL: standbys" in ended
    assert "ROLE CHANGE: mail1 is now secondary (was primary)" in ended
    assert ended.count("[held back]") == 4 and ended.count("[sent]") == 1
    assert "- ... and 7 more" in ended and "Still open: nothing." in ended
    paging = standbys._replace(since=T0 + 60, paging=True)
    removed = compose.compose(ev.MaintenanceEnded(
        "mail1", record, "its request was removed", T0 + HOUR, T0 + HOUR, (paging,),
        "primary")).body
    assert "its request was removed" in removed
    assert "standbys critical since 2024-06-03 12:01:00 UTC" in removed
    assert "paging now" in removed
    bob = dataclasses.replace(m, ended=T0 + 100, ended_by="bob")
    assert bob.how_it_ended(T0 + 110) == "turned off by bob"
    off = compose.compose(ev.MaintenanceEnded("mail1", record, "turned off by bob", T0 + 100,
                                              T0 + 110, (), "primary")).body
    assert "turned off by bob at 2024-06-03 12:01:40 UTC" in off
