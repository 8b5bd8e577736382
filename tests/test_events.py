"""watchdog.core.events: what the engine emits, asserted as facts (no words)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

from watchdog.config import AlertsConfig, Config, DaemonConfig, NodeConfig, ServicesConfig
from watchdog.core import events as ev
from watchdog.core.engine import Engine
from watchdog.core.maintenance import Maintenance
from watchdog.core.state import EngineState, HeldEvent
from watchdog.core.windows import Relaxation
from watchdog.model import CheckResult, Role, Status

OK, W, C = Status.OK, Status.WARNING, Status.CRITICAL
T0 = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0
CFG = dataclasses.replace(
    Config(node=NodeConfig(name="mail1")),
    services=ServicesConfig(for_=0.0, recover_for=0.0),
    alerts=AlertsConfig(renotify=HOUR),
    daemon=DaemonConfig(flap_changes=3, flap_window=1800.0),
)


def run(engine: Engine, t: float, role=Role.PRIMARY, relax=None, maintenance=None, **levels):
    results = [CheckResult(n, s, f"{n} is {s.label}", {"n": 1}) for n, s in levels.items()]
    return engine.observe(T0 + t, role, results, relax or {}, maintenance)


def test_a_problem_its_escalation_and_its_recovery_are_check_events_with_levels_and_times():
    e = Engine(CFG)
    assert run(e, 0, services=OK) == []
    (problem,) = run(e, 10, services=W)
    assert isinstance(problem, ev.CheckEvent)
    assert (problem.kind, problem.check, problem.role, problem.node) == (
        "problem", "services", "primary", "mail1")
    assert (problem.new, problem.old, problem.peak, problem.since, problem.at, problem.now) == (
        W, None, None, T0 + 10, T0 + 10, T0 + 10)
    assert (problem.status, problem.summary, dict(problem.details)) == (
        W, "services is warning", {"n": 1})
    (up,) = run(e, 20, services=C)
    assert (up.kind, up.old, up.new, up.peak, up.since, up.at) == (
        "escalation", W, C, W, T0 + 10, T0 + 20)
    (down,) = run(e, 30, services=W)
    assert (down.kind, down.old, down.new, down.peak) == (
        "deescalation", C, W, C)
    (ok,) = run(e, 40, services=OK)
    assert (ok.kind, ok.old, ok.new, ok.peak, ok.since, ok.at) == (
        "recovery", W, OK, C, T0 + 10, T0 + 40)
    # Numbered in the order emitted, per subject, as the persisted counters say.
    assert [x.seq for x in (problem, up, down, ok)] == [1, 2, 3, 4] and e.state.seqs == {"services": 4}


def test_reasons_are_typed_a_held_problem_says_what_held_it():
    e = Engine(CFG)
    run(e, 0, services=OK)
    window = {"services": Relaxation(True, "backup window", T0, False)}
    assert run(e, 10, relax=window, services=W) == []  # held
    (problem,) = run(e, 20, services=W)  # the relaxation ended
    assert problem.reasons == (ev.HeldBack("backup window", T0, False),)
    (critical,) = run(e, 30, relax=window, services=C)
    assert critical.reasons == (ev.Ceiling("backup window", T0),)


def test_flapping_and_reminders_carry_their_numbers():
    e = Engine(CFG)
    run(e, 0, services=OK)
    run(e, 10, services=W)
    run(e, 20, services=OK)
    (flap,) = run(e, 30, services=C)
    assert flap.kind == "flapping" and flap.new == C and flap.peak is None
    assert flap.flap == ev.Flap((OK, W, C), 3, 1800.0, 600.0)  # window / changes
    for i, t in enumerate(range(330, int(HOUR), 300)):  # still flapping: never quiet for 600s
        assert run(e, t, services=(OK, C)[i % 2]) == []
    (reminder,) = run(e, 30 + HOUR, services=C)
    assert (reminder.kind, reminder.at, reminder.peak) == ("reminder", T0 + 30 + HOUR, C)
    assert reminder.reasons == (ev.StillFlapping((OK, W, C)),)


def test_role_change_and_no_longer_applies():
    e = Engine(CFG)
    run(e, 0, Role.PRIMARY, standbys=C)
    out = run(e, 100, Role.SECONDARY, replay_lag=OK)  # drbd's for (30s) not yet over
    assert out == []
    role, closed = run(e, 140, Role.SECONDARY, replay_lag=OK)
    assert isinstance(role, ev.RoleChanged)
    assert (role.old, role.new, role.at, role.now) == ("primary", "secondary", T0 + 100, T0 + 140)
    assert (closed.kind, closed.check, closed.role, closed.new_role, closed.old) == (
        "no_longer_applies", "standbys", "primary", "secondary", C)


def test_maintenance_edges_are_events_and_held_events_are_recorded_as_events():
    e = Engine(CFG)
    run(e, 0, services=OK)
    m = Maintenance("m1", "disk swap", "alice", T0 + 10, T0 + HOUR, T0 + HOUR)
    (started,) = run(e, 10, maintenance=m, services=OK)
    assert isinstance(started, ev.MaintenanceStarted) and started.maintenance is m
    assert run(e, 20, maintenance=m, services=C) == []
    (held,) = e.state.maintenance.events
    assert isinstance(held, HeldEvent) and not held.sent
    assert (held.event.kind, held.event.check, held.event.new) == ("problem", "services", C)
    # The record survives a restart with its events as events.
    state = EngineState.from_json(json.loads(json.dumps(e.state.to_json())))
    assert state.maintenance.events == e.state.maintenance.events
    e = Engine(CFG, state)
    ended, page = run(e, 30, services=C)  # the request is gone
    assert isinstance(ended, ev.MaintenanceEnded)
    assert ended.still_open == (ev.StillOpen("services", C, T0 + 20,
                                             "services is critical", True),)
    assert page.kind == "problem" and page.reasons == (
        ev.HeldByMaintenance("disk swap", T0 + 10, T0 + 30),)


def test_event_json_round_trips_and_bad_input_is_refused():
    event = ev.CheckEvent(
        kind="flapping", node="mail1", check="standbys", role="primary", now=T0, at=T0 - 5,
        since=T0 - 60, new=C, old=W, peak=W, status=C,
        summary="none", details={"x": [1, 2]},
        reasons=(ev.SettledAfterFlapping((OK, C)), ev.RoleChangeGrace("standbys", 60.0, T0)),
        flap=ev.Flap((OK, C), 4, 1800.0, 450.0), seq=7,
    )
    again = ev.event_from_json(json.loads(json.dumps(event.to_json())))
    assert again == dataclasses.replace(event, seq=0)  # the number is not part of a record
    role = ev.RoleChanged("mail1", "primary", "secondary", T0, T0 + 1, "primary", (("standbys", 60.0),))
    assert ev.event_from_json(json.loads(json.dumps(role.to_json()))) == role
    for bad in (None, [], {"type": "check"}, {"type": "other"},
                dict(event.to_json(), kind="nonsense"), dict(event.to_json(), at="noon"),
                dict(role.to_json(), at=None)):
        try:
            ev.event_from_json(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_the_core_never_imports_alerts():
    """Words live in watchdog.alerts only: a core module importing it is a layering bug."""
    import ast
    from pathlib import Path

    import watchdog.core

    core = Path(watchdog.core.__file__).parent
    found = []
    for path in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found += [f"{path.name}: {n}" for n in names if n.startswith("watchdog.alerts")]
    assert len(list(core.glob("*.py"))) >= 8 and found == []
