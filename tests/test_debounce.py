"""Debounce: a raw level is confirmed only after it held for for / recover_for / unknown_for."""

from __future__ import annotations

import json

import pytest

from watchdog.config import PostgresRoleConfig, ReplayLagConfig, StandbysConfig
from watchdog.core.debounce import (
    Change,
    Debounce,
    Timing,
    confirm_at,
    effective_level,
    step,
    worse,
)
from watchdog.model import Failure, Status

OK, W, C, U = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN


def feed(seq, timing, state=None):
    """Feed (time, status) pairs; return the final state and the changes as (t, old, new, at)."""
    state = state or Debounce()
    changes = []
    for t, status in seq:
        state, change = step(state, t, status, timing)
        if change is not None:
            changes.append((t, change.old, change.new, change.at))
    return state, changes


T = Timing(for_=120, recover_for=60, unknown_for=300, unknown_as=C)


def test_timing_from_config_sections_and_unknown_for_default():
    lag = Timing.of(ReplayLagConfig())
    assert (lag.for_, lag.recover_for, lag.unknown_for, lag.unknown_as) == (120, 60, 120, W)
    explicit = Timing.of(PostgresRoleConfig(unknown_for=10.0))
    assert explicit.unknown_for == 10 and explicit.for_ == 30
    assert Timing.of(StandbysConfig()).for_ == 0
    assert Timing.of(None) == Timing()


def test_first_ok_is_confirmed_silently():
    state, changes = feed([(0, OK)], T)
    assert changes == []
    assert state.confirmed == OK and state.confirmed_since == 0 and not state.pending


def test_first_problem_needs_for_from_first_observation():
    state, changes = feed([(0, W), (60, W), (119.9, W)], T)
    assert changes == [] and state.confirmed == OK and state.pending
    state, changes = feed([(120, W)], T, state)
    assert changes == [(120, OK, W, 0)]


def test_spike_shorter_than_for_changes_nothing_and_restarts_the_timer():
    state, changes = feed([(0, OK), (30, C), (60, C), (90, OK), (100, C), (200, C)], T)
    assert changes == []
    # the second spike is timed from its own start (100), not from the first one
    state, changes = feed([(219.9, C), (220, C)], T, state)
    assert changes == [(220, OK, C, 100)]


def test_problem_wobbling_between_warning_and_critical_dates_from_first_bad_sample():
    _, changes = feed([(0, OK), (10, W), (70, C), (130, C)], T)
    assert changes == [(130, OK, C, 10)]


def test_escalation_deescalation_and_recovery_each_need_their_hold():
    seq = [
        (0, W),
        (120, W),
        (200, C),
        (319, C),
        (320, C),
        (400, W),
        (520, W),
        (600, OK),
        (659, OK),
        (660, OK),
    ]
    _, changes = feed(seq, T)
    assert changes == [
        (120, OK, W, 0),
        (320, W, C, 200),
        (520, C, W, 400),
        (660, W, OK, 600),
    ]


def test_short_ok_does_not_end_a_problem():
    _, changes = feed([(0, W), (120, W), (130, OK), (180, W), (240, OK), (299, OK)], T)
    assert changes == [(120, OK, W, 0)]


def test_unknown_uses_unknown_as_and_unknown_for():
    _, changes = feed([(0, U), (299, U)], T)
    assert changes == []
    _, changes = feed([(0, U), (300, U)], T)
    assert changes == [(300, OK, C, 0)]


def test_unknown_mixed_with_real_problem_uses_for():
    # a real critical sample in the streak: the check's own `for` applies
    _, changes = feed([(0, C), (60, U), (120, U)], T)
    assert changes == [(120, OK, C, 0)]


def test_unknown_as_ok_ignores_unknowns_completely():
    timing = Timing(for_=60, recover_for=60, unknown_for=60, unknown_as=OK)
    state, changes = feed([(0, U), (1000, U)], timing)
    assert changes == [] and state.confirmed is None
    # an open problem is not "recovered" by a probe that cannot run
    state, changes = feed([(0, C), (60, C), (100, U), (1000, U), (5000, U)], timing)
    assert changes == [(60, OK, C, 0)] and state.confirmed == C


def test_unknown_as_unknown_is_its_own_level():
    timing = Timing(for_=0, recover_for=0, unknown_for=0, unknown_as=U)
    _, changes = feed([(0, W), (10, U), (20, C)], timing)
    assert [c[2] for c in changes] == [W, U, C]


def test_zero_for_confirms_at_once():
    _, changes = feed([(0, C)], Timing())
    assert changes == [(0, OK, C, 0)]


def test_clock_going_backwards_restarts_the_timer_instead_of_stalling():
    state, _ = feed([(1000, W)], T)
    state, changes = feed([(10, W), (129, W)], T, state)
    assert changes == []
    _, changes = feed([(130, W)], T, state)
    assert changes == [(130, OK, W, 10)]


def test_state_json_round_trip_keeps_the_timers():
    state, _ = feed([(0, OK), (10, C), (60, C)], T)
    again = Debounce.from_json(json.loads(json.dumps(state.to_json())))
    assert again == state
    _, changes = feed([(130, C)], T, again)
    assert changes == [(130, OK, C, 10)]


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        [],
        "x",
        {"confirmed": "bogus"},
        {"confirmed": "ok"},
        {"confirmed": "ok", "confirmed_since": "yesterday"},
        {"confirmed": "ok", "confirmed_since": float("nan")},
    ],
)
def test_state_from_garbage_is_fresh(garbage):
    assert Debounce.from_json(garbage) == Debounce()


def test_partial_garbage_drops_only_the_broken_timer():
    state = Debounce.from_json({"confirmed": "warning", "confirmed_since": 5, "streak": "ok"})
    assert state.confirmed == W and state.streak is None


def test_effective_level_and_the_order_of_levels():
    assert effective_level(C, W) == C
    assert effective_level(U, W) == W
    assert effective_level(U, OK) is None
    assert OK.rank < W.rank < U.rank < C.rank
    assert worse(W, C) == C and worse(U, W) == U


def test_change_is_plain_data():
    change = Change(OK, W, 1.0, 2.0)
    assert (change.old, change.new, change.at, change.confirmed_at) == (OK, W, 1.0, 2.0)


def test_for_of_whole_intervals_is_not_lost_to_scheduling_jitter():
    """Cycles 10 s apart on the timetable, the second woken 2 ms sooner: `for` 10s holds."""
    timing = Timing(for_=10, recover_for=10, unknown_for=10, unknown_as=C)
    _, changes = feed([(0.0, OK), (1000.004, W), (1010.002, W)], timing)
    assert changes == [(1010.002, OK, W, 1000.004)]
    # ...but a spike really shorter than `for` still waits
    _, changes = feed([(0.0, OK), (1000.0, W), (1009.9, W)], timing)
    assert changes == []


# ---------------------------------------------------------------- graces (issue 11, item 14)

GRACE = Timing(for_=0, recover_for=30, unknown_for=120, unknown_as=W,
               reconnect_grace=15, role_change_grace=300)


def feed_typed(seq, timing, state=None, role_changed_at=None):
    """Like feed, with (time, status, failure) triples."""
    state = state or Debounce()
    changes = []
    for t, status, failure in seq:
        state, change = step(state, t, status, timing, failure, role_changed_at)
        if change is not None:
            changes.append((t, change.old, change.new, change.at))
    return state, changes


def test_standbys_defaults_carry_both_graces():
    timing = Timing.of(StandbysConfig())
    assert (timing.for_, timing.reconnect_grace, timing.role_change_grace) == (0, 15, 300)
    # Checks without the keys have no grace.
    assert Timing.of(ReplayLagConfig()).reconnect_grace == 0


def test_missing_waits_out_a_reconnect_but_hung_and_untyped_do_not():
    M, H = Failure.MISSING, Failure.HUNG
    # A reconnect: missing for 10 s, then streaming again: nothing.
    _, changes = feed_typed([(0, OK, None), (30, C, M), (35, C, M), (40, OK, None)], GRACE)
    assert changes == []
    # A stopped standby: confirmed 15 s after the first missing sample, dated from it.
    state, changes = feed_typed([(0, OK, None), (30, C, M), (44.9, C, M)], GRACE)
    assert changes == [] and state.pending
    _, changes = feed_typed([(45, C, M)], GRACE, state)
    assert changes == [(45, OK, C, 30)]
    # Hung (reply stale) and an untyped critical: `for` (0 s) alone, as before.
    assert feed_typed([(0, OK, None), (30, C, H)], GRACE)[1] == [(30, OK, C, 30)]
    assert feed_typed([(0, OK, None), (30, C, None)], GRACE)[1] == [(30, OK, C, 30)]
    # Missing that turns out hung within the grace: paged at the hung sample.
    _, changes = feed_typed([(0, OK, None), (30, C, M), (35, C, H)], GRACE)
    assert changes == [(35, OK, C, 30)]


def test_missing_after_a_role_change_waits_for_the_role_change_grace():
    M = Failure.MISSING
    role_at = 1000.0
    seq = [(1000, C, M), (1100, C, M), (1299.9, C, M)]
    state, changes = feed_typed(seq, GRACE, role_changed_at=role_at)
    assert changes == []
    _, changes = feed_typed([(1300, C, M)], GRACE, state, role_changed_at=role_at)
    assert changes == [(1300, OK, C, 1000)]
    # Long after the change only the reconnect grace is left.
    _, changes = feed_typed([(5000, C, M), (5015, C, M)], GRACE, role_changed_at=role_at)
    assert changes == [(5015, OK, C, 5000)]
    # A longer `for` still wins over a shorter grace.
    slow = Timing(for_=60, reconnect_grace=15)
    _, changes = feed_typed([(0, C, M), (59, C, M), (60, C, M)], slow)
    assert changes == [(60, OK, C, 0)]


def test_confirm_at_and_recovery_untouched_by_graces():
    M = Failure.MISSING
    assert confirm_at(100, C, False, GRACE, M) == 115
    assert confirm_at(100, C, False, GRACE, M, role_changed_at=90) == 390
    assert confirm_at(100, C, False, GRACE, Failure.HUNG, 90) == 100
    assert confirm_at(100, OK, False, GRACE, M, 90) == 130  # recover_for only
