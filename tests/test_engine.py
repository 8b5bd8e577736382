"""The decision core: every transition, driven by a fake clock (plain numbers)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, time, timezone
from typing import Any, Dict, List, Optional

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.alerts.compose import compose_all
from watchdog.alerts.notification import (
    DEESCALATION,
    ESCALATION,
    FLAPPING,
    NO_LONGER_APPLIES,
    PROBLEM,
    RECOVERY,
    REMINDER,
    ROLE_CHANGE,
    Notification,
)
from watchdog.config import (
    AlertsConfig,
    BackupConfig,
    BackupWindow,
    Config,
    DaemonConfig,
    DrbdConfig,
    NodeConfig,
    ReplayLagConfig,
    ServicesConfig,
    StandbysConfig,
)
from watchdog.core.engine import Engine, EngineState, OpenProblem
from watchdog.core.events import (
    Ceiling,
    CheckEvent,
    Flap,
    HeldBack,
    HeldByMaintenance,
    MaintenanceChanged,
    MaintenanceEnded,
    MaintenanceStarted,
    ReconnectGrace,
    RelaxationExpired,
    Relaxed,
    RoleChanged,
    RoleChangeGrace,
    SettledAfterFlapping,
    StillOpen,
)
from watchdog.core.maintenance import Maintenance
from watchdog.core.windows import Relaxation
from watchdog.model import CheckResult, Failure, Role, Status

OK, W, C, U = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN
T0 = datetime(2024, 6, 3, 12, 0, tzinfo=timezone.utc).timestamp()  # a Monday
HOUR = 3600.0


def make_cfg(**sections) -> Config:
    return dataclasses.replace(Config(node=NodeConfig(name="mail1")), **sections)


def result(name: str, status: Status) -> CheckResult:
    details = {"lag_seconds": 412.5, "receive_age": 3.0} if name == "replay_lag" else {"n": 1}
    return CheckResult(name, status, f"{name} says {status.label}", details)


class Driver:
    """Feeds an engine one cycle at a time at T0 + t; `at` returns the notifications composed
    from its events: only for what the engine decides about them (ids from its numbering,
    the property that every notification pairs up). Everything else uses EDriver (events)."""

    def __init__(
        self, cfg: Config, role: Role = Role.SECONDARY, state: Optional[EngineState] = None
    ):
        self.cfg = cfg
        self.role = role
        self.engine = Engine(cfg, state)
        self.sent: List[Notification] = []

    def at(
        self,
        t: float,
        role: Optional[Role] = None,
        relax: Optional[Dict[str, Relaxation]] = None,
        **statuses,
    ):
        if role is not None:
            self.role = role
        results = [result(name, status) for name, status in statuses.items()]
        out = compose_all(self.engine.observe(T0 + t, self.role, results, relax or {}))
        self.sent.extend(out)
        return out

    def restart(self) -> None:
        """Persist, SIGKILL, load: a new Engine from the JSON text of the state."""
        text = json.dumps(self.engine.state.to_json())
        self.engine = Engine(self.cfg, EngineState.from_json(json.loads(text)))


class EDriver(Driver):
    """A Driver whose `at` returns what the engine emits (core.events), not words:
    engine tests assert on events; words are tested in test_message / test_compose."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events: List[Any] = []

    def at(self, t, role=None, relax=None, **statuses):
        if role is not None:
            self.role = role
        results = [result(name, status) for name, status in statuses.items()]
        out = self.engine.observe(T0 + t, self.role, results, relax or {})
        self.events.extend(out)
        return out


def kinds(items):
    """The kinds of notifications or events (the same strings; a maintenance event, which
    has none, by its class name)."""
    return [getattr(n, "kind", type(n).__name__) for n in items]


LAG = make_cfg()  # replay_lag: for 2m, recover_for 1m, unknown_as warning


# ---------------------------------------------------------------- debounce through the engine


def test_first_cycle_ok_is_silent_and_problem_needs_for():
    d = EDriver(LAG)
    assert d.at(0, replay_lag=OK) == []
    assert d.at(30, replay_lag=W) == []
    assert d.at(149, replay_lag=W) == []
    (p,) = d.at(150, replay_lag=W)
    assert isinstance(p, CheckEvent)
    assert (p.kind, p.check, p.node, p.role) == (PROBLEM, "replay_lag", "mail1", "secondary")
    assert (p.new, p.old, p.peak, p.since, p.at, p.now) == (W, None, None, T0 + 30, T0 + 30,
                                                             T0 + 150)
    assert (p.status, p.summary, p.reasons) == (W, "replay_lag says warning", ())
    assert dict(p.details) == {"lag_seconds": 412.5, "receive_age": 3.0}
    assert d.engine.open_problems() == [OpenProblem("replay_lag", W, T0 + 30)]


def test_problem_present_from_the_start_still_needs_for():
    d = EDriver(LAG)
    assert d.at(0, replay_lag=C) == [] and d.at(119, replay_lag=C) == []
    (p,) = d.at(120, replay_lag=C)
    assert (p.kind, p.new, p.since, p.at) == (PROBLEM, C, T0, T0)


def test_spike_shorter_than_for_sends_nothing():
    d = EDriver(LAG)
    for t, s in [
        (0, OK),
        (30, C),
        (60, C),
        (120, C),
        (149, C),
        (150, OK),
        (180, W),
        (240, OK),
        (600, OK),
    ]:
        assert d.at(t, replay_lag=s) == []
    assert d.engine.open_problems() == []


def test_escalation_then_deescalation_then_recovery_with_duration():
    d = EDriver(LAG)
    d.at(0, replay_lag=W)
    assert kinds(d.at(120, replay_lag=W)) == [PROBLEM]
    assert d.at(200, replay_lag=C) == [] and d.at(319, replay_lag=C) == []
    (esc,) = d.at(320, replay_lag=C)
    assert (esc.kind, esc.old, esc.new, esc.peak, esc.since, esc.at) == (
        ESCALATION, W, C, W, T0, T0 + 200)
    d.at(400, replay_lag=W)
    (de,) = d.at(520, replay_lag=W)
    assert (de.kind, de.old, de.new, de.peak, de.at) == (DEESCALATION, C, W, C, T0 + 400)
    assert d.at(600, replay_lag=OK) == [] and d.at(659, replay_lag=OK) == []
    (rec,) = d.at(660, replay_lag=OK)
    # Bad from t=0 to OK at t=600 (the words say "lasted 10m00s"), worst critical.
    assert (rec.kind, rec.old, rec.new, rec.peak, rec.since, rec.at) == (
        RECOVERY, W, OK, C, T0, T0 + 600)
    assert {e.check for e in d.events} == {"replay_lag"}
    assert d.engine.open_problems() == []


def test_recovery_needs_recover_for():
    d = EDriver(LAG)
    d.at(0, replay_lag=C)
    d.at(120, replay_lag=C)
    for t in (130, 150, 189):
        assert d.at(t, replay_lag=OK) == []
    assert d.at(190, replay_lag=C) == []  # back before recover_for: still the same problem
    assert d.at(200, replay_lag=OK) == [] and d.at(259, replay_lag=OK) == []
    assert kinds(d.at(260, replay_lag=OK)) == [RECOVERY]


# ---------------------------------------------------------------- unknown


def test_unknown_mapped_after_unknown_for():
    cfg = make_cfg(replay_lag=ReplayLagConfig(unknown_as="critical", unknown_for=300.0))
    d = EDriver(cfg)
    d.at(0, replay_lag=OK)
    for t in (10, 120, 309):
        assert d.at(t, replay_lag=U) == []
    (p,) = d.at(310, replay_lag=U)
    # Confirmed critical; the result it saw was UNKNOWN (the words: "could not run").
    assert (p.kind, p.new, p.status, p.since) == (PROBLEM, C, U, T0 + 10)


def test_unknown_for_defaults_to_for():
    d = EDriver(LAG)  # unknown_as warning, unknown_for unset -> for (2m)
    d.at(0, replay_lag=U)
    assert d.at(119, replay_lag=U) == []
    (p,) = d.at(120, replay_lag=U)
    assert (p.kind, p.new, p.status) == (PROBLEM, W, U)


def test_unknown_as_ok_ignores_unknowns():
    cfg = make_cfg(replay_lag=ReplayLagConfig(unknown_as="ok"))
    d = EDriver(cfg)
    for t in range(0, 3600, 60):
        assert d.at(t, replay_lag=U) == []
    d.at(3600, replay_lag=C)
    assert kinds(d.at(3720, replay_lag=C)) == [PROBLEM]
    # unknowns neither recover nor re-alert an open problem
    for t in range(3780, 7200, 60):
        assert d.at(t, replay_lag=U) == []
    assert d.engine.open_problems()[0].severity == C


# ---------------------------------------------------------------- flapping


FLAPPY = make_cfg(
    standbys=StandbysConfig(for_=0.0, recover_for=0.0),
    daemon=DaemonConfig(flap_changes=4, flap_window=1800.0),
)


def test_flapping_is_reported_once_then_quiet_until_stable():
    d = EDriver(FLAPPY, role=Role.PRIMARY)
    sent = []
    statuses = [W, OK] * 15
    for i, s in enumerate(statuses):
        sent += d.at(60 * i, standbys=s)
    # the 4th change is a recovery: sent; the 5th would page again: FLAPPING instead
    assert kinds(sent) == [PROBLEM, RECOVERY, PROBLEM, RECOVERY, FLAPPING]
    flap = sent[-1]
    assert (flap.check, flap.new, flap.peak, flap.since, flap.at) == (
        "standbys", W, None, T0 + 240, T0 + 240)
    # 5 changes within 30m; quiet for max(recover_for, flap_window / flap_changes) = 7m30s
    assert flap.flap == Flap((OK, W), 5, 1800.0, 450.0)
    assert d.engine.open_problems()[0].check == "standbys"
    # stable OK: quiet for 7m30s, then RECOVERY
    last = 60 * (len(statuses) - 1)  # an OK sample
    assert d.at(last + 60, standbys=OK) == []
    assert d.engine.open_problems()[0].severity == W
    assert d.at(last + 449, standbys=OK) == []
    (rec,) = d.at(last + 450, standbys=OK)
    assert (rec.kind, rec.peak, rec.reasons) == (RECOVERY, W, (SettledAfterFlapping((OK, W)),))
    # normal transitions resume
    assert kinds(d.at(last + 600, standbys=C)) == [PROBLEM]


def test_flapping_that_settles_in_a_worse_state_escalates():
    d = EDriver(FLAPPY, role=Role.PRIMARY)
    sent = []
    for i, s in enumerate([W, OK, W, OK, W, OK]):
        sent += d.at(60 * i, standbys=s)
    assert kinds(sent) == [PROBLEM, RECOVERY, PROBLEM, RECOVERY, FLAPPING]
    assert d.at(400, standbys=C) == []
    (esc,) = d.at(400 + 450, standbys=C)
    assert (esc.kind, esc.old, esc.new) == (ESCALATION, W, C)


def test_flapping_from_no_incident_opens_one_at_the_worst_level():
    cfg = make_cfg(
        standbys=StandbysConfig(for_=0.0, recover_for=0.0),
        daemon=DaemonConfig(flap_changes=2, flap_window=1800.0),
    )
    d = EDriver(cfg, role=Role.PRIMARY)
    d.at(0, standbys=C)
    d.at(60, standbys=OK)
    (flap,) = d.at(120, standbys=W)
    assert (flap.kind, flap.new, flap.flap.levels) == (FLAPPING, C, (OK, W, C))


# ---------------------------------------------------------------- reminders


def test_reminder_every_renotify_with_the_problems_level():
    cfg = make_cfg(alerts=AlertsConfig(renotify=4 * HOUR))
    d = EDriver(cfg)
    d.at(0, replay_lag=C)
    (problem,) = d.at(120, replay_lag=C)
    assert d.at(120 + 4 * HOUR - 1, replay_lag=C) == []
    (r,) = d.at(120 + 4 * HOUR, replay_lag=C)
    # Open since T0, due 4h after the page (the words: "still not OK after 4h02m").
    assert (r.kind, r.new, r.peak, r.since, r.at, r.now) == (
        REMINDER, C, C, T0, T0 + 120 + 4 * HOUR, T0 + 120 + 4 * HOUR)
    assert d.at(120 + 8 * HOUR - 1, replay_lag=C) == []
    assert kinds(d.at(120 + 8 * HOUR, replay_lag=C)) == [REMINDER]


def test_renotify_zero_disables_reminders():
    d = EDriver(make_cfg(alerts=AlertsConfig(renotify=0.0)))
    d.at(0, replay_lag=W)
    d.at(120, replay_lag=W)
    assert d.at(100 * HOUR, replay_lag=W) == []


# ---------------------------------------------------------------- roles


def test_first_role_is_silent_then_role_change_closes_checks_that_no_longer_apply():
    d = EDriver(LAG, role=Role.PRIMARY)
    assert kinds(d.at(0, drbd=OK, standbys=C, services=OK)) == [PROBLEM]  # standbys: for 0s
    # failover: this node is now the secondary; drbd's for (30s) debounces the role
    assert d.at(100, role=Role.SECONDARY, drbd=OK, replay_lag=OK) == []
    assert d.at(129, drbd=OK, replay_lag=OK) == []
    out = d.at(130, drbd=OK, replay_lag=OK)
    assert kinds(out) == [ROLE_CHANGE, NO_LONGER_APPLIES]
    role, closed = out
    assert isinstance(role, RoleChanged)
    assert (role.old, role.new, role.at, role.last_known) == (
        "primary", "secondary", T0 + 100, "primary")
    # Closed, not recovered: still at its level, for the role it ran for.
    assert (closed.check, closed.new, closed.peak, closed.role, closed.new_role) == (
        "standbys", C, C, "primary", "secondary")
    assert d.engine.open_problems() == []


def test_role_flapping_via_unknown_is_debounced():
    d = EDriver(LAG, role=Role.PRIMARY)
    d.at(0, drbd=OK, services=OK)
    for t in range(10, 600, 40):  # unknown for 20s, known for 20s, ...
        assert d.at(t, role=Role.UNKNOWN, drbd=U) == []
        assert d.at(t + 20, role=Role.PRIMARY, drbd=OK, services=OK) == []
    # unknown that lasts the drbd check's `for` is a change, and so is the way back
    assert d.events == []
    d.at(1000, role=Role.UNKNOWN, drbd=U)
    out = d.at(1030, role=Role.UNKNOWN, drbd=U)
    assert kinds(out) == [ROLE_CHANGE, PROBLEM]  # the drbd check itself pages separately
    assert (out[0].old, out[0].new) == ("primary", "unknown") and out[1].check == "drbd"
    out = d.at(1100, role=Role.PRIMARY, drbd=OK, services=OK) + d.at(1130, drbd=OK, services=OK)
    assert kinds(out) == [ROLE_CHANGE, RECOVERY] and (out[0].old, out[0].new) == (
        "unknown", "primary")


def test_unknown_at_start_then_known_role_is_silent():
    d = EDriver(LAG, role=Role.UNKNOWN)
    d.at(0, drbd=U)
    assert d.at(10, role=Role.PRIMARY, drbd=OK) == [] and d.at(100, drbd=OK) == []
    assert d.engine.state.role == "primary"


def test_going_unknown_keeps_other_open_problems():
    d = EDriver(LAG, role=Role.PRIMARY)
    d.at(0, drbd=OK, standbys=C)
    d.at(60, role=Role.UNKNOWN, drbd=U)
    out = d.at(100, drbd=U)
    assert kinds(out) == [ROLE_CHANGE, PROBLEM]  # no NO_LONGER_APPLIES on a change to unknown
    assert [p.check for p in d.engine.open_problems()] == ["drbd", "standbys"]
    d.at(200, role=Role.PRIMARY, drbd=OK, standbys=OK)
    out = d.at(230, drbd=OK, standbys=OK)
    assert kinds(out) == [ROLE_CHANGE, RECOVERY, RECOVERY]


# ---------------------------------------------------------------- backup relaxation


WINDOW = "backup window daily 12:00-14:00 UTC"


def window_cfg() -> Config:
    return make_cfg(
        services=ServicesConfig(for_=0.0, recover_for=0.0),
        backup_windows=(
            BackupWindow(start=time(12, 0), end=time(14, 0), checks=("replay_lag", "services")),
        ),
    )


def relaxations(engine: Engine, t: float, checks, backups=()):
    return {name: engine.relaxation(T0 + t, name, backups) for name in checks}


def test_held_problem_is_released_saying_what_held_it_when_the_window_ends():
    d = EDriver(window_cfg(), role=Role.PRIMARY)
    d.at(0, services=OK)
    for t in range(60, 7200, 600):
        assert d.at(t, relax=relaxations(d.engine, t, ["services"]), services=W) == []
    assert d.engine.open_problems() == []
    (p,) = d.at(7200, relax=relaxations(d.engine, 7200, ["services"]), services=W)
    assert (p.kind, p.new, p.since) == (PROBLEM, W, T0 + 60)
    # Held by the window from its start; released because the relaxation ended (not expired).
    assert p.reasons == (HeldBack(WINDOW, T0, False),)


def test_held_problem_that_clears_inside_the_window_is_never_sent():
    d = EDriver(window_cfg(), role=Role.PRIMARY)
    d.at(0, services=OK)
    d.at(60, relax=relaxations(d.engine, 60, ["services"]), services=W)
    d.at(600, relax=relaxations(d.engine, 600, ["services"]), services=OK)
    assert d.at(7300, relax=relaxations(d.engine, 7300, ["services"]), services=OK) == []
    assert d.events == []


def test_relaxed_critical_is_never_held():
    d = EDriver(window_cfg(), role=Role.PRIMARY)
    d.at(0, services=OK)
    (p,) = d.at(60, relax=relaxations(d.engine, 60, ["services"]), services=C)
    assert (p.kind, p.new, p.reasons) == (PROBLEM, C, (Ceiling(WINDOW, T0),))


def test_self_relaxing_check_alerts_inside_a_window_and_says_it_was_relaxed():
    d = EDriver(window_cfg())
    d.at(0, replay_lag=OK)
    d.at(60, relax=relaxations(d.engine, 60, ["replay_lag"]), replay_lag=C)
    (p,) = d.at(180, relax=relaxations(d.engine, 180, ["replay_lag"]), replay_lag=C)
    assert (p.kind, p.reasons) == (PROBLEM, (Relaxed(WINDOW, T0),))


def test_detected_backup_held_then_max_duration_releases_it():
    cfg = make_cfg(
        services=ServicesConfig(for_=0.0, recover_for=0.0),
        backup=BackupConfig(checks=("replay_lag", "services"), max_duration=HOUR),
    )
    d = EDriver(cfg, role=Role.PRIMARY)
    backups = [(4242, "pg_dump", None)]
    d.at(-1, services=OK)
    for t in range(0, 3601, 60):
        r = relaxations(d.engine, t, ["services"], backups)
        assert r["services"].active
        assert d.at(t, relax=r, services=W) == []
        d.restart()  # the backup's first sighting survives in the state
    r = relaxations(d.engine, 3601, ["services"], backups)
    assert r["services"].expired and not r["services"].active
    (p,) = d.at(3601, relax=r, services=W)
    assert p.kind == PROBLEM
    # Held since the backup was first seen, released because backup.max_duration passed.
    assert p.reasons == (HeldBack("running backup pg_dump (pid 4242)", T0, True),
                         RelaxationExpired(r["services"].reason))
    assert r["services"].reason == ("running backup pg_dump (pid 4242) has gone on for 1h00m, "
                                    "longer than backup.max_duration 1h00m: normal limits apply")


def test_open_problem_is_not_escalated_to_a_holdable_level_but_recovers_while_relaxed():
    cfg = make_cfg(
        services=ServicesConfig(for_=0.0, recover_for=0.0, unknown_as="unknown"),
        backup_windows=(BackupWindow(start=time(12, 0), end=time(14, 0), checks=("services",)),),
    )
    d = EDriver(cfg, role=Role.PRIMARY)
    assert kinds(d.at(-60, services=W)) == [PROBLEM]  # 11:59, before the window
    assert d.at(60, relax=relaxations(d.engine, 60, ["services"]), services=U) == []
    assert kinds(d.at(120, relax=relaxations(d.engine, 120, ["services"]), services=OK)) == [
        RECOVERY
    ]


# ---------------------------------------------------------------- persistence


def test_restart_mid_incident_neither_repages_nor_forgets_the_recovery():
    d = EDriver(LAG)
    d.at(0, replay_lag=C)
    [problem] = d.at(120, replay_lag=C)
    d.restart()
    assert d.at(150, replay_lag=C) == [] and d.at(3000, replay_lag=C) == []
    d.at(3100, replay_lag=OK)
    d.restart()
    (rec,) = d.at(3160, replay_lag=OK)
    # The incident the problem opened, closed: from T0 to 3100 s later ("lasted 51m40s").
    assert (rec.kind, rec.check, rec.since, rec.at, rec.peak) == (
        RECOVERY, problem.check, problem.since, T0 + 3100, C)


def test_restart_keeps_pending_timers_and_role():
    d = EDriver(LAG, role=Role.PRIMARY)
    d.at(0, drbd=OK, services=W)
    d.restart()
    assert d.engine.state.role == "primary"
    assert kinds(d.at(60, drbd=OK, services=W)) == [PROBLEM]  # services for 1m from t=0


def test_replayed_cycle_gives_the_same_ids():
    """Killed after sending but before saving: the cycle runs again, later, from the old state."""
    d = Driver(LAG)
    d.at(0, replay_lag=W)
    saved = json.dumps(d.engine.state.to_json())
    first = d.at(125, replay_lag=W)
    again = Driver(LAG, state=EngineState.from_json(json.loads(saved))).at(131, replay_lag=W)
    assert kinds(first) == kinds(again) == [PROBLEM]
    assert first[0].id == again[0].id
    assert first[0].created != again[0].created


def test_ids_differ_per_event():
    d = Driver(make_cfg(alerts=AlertsConfig(renotify=HOUR)))
    d.at(0, replay_lag=W)
    d.at(120, replay_lag=W)
    d.at(120 + HOUR, replay_lag=W)
    d.at(120 + 2 * HOUR, replay_lag=W)
    d.at(3 * HOUR, replay_lag=OK)
    d.at(3 * HOUR + 60, replay_lag=OK)
    assert kinds(d.sent) == [PROBLEM, REMINDER, REMINDER, RECOVERY]
    assert len({n.id for n in d.sent}) == 4


def test_corrupt_state_is_tolerated():
    garbage = [
        None,
        [],
        "state",
        {},
        {"version": 99, "role": "primary"},
        {"version": 1, "role": "captain", "checks": "x"},
        {
            "version": 1,
            "checks": {"replay_lag": "garbage", "standbys": {"incident": {"level": "bogus"}}},
        },
        {
            "version": 1,
            "checks": {"replay_lag": {"debounce": {"confirmed": 3}, "history": [[1, 2]]}},
        },
        {"version": 1, "relax_memory": {"detected_since": "yesterday"}, "role_pending_since": "x"},
    ]
    for data in garbage:
        state = EngineState.from_json(data)
        d = EDriver(LAG, state=state)
        d.at(0, replay_lag=W)
        assert kinds(d.at(120, replay_lag=W)) == [PROBLEM]
        json.dumps(d.engine.state.to_json())
    assert EngineState.from_json({"version": 99, "role": "primary"}).role is None


def test_state_round_trip_is_exact_mid_incident():
    d = EDriver(FLAPPY, role=Role.PRIMARY)
    for i, s in enumerate([W, OK, W, OK, W]):
        d.at(60 * i, drbd=OK, standbys=s)
    data = d.engine.state.to_json()
    assert EngineState.from_json(json.loads(json.dumps(data))).to_json() == data


def test_unconfigured_check_name_does_not_crash():
    d = EDriver(LAG)
    (p,) = d.at(0, custom=C)
    assert (p.kind, p.check, p.new) == (PROBLEM, "custom", C)  # Timing(): no wait


# ---------------------------------------------------------------- property


CHECKS_BY_ROLE = {
    Role.PRIMARY: ("drbd", "services", "standbys"),
    Role.SECONDARY: ("drbd", "replay_lag"),
    Role.UNKNOWN: ("drbd",),
}
PROPERTY_CFG = make_cfg(
    drbd=DrbdConfig(for_=30.0, recover_for=30.0),
    services=ServicesConfig(for_=0.0, recover_for=20.0),
    standbys=StandbysConfig(for_=0.0, recover_for=0.0, unknown_as="critical", unknown_for=40.0),
    replay_lag=ReplayLagConfig(for_=60.0, recover_for=30.0, unknown_as="unknown"),
    daemon=DaemonConfig(flap_changes=3, flap_window=600.0),
    alerts=AlertsConfig(renotify=900.0),
)
STATUSES = st.sampled_from([OK, OK, W, C, U])
STEP = st.tuples(
    st.floats(min_value=0, max_value=400, allow_nan=False),
    st.sampled_from([Role.PRIMARY, Role.PRIMARY, Role.SECONDARY, Role.UNKNOWN]),
    st.fixed_dictionaries(
        {name: STATUSES for name in ("drbd", "services", "standbys", "replay_lag")}
    ),
    st.booleans(),  # services relaxed this cycle
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=60))
def test_property_emitted_sequence_alternates_and_restarts_change_nothing(steps):
    steady = Engine(PROPERTY_CFG)
    restarted = Engine(PROPERTY_CFG)
    now = T0
    open_checks: Dict[str, str] = {}
    ids = set()
    for dt, role, statuses, relaxed in steps:
        now += dt
        results = [CheckResult(n, statuses[n], n, {}) for n in CHECKS_BY_ROLE[role]]
        relax = {"services": Relaxation(True, "backup window", now - 10, False)} if relaxed else {}
        out = compose_all(steady.observe(now, role, results, relax))
        # a restart before every cycle must not change a thing
        restarted = Engine(
            PROPERTY_CFG, EngineState.from_json(json.loads(json.dumps(restarted.state.to_json())))
        )
        assert [n.to_json() for n in compose_all(restarted.observe(now, role, results, relax))] == [
            n.to_json() for n in out
        ]
        for n in out:
            assert n.id not in ids
            ids.add(n.id)
            if n.kind == ROLE_CHANGE:
                continue
            check = n.check
            assert n.title == f"[mail1] {check}"
            if n.kind == PROBLEM:
                assert check not in open_checks, "two PROBLEMs without a closure"
                open_checks[check] = n.severity
            elif n.kind == FLAPPING:
                open_checks[check] = n.severity
            elif n.kind in (RECOVERY, NO_LONGER_APPLIES):
                assert check in open_checks, f"{n.kind} without an open problem"
                assert n.problem_severity is not None
                del open_checks[check]
            else:
                assert n.kind in (ESCALATION, DEESCALATION, REMINDER)
                assert check in open_checks, f"{n.kind} without an open problem"
                assert n.problem_severity is not None
    assert {p.check for p in steady.open_problems()} == set(open_checks)


# ---------------------------------------------------------------- maintenance


def maint(start: float, hours: float = 2.0, **changes) -> Maintenance:
    fields = dict(id="m1", reason="failover test", by="alice", started=T0 + start,
                  until=T0 + start + hours * HOUR, requested_until=T0 + start + hours * HOUR)
    fields.update(changes)
    return Maintenance(**fields)


class MDriver(EDriver):
    """An EDriver that passes a maintenance request (or None) every cycle."""

    request = None

    def at(self, t, role=None, relax=None, **statuses):
        if role is not None:
            self.role = role
        results = [result(name, status) for name, status in statuses.items()]
        out = self.engine.observe(T0 + t, self.role, results, relax or {}, self.request)
        self.events.extend(out)
        return out


PRIMARY_CFG = make_cfg(alerts=AlertsConfig(renotify=HOUR))  # standbys: for 0s, recover_for 30s
STARTED, CHANGED, ENDED = "MaintenanceStarted", "MaintenanceChanged", "MaintenanceEnded"


def held(record) -> List[Any]:
    """A maintenance record's events as (kind, check, new level, sent)."""
    return [(h.event.kind, getattr(h.event, "check", None), h.event.new, h.sent)
            for h in record.events]


def test_maintenance_holds_a_problem_that_begins_and_ends_inside_it():
    d = MDriver(PRIMARY_CFG, Role.PRIMARY)
    d.at(0, standbys=OK)
    d.request = maint(10)
    (start,) = d.at(10, standbys=OK)
    assert isinstance(start, MaintenanceStarted)
    assert (start.maintenance, start.open_now, start.role, start.now) == (
        d.request, (), "primary", T0 + 10)
    assert d.at(20, standbys=C) == []  # would page: held back
    assert d.engine.open_problems() == [OpenProblem("standbys", C, T0 + 20)]
    assert d.at(30, standbys=OK) == [] and d.at(60, standbys=OK) == []  # recovery held too
    assert d.engine.open_problems() == []
    assert d.at(HOUR, standbys=OK) == []  # nothing else while it lasts
    (end,) = d.at(2 * HOUR + 10, standbys=OK)
    assert isinstance(end, MaintenanceEnded)
    assert (end.how, end.ended, end.still_open, end.role) == (
        "expired", T0 + 2 * HOUR + 10, (), "primary")
    assert held(end.record) == [("problem", "standbys", C, False),
                                ("recovery", "standbys", OK, False)]
    assert end.record.events[1].event.at - end.record.events[1].event.since == 10
    assert d.at(2 * HOUR + 20, standbys=OK) == []
    # The day's history knows it happened without a page.
    (closed,), _ = d.engine.recent(T0 + 2 * HOUR + 20)
    assert (closed.check, closed.worst, closed.paged) == ("standbys", C, False)
    assert closed.until - closed.since == 10


def test_problem_still_open_when_maintenance_expires_pages_then():
    d = MDriver(PRIMARY_CFG, Role.PRIMARY)
    d.request = maint(0, hours=1)
    d.at(0, standbys=OK)
    assert d.at(60, standbys=C) == []
    assert d.at(1800, standbys=C) == []
    out = d.at(HOUR + 5, standbys=C)
    assert kinds(out) == [ENDED, PROBLEM]
    summary, page = out
    assert summary.still_open == (
        StillOpen("standbys", C, T0 + 60, "standbys says critical", paging=True),)
    assert (page.check, page.new, page.since) == ("standbys", C, T0 + 60)
    assert page.reasons == (HeldByMaintenance("failover test", T0, T0 + HOUR),)
    assert d.at(HOUR + 30, standbys=C) == []  # paged once
    assert kinds(d.at(HOUR + 60, standbys=OK) + d.at(HOUR + 90, standbys=OK)) == [RECOVERY]


def test_paged_problem_recovering_during_maintenance_still_resolves():
    d = MDriver(PRIMARY_CFG, Role.PRIMARY)
    d.at(0, standbys=OK)
    assert kinds(d.at(10, standbys=C)) == [PROBLEM]
    d.request = maint(20)
    (start,) = d.at(20, standbys=C)
    assert kinds([start]) == [STARTED]
    # Open now, already paged (the words: "Open now (already paged): standbys critical").
    assert start.open_now == (StillOpen("standbys", C, T0 + 10, "standbys says critical"),)
    d.at(30, standbys=OK)
    (rec,) = d.at(60, standbys=OK)
    assert (rec.kind, rec.peak) == (RECOVERY, C)  # PagerDuty's incident must resolve
    d.request = dataclasses.replace(d.request, ended=T0 + 100, ended_by="bob")
    (end,) = d.at(110, standbys=OK)
    assert (end.how, end.ended) == ("turned off by bob", T0 + 100)
    assert held(end.record) == [("recovery", "standbys", OK, True)]  # sent, not held


def test_escalation_during_maintenance_is_sent_when_it_ends():
    d = MDriver(make_cfg(), Role.SECONDARY)  # replay_lag: for 2m
    d.at(0, replay_lag=W)
    assert kinds(d.at(120, replay_lag=W)) == [PROBLEM]
    d.request = maint(130, hours=1)
    assert kinds(d.at(130, replay_lag=W)) == [STARTED]
    d.at(200, replay_lag=C)
    assert d.at(400, replay_lag=C) == []  # the escalation is held back
    out = d.at(130 + HOUR, replay_lag=C)
    assert kinds(out) == [ENDED, ESCALATION]
    assert (out[1].old, out[1].new, out[1].reasons) == (
        W, C, (HeldByMaintenance("failover test", T0 + 130, T0 + 130 + HOUR),))
    assert d.at(130 + HOUR + 30, replay_lag=C) == []


def test_reminders_and_role_changes_are_held_and_listed():
    cfg = make_cfg(alerts=AlertsConfig(renotify=600.0), drbd=DrbdConfig(for_=0.0))
    d = MDriver(cfg, Role.PRIMARY)
    d.at(0, standbys=OK)
    assert kinds(d.at(10, standbys=C)) == [PROBLEM]
    d.request = maint(20, hours=1)
    d.at(20, standbys=C)
    assert d.at(700, standbys=C) == []  # reminder due at 610: held
    # The role change is held; the closure of the paged standbys incident goes out.
    (closure,) = d.at(800, role=Role.SECONDARY, replay_lag=OK)
    assert (closure.kind, closure.check, closure.now) == (NO_LONGER_APPLIES, "standbys", T0 + 800)
    (end,) = d.at(20 + HOUR, replay_lag=OK)
    assert held(end.record) == [("reminder", "standbys", C, False),
                                ("role_change", None, "secondary", False),
                                ("no_longer_applies", "standbys", C, True)]
    assert kinds(d.events).count(NO_LONGER_APPLIES) == 1
    _, (change,) = d.engine.recent(T0 + 20 + HOUR)
    assert (change.old, change.new) == ("primary", "secondary")


def test_maintenance_survives_a_restart_and_is_extended_once():
    d = MDriver(PRIMARY_CFG, Role.PRIMARY)
    d.request = maint(0, hours=1)
    assert kinds(d.at(0, standbys=OK)) == [STARTED]
    d.at(30, standbys=C)
    d.restart()
    assert d.at(60, standbys=C) == []  # no second start message, still held
    d.request = maint(0, hours=2, reason="failover test, part 2", by="bob")
    (changed,) = d.at(90, standbys=C)
    assert isinstance(changed, MaintenanceChanged) and changed.maintenance == d.request
    assert (changed.maintenance.reason, changed.maintenance.until) == (
        "failover test, part 2", T0 + 2 * HOUR)
    assert d.at(HOUR + 10, standbys=C) == []  # the old end passed: still on
    d.restart()
    out = d.at(2 * HOUR, standbys=C)
    assert kinds(out) == [ENDED, PROBLEM]


def test_removed_request_ends_maintenance():
    d = MDriver(PRIMARY_CFG, Role.PRIMARY)
    d.request = maint(0)
    d.at(0, standbys=OK)
    d.request = None
    (end,) = d.at(30, standbys=OK)
    assert (type(end).__name__, end.how, end.ended) == (ENDED, "its request was removed", T0 + 30)


def test_state_from_before_maintenance_counts_open_incidents_as_paged():
    d = MDriver(PRIMARY_CFG, Role.PRIMARY)
    d.at(0, standbys=OK)
    d.at(10, standbys=C)
    raw = json.loads(json.dumps(d.engine.state.to_json()))
    del raw["checks"]["standbys"]["incident"]["told"]
    for key in ("maintenance", "history", "role_changes", "digest_next", "digest_schedule"):
        del raw[key]
    d.engine = Engine(d.cfg, EngineState.from_json(raw))
    d.request = maint(20, hours=0.5)
    d.at(20, standbys=C)
    out = d.at(20 + 1800, standbys=C)
    assert kinds(out) == [ENDED]  # it had been paged: no second PROBLEM


def test_maintenance_events_are_bounded():
    from watchdog.core.engine import MAX_MAINTENANCE_EVENTS

    cfg = make_cfg(daemon=DaemonConfig(flap_changes=10_000), standbys=StandbysConfig(recover_for=0.0))
    d = MDriver(cfg, Role.PRIMARY)
    d.request = maint(0, hours=5)
    d.at(0, standbys=OK)
    for i in range(1, MAX_MAINTENANCE_EVENTS + 30):
        d.at(i * 10, standbys=C if i % 2 else OK)
    dropped = d.engine.state.maintenance.dropped
    assert dropped > 0 and len(d.engine.state.maintenance.events) == MAX_MAINTENANCE_EVENTS
    end = d.at(6 * HOUR, standbys=OK)[0]
    assert len(end.record.events) == MAX_MAINTENANCE_EVENTS and end.record.dropped == dropped


# ---------------------------------------------------------------- the daily message


def test_daily_schedule_first_only_schedules_then_fires_daily():
    from watchdog.config import DigestConfig

    cfg = make_cfg(digest=DigestConfig(at=time(8, 0), timezone="Europe/Berlin"))
    d = EDriver(cfg)
    assert d.engine.daily_due(T0) is None  # 14:00 Berlin: the next is tomorrow 08:00
    tomorrow = datetime(2024, 6, 4, 6, 0, tzinfo=timezone.utc).timestamp()  # 08:00 CEST
    assert d.engine.state.digest_next == tomorrow
    assert d.engine.daily_due(tomorrow - 1) is None
    d.restart()
    assert d.engine.daily_due(tomorrow + 5) == tomorrow
    assert d.engine.daily_due(tomorrow + 35) is None
    assert d.engine.state.digest_next == tomorrow + 86400
    d.restart()
    # Down for three days: one late message, then back on schedule.
    assert d.engine.daily_due(tomorrow + 3 * 86400 + 3600) == tomorrow + 86400
    assert d.engine.state.digest_next == tomorrow + 4 * 86400


def test_daily_schedule_follows_config_changes():
    from watchdog.config import DigestConfig

    d = EDriver(make_cfg(digest=DigestConfig(at=time(8, 0))))
    d.engine.daily_due(T0)
    d.engine = Engine(make_cfg(digest=DigestConfig(at=time(12, 30))), d.engine.state)
    assert d.engine.daily_due(T0 + 60) is None  # rescheduled, not sent
    assert d.engine.state.digest_next == T0 + 1800
    assert d.engine.daily_due(T0 + 1800) == T0 + 1800
    d.engine = Engine(make_cfg(), d.engine.state)  # turned off
    assert d.engine.daily_due(T0 + 86400 * 2) is None
    assert d.engine.state.digest_next is None


def test_history_keeps_two_days_and_recent_shows_one():
    d = EDriver(make_cfg(), Role.PRIMARY)
    d.at(0, standbys=OK)
    d.at(10, standbys=C)
    d.at(20, standbys=OK)
    d.at(50, standbys=OK)
    (closed,), roles = d.engine.recent(T0 + 100)
    assert closed == ("standbys", C, T0 + 10, T0 + 20, "recovered", True) and roles == []
    d.restart()
    assert len(d.engine.state.history) == 1
    assert d.engine.recent(T0 + 86400 + 30) == ([], [])  # older than a day: not shown
    d.at(86400 + 30, standbys=OK)
    assert len(d.engine.state.history) == 1  # but kept
    d.at(2 * 86400 + 30, standbys=OK)
    assert d.engine.state.history == []


# ---------------------------------------------------------------- planned work (issue 11, item 14)

GRACES = make_cfg()  # standbys: for 0s, reconnect_grace 15s, role_change_grace 5m; drbd for 30s
MISSING, HUNG = Failure.MISSING, Failure.HUNG


class GraceDriver(EDriver):
    """Cycles of a node whose standbys result carries its failure kind (events out)."""

    def cycle(self, t: float, role: Optional[Role] = None, standbys: Status = OK,
              failure: Optional[Failure] = None) -> List[Any]:
        if role is not None:
            self.role = role
        if self.role == Role.PRIMARY:
            results = [result("drbd", OK),
                       CheckResult("standbys", standbys, f"standbys says {standbys.label}",
                                   {"streaming": 0 if failure else 1}, failure)]
        else:
            results = [result("drbd", OK), result("replay_lag", OK)]
        out = self.engine.observe(T0 + t, self.role, results, {})
        self.events.extend(out)
        return out


def test_reconnect_is_ridden_out_and_a_stopped_standby_pages_when_the_grace_ends():
    d = GraceDriver(GRACES, role=Role.PRIMARY)
    assert d.cycle(0) == []
    # A walsender reconnect: missing for one cycle, the daemon is told when it would fall due.
    assert d.cycle(100, standbys=C, failure=MISSING) == []
    assert d.engine.deadlines() == [T0 + 115]
    assert d.cycle(105) == [] and d.engine.deadlines() == []
    # Stopped for good: paged by the extra cycle at the end of the grace, dated from the start.
    assert d.cycle(200, standbys=C, failure=MISSING) == []
    assert d.cycle(214.9, standbys=C, failure=MISSING) == []
    (p,) = d.cycle(215, standbys=C, failure=MISSING)
    assert (p.kind, p.new, p.since, p.at) == (PROBLEM, C, T0 + 200, T0 + 200)
    assert p.reasons == (ReconnectGrace("standbys", 15.0),)  # not a reconnect
    assert d.engine.deadlines() == []  # confirmed: nothing more to wake up for
    assert kinds(d.cycle(260)) == []  # recover_for 30s
    assert kinds(d.cycle(290)) == [RECOVERY]


def test_hung_standby_gets_no_grace():
    d = GraceDriver(GRACES, role=Role.PRIMARY)
    d.cycle(0)
    (p,) = d.cycle(30, standbys=C, failure=HUNG)
    assert (p.kind, p.reasons) == (PROBLEM, ())
    assert d.engine.deadlines() == []


def test_planned_failover_names_the_grace_and_a_rebuilt_standby_pages_nobody():
    d = GraceDriver(GRACES, role=Role.SECONDARY)
    assert d.cycle(0) == [] and d.cycle(500) == []
    # DRBD now says primary; the old primary is being rebuilt as this node's standby.
    assert d.cycle(1000, role=Role.PRIMARY, standbys=C, failure=MISSING) == []
    assert d.engine.deadlines() == [T0 + 1300]
    out = d.cycle(1030, standbys=C, failure=MISSING)  # drbd's for (30s): the role is confirmed
    assert kinds(out) == [ROLE_CHANGE]
    # The role change names the grace: standbys pages only if still missing at 1000 + 5m.
    assert (out[0].old, out[0].new, out[0].at, out[0].graces) == (
        "secondary", "primary", T0 + 1000, (("standbys", 300.0),))
    d.restart()  # a restart in the middle of the grace keeps it
    for t in (1060, 1090, 1120):
        assert d.cycle(t, standbys=C, failure=MISSING) == []
    assert d.cycle(1150) == []  # streaming again
    # Steady state again: a later reconnect is ridden out, a role change is not needed.
    assert d.cycle(2000, standbys=C, failure=MISSING) == [] and d.cycle(2010) == []
    assert d.events == out


def test_failover_whose_standby_never_comes_back_pages_at_the_named_time():
    d = GraceDriver(GRACES, role=Role.SECONDARY)
    d.cycle(0)
    d.cycle(1000, role=Role.PRIMARY, standbys=C, failure=MISSING)
    assert kinds(d.cycle(1030, standbys=C, failure=MISSING)) == [ROLE_CHANGE]
    assert d.cycle(1299.9, standbys=C, failure=MISSING) == []
    (p,) = d.cycle(1300, standbys=C, failure=MISSING)
    assert p.kind == PROBLEM
    assert p.reasons == (RoleChangeGrace("standbys", 300.0, T0 + 1000),)
    # A hung standby right after the change is not held at all.
    h = GraceDriver(GRACES, role=Role.SECONDARY)
    h.cycle(0)
    assert kinds(h.cycle(1000, role=Role.PRIMARY, standbys=C, failure=HUNG)) == [PROBLEM]


def test_role_change_to_secondary_names_no_standbys_grace_and_first_role_gets_none():
    d = GraceDriver(GRACES, role=Role.PRIMARY)
    d.cycle(0)
    d.cycle(100, role=Role.SECONDARY)
    (change,) = d.cycle(130)
    assert change.kind == ROLE_CHANGE and change.graces == ()
    # A daemon whose very first role is primary (a fresh state): only the reconnect grace.
    f = GraceDriver(GRACES, role=Role.PRIMARY)
    assert f.cycle(0, standbys=C, failure=MISSING) == []
    assert kinds(f.cycle(15, standbys=C, failure=MISSING)) == [PROBLEM]


def test_ids_stay_unique_when_one_check_repeats_a_transition_at_the_same_time():
    """A clock stepped back re-creates (check, kind, time): the old ids made of those alone
    collided and the outbox dropped the second PROBLEM as a duplicate (a lost alert)."""
    d = Driver(make_cfg(), Role.PRIMARY)
    for t, level in [(0, C), (40, OK), (80, OK), (0, C), (40, OK), (80, OK), (0, C)]:
        d.at(t, standbys=level)
    assert kinds(d.sent) == ["problem", "recovery", "problem", "recovery", "problem"]
    assert len({n.id for n in d.sent}) == 5
    # The same cycle replayed from the same state (a crash before the state was written)
    # produces the same ids, which is what lets the outbox drop the replay.
    d.at(200, standbys=OK)
    saved = json.dumps(d.engine.state.to_json())
    first = d.at(240, standbys=OK)
    replay = Engine(d.cfg, EngineState.from_json(json.loads(saved)))
    again = compose_all(replay.observe(T0 + 240, Role.PRIMARY, [result("standbys", OK)], {}))
    assert [n.id for n in again] == [n.id for n in first] and first


def test_a_replayed_cycle_with_an_extra_event_keeps_the_other_events_ids():
    """Replayed later (a crash before the state was written), a cycle can emit one more
    event (here a role change confirmed by then): the others keep their ids, so the outbox
    still drops them as duplicates (numbers are per subject, not one counter)."""
    cfg = make_cfg(services=ServicesConfig(for_=0.0, recover_for=20.0))
    d = Driver(cfg, Role.PRIMARY)
    assert kinds(d.at(0, services=C)) == [PROBLEM]
    d.at(10, role=Role.SECONDARY, services=OK)  # role change pending (drbd for: 30s)
    saved = json.dumps(d.engine.state.to_json())
    (recovery,) = d.at(35, services=OK)
    replay = Engine(cfg, EngineState.from_json(json.loads(saved)))
    again = compose_all(replay.observe(T0 + 45, Role.SECONDARY, [result("services", OK)], {}))
    assert kinds(again) == [ROLE_CHANGE, RECOVERY]
    assert again[1].id == recovery.id and again[1].body == recovery.body.replace("35s", "45s")


def test_which_checks_relax_themselves_comes_from_the_registry():
    """It was a set naming replay_lag inside the core; now the registry entry says it."""
    from watchdog.checks import registry

    # storage drops only its warning forecast in a window and keeps its free-space limits
    assert registry.self_relaxing() == {"replay_lag", "storage"}
    assert Engine(window_cfg()).self_relaxing == {"replay_lag", "storage"}
    # A check marked so is never held: inside the window its warning pages, saying so.
    d = EDriver(window_cfg(), role=Role.PRIMARY)
    d.engine = Engine(d.cfg, d.engine.state, self_relaxing=("services",))
    d.at(0, services=OK)
    (p,) = d.at(60, relax=relaxations(d.engine, 60, ["services"]), services=W)
    assert (p.kind, p.new, p.reasons) == (PROBLEM, W, (Relaxed(WINDOW, T0),))
