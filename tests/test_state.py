"""watchdog.core.state: the engine's persisted schema, read from every version written."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, time, timezone
from pathlib import Path

from watchdog.alerts.compose import compose_all
from watchdog.config import AlertsConfig, Config, DaemonConfig, DigestConfig, NodeConfig
from watchdog.core.engine import Engine
from watchdog.core.state import STATE_VERSION, EngineState
from watchdog.model import CheckResult, Role, Status

OK, W, C = Status.OK, Status.WARNING, Status.CRITICAL

# Written by release f996f66 (state version 1) with tests/fixtures/state/make_engine_v1.py.
V1 = Path(__file__).parent / "fixtures" / "state" / "engine_v1.json"
T0 = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc).timestamp()
CFG = dataclasses.replace(
    Config(node=NodeConfig(name="mail1")),
    alerts=AlertsConfig(renotify=3600.0),
    daemon=DaemonConfig(flap_changes=3, flap_window=1800.0),
    digest=DigestConfig(at=time(7, 0), timezone="UTC"),
)


def v1() -> dict:
    return json.loads(V1.read_text())


def test_a_state_file_of_release_f996f66_loads_whole():
    lost: list = []
    state = EngineState.from_json(v1(), lost)
    assert lost == []
    assert (state.role, state.last_known_role, state.role_since) == ("primary", "primary", T0 + 700)
    assert sorted(state.checks) == ["drbd", "postgres_role", "services", "standbys"]
    services = state.checks["services"].incident
    assert (services.level, services.told, services.since) == (C, W, T0 + 600)
    assert state.checks["standbys"].incident.flap_levels == [OK, C]
    assert state.checks["drbd"].held == {"reason": "backup window", "since": T0 + 1000}
    assert [(h.check, h.paged) for h in state.history] == [
        ("replay_lag", True), ("standbys", True), ("postgres_role", False)]
    assert [(r.old, r.new) for r in state.role_changes] == [("secondary", "primary")]
    record = state.maintenance
    assert (record.id, record.by, record.reason) == ("m-1", "alice", "disk swap")
    assert [e.kind for e in record.events] == ["problem", "escalation", "recovery"]
    assert record.events[0].line == "PROBLEM CRITICAL: postgres_role on mail1 (primary)"
    assert state.relax_memory == {"replay_lag": T0 + 1000}
    assert (state.digest_schedule, state.seqs) == ("07:00:00 UTC", {})


def test_a_state_loaded_from_version_1_is_written_as_the_current_version_and_round_trips():
    state = EngineState.from_json(v1())
    data = state.to_json()
    assert data["version"] == STATE_VERSION == 2 and data["seqs"] == {}
    again = EngineState.from_json(json.loads(json.dumps(data)))
    assert again.to_json() == data
    # Everything version 1 wrote is still written, with the same values.
    old = v1()
    assert {k: data[k] for k in old if k != "version"} == {k: v for k, v in old.items()
                                                           if k != "version"}


def test_an_engine_resumed_from_version_1_state_keeps_its_incidents():
    engine = Engine(CFG, EngineState.from_json(v1()))
    now = T0 + 2700
    results = [CheckResult(n, Status.OK, f"{n} ok", {}) for n in
               ("drbd", "services", "standbys", "postgres_role")]
    out = compose_all(engine.observe(now, Role.PRIMARY, results, {}, None))
    # The maintenance request is gone: its summary, the escalation it held back (services
    # was paged as warning before it), and drbd's problem the backup window held. Nothing
    # already paged pages again (standbys), and the recoveries wait for recover_for.
    assert [(n.kind, n.check) for n in out] == [
        ("maintenance", None), ("escalation", "services"), ("problem", "drbd")]
    assert "MAINTENANCE OVER" in out[0].body and "disk swap" in out[0].body
    assert "held back" in out[0].body and "standbys critical" in out[0].body
    assert "backup window" in out[2].body
    assert engine.state.seqs == {":maintenance": 1, "services": 1, "drbd": 1}
    assert len({n.id for n in out}) == 3
    assert {p.check for p in engine.open_problems()} == {"drbd", "services", "standbys"}


def test_the_numbers_survive_a_round_trip_and_damaged_ones_are_named():
    state = EngineState.from_json(v1())
    assert [state.next_seq("drbd"), state.next_seq("drbd"), state.next_seq(":role")] == [1, 2, 1]
    data = json.loads(json.dumps(state.to_json()))
    assert EngineState.from_json(data).seqs == {"drbd": 2, ":role": 1}
    for bad in ("7", [], None, {"drbd": -1}, {"drbd": True}, {"drbd": 1.5}):
        lost: list = []
        loaded = EngineState.from_json(dict(data, seqs=bad), lost)
        assert lost == ["some notification numbers (those subjects count from 0 again)"]
        assert sorted(loaded.checks) == sorted(state.checks)  # the rest is kept
    loaded = EngineState.from_json(dict(data, seqs={"drbd": 3, "x": "y"}), [])
    assert loaded.seqs == {"drbd": 3}


def test_unknown_versions_give_a_fresh_state_and_say_so():
    for version in (0, 3, "2", True, None):
        lost: list = []
        state = EngineState.from_json(dict(v1(), version=version), lost)
        assert state.checks == {} and state.role is None
        assert lost and lost[0].startswith("the whole state (version")


def test_the_daemon_starts_on_a_version_1_state_file_and_still_salvages_a_damaged_one(tmp_path):
    from watchdog.daemon import Daemon

    cfg = dataclasses.replace(CFG, daemon=DaemonConfig(
        state_dir=str(tmp_path), flap_changes=3, flap_window=1800.0))
    (tmp_path / "engine.json").write_text(V1.read_text())
    daemon = Daemon(cfg)
    assert daemon.state_file.notices == []  # an old format is not damage: nothing to report
    assert {p.check for p in daemon.engine.open_problems()} == {"services", "standbys"}
    # A wrong-shaped part of a version 1 file: the rest is kept, the loss is said.
    data = v1()
    data["checks"]["services"] = ["not", "an", "object"]
    (tmp_path / "engine.json").write_text(json.dumps(data))
    daemon = Daemon(cfg)
    assert {p.check for p in daemon.engine.open_problems()} == {"standbys"}
    ((subject, lines),) = daemon.state_file.notices
    assert subject == "its alert state was damaged"
    assert "Lost: the state of check 'services'." in lines


# Written by release b8590ad (state version 2; the core still used strings for levels) with
# tests/fixtures/state/make_engine_v2.py.
V2 = Path(__file__).parent / "fixtures" / "state" / "engine_v2.json"


def test_a_state_file_of_release_b8590ad_loads_whole_and_is_written_back_byte_for_byte():
    data = json.loads(V2.read_text())
    lost: list = []
    state = EngineState.from_json(data, lost)
    assert lost == []
    services = state.checks["services"].incident
    assert (services.level, services.told, services.since) == (C, W, T0 + 600)
    assert state.checks["standbys"].incident.flap_levels == [OK, C]
    held = state.maintenance.events
    assert [(e.event.kind, e.event.check, e.event.new) for e in held] == [
        ("problem", "postgres_role", C), ("escalation", "services", C),
        ("recovery", "postgres_role", OK)]
    # The same file comes out: today's format on disk is kept exactly.
    written = json.dumps(state.to_json(), indent=1, sort_keys=True) + "\n"
    assert written == V2.read_text()


def test_an_engine_resumed_from_version_2_state_tells_what_it_held_back():
    engine = Engine(CFG, EngineState.from_json(json.loads(V2.read_text())))
    now = T0 + 2700
    results = [CheckResult(n, Status.OK, f"{n} ok", {}) for n in
               ("drbd", "services", "standbys", "postgres_role")]
    events = engine.observe(now, Role.PRIMARY, results, {}, None)
    assert [type(e).__name__ for e in events] == ["MaintenanceEnded", "CheckEvent", "CheckEvent"]
    assert [(e.kind, e.check, e.old, e.new) for e in events[1:]] == [
        ("escalation", "services", W, C), ("problem", "drbd", None, W)]
    record = events[0].record
    assert [(h.event.kind, h.sent) for h in record.events] == [
        ("problem", False), ("escalation", False), ("recovery", False)]
    assert engine.state.seqs[":maintenance"] == 2 and engine.state.seqs["services"] == 2
