"""Debounce one check's raw statuses into a confirmed level, driven by an injected clock.

Why: a single bad sample must not page anyone (replay lag has "momentary spikes"), and a
problem must not be declared over on a single good sample either. A new raw level becomes
the confirmed level only after it has held for the check's `for` (a problem), `recover_for`
(back to OK) or `unknown_for` (a probe that could not run). Everything here is pure: time is
the `now` parameter (wall-clock epoch seconds, so the state survives a restart) and the
state is a frozen, JSON-serialisable value.

Levels are `model.Status` values here and in the whole core (ordered by `Status.rank`);
only the JSON edge (to_json/from_json, core.state) writes and reads their labels ("ok",
"warning", "critical", "unknown"). UNKNOWN raw statuses are mapped through the check's
`unknown_as` first; `unknown_as = "ok"` means the sample is ignored altogether (it neither
starts, continues nor ends a problem).

Graces for a MISSING failure (a check result typed `Failure.MISSING`, e.g. no standby
streaming): a standby that reconnects (walreceiver retries every
wal_retrieve_retry_interval, 5 s by default) or is being rebuilt after a failover is briefly
absent by design. Such a problem is confirmed only once it has also held for the check's
`reconnect_grace` (steady state) and not before `role_change_grace` after this node's last
role change. A HUNG failure (connected, silent past its own liveness limit) gets no grace:
that limit already was the wait.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from watchdog.model import Failure, Status

OK = Status.OK
WARNING = Status.WARNING
CRITICAL = Status.CRITICAL
UNKNOWN = Status.UNKNOWN
LEVELS = (OK, WARNING, CRITICAL, UNKNOWN)

# While the confirmed level is OK, any non-OK raw level continues one "bad" streak: a
# problem that wobbles between warning and critical still started at its first bad sample.
# Such a streak is held as BAD_STREAK whatever levels it saw (which level is being timed is
# `level`); the JSON edge writes it as "bad", as the file always had it.
BAD_STREAK = Status.WARNING
_BAD = "bad"

# The daemon's cycles run on a timetable but stamp observations with the clock read when
# each actually starts; when the later one woke a few ms sooner, a `for` of exactly N
# intervals measured 9.998 s of 10 and waited one more whole interval (bench/ saw it in
# about half the runs). Scheduling jitter below this counts as having held.
HOLD_SLACK = 0.05


_BY_LABEL = {status.label: status for status in Status}


def level_of(value: Any) -> Optional[Status]:
    """The level a JSON value (a Status label) stands for; None for anything else (the JSON
    edge: core.state and core.events read levels through this)."""
    if isinstance(value, Status):
        return value
    return _BY_LABEL.get(value) if isinstance(value, str) else None


def label_of(level: Optional[Status]) -> Optional[str]:
    """The JSON form of a level (its label); None stays None."""
    return None if level is None else level.label


def worse(a: Status, b: Status) -> Status:
    return a if a.rank >= b.rank else b


def effective_level(status: Status, unknown_as: Status) -> Optional[Status]:
    """The level a raw status counts as; None when it is to be ignored (UNKNOWN as OK)."""
    if status == Status.UNKNOWN:
        if unknown_as == OK:
            return None
        return unknown_as if unknown_as in LEVELS else CRITICAL
    return status


@dataclass(frozen=True)
class Timing:
    """How long a new raw level must hold before it is confirmed (seconds)."""

    for_: float = 0.0
    recover_for: float = 0.0
    unknown_for: float = 0.0
    unknown_as: Status = WARNING
    # For a MISSING failure only (see the module docstring); 0 = no grace.
    reconnect_grace: float = 0.0
    role_change_grace: float = 0.0

    @classmethod
    def of(cls, section: Any) -> Timing:
        """From a check's config section (for_, recover_for, unknown_as, unknown_for and,
        where the check has them, reconnect_grace and role_change_grace)."""
        if section is None:
            return cls()
        for_ = float(getattr(section, "for_", 0.0) or 0.0)
        unknown_for = getattr(section, "unknown_for", None)
        # The config's label; one that names no level counts as critical (never silent).
        unknown_as = level_of(getattr(section, "unknown_as", WARNING.label))
        if unknown_as is None:  # (Status.OK is falsy: compare with None, never `or`)
            unknown_as = CRITICAL
        return cls(
            for_=for_,
            recover_for=float(getattr(section, "recover_for", 0.0) or 0.0),
            unknown_for=for_ if unknown_for is None else float(unknown_for),
            unknown_as=unknown_as,
            reconnect_grace=float(getattr(section, "reconnect_grace", 0.0) or 0.0),
            role_change_grace=float(getattr(section, "role_change_grace", 0.0) or 0.0),
        )

    def hold(self, level: Status, unknown_only: bool) -> float:
        """The time `level` must hold to be confirmed."""
        if level == OK:
            return self.recover_for
        return self.unknown_for if unknown_only else self.for_


def confirm_at(
    streak_since: float,
    level: Status,
    unknown_only: bool,
    timing: Timing,
    failure: Optional[Failure] = None,
    role_changed_at: Optional[float] = None,
) -> float:
    """When a streak of `level` that began at `streak_since` is confirmed.

    A MISSING failure also waits out `reconnect_grace` from the streak's start and
    `role_change_grace` from `role_changed_at` (this node's last role change, if any).
    """
    due = streak_since + timing.hold(level, unknown_only)
    if level != OK and failure == Failure.MISSING:
        due = max(due, streak_since + timing.reconnect_grace)
        if role_changed_at is not None:
            due = max(due, role_changed_at + timing.role_change_grace)
    return due


@dataclass(frozen=True)
class Change:
    """A confirmed change: `old` -> `new`; `at` is when the new level began (the raw streak's
    first sample, stable across a replayed cycle), `confirmed_at` the cycle that confirmed it."""

    old: Status
    new: Status
    at: float
    confirmed_at: float


@dataclass(frozen=True)
class Debounce:
    """One check's debounce state.

    confirmed / confirmed_since: the confirmed level and when it began (None: never observed).
    streak / streak_since / unknown_only: the raw streak being timed against `confirmed`
    (while confirmed is OK: any non-OK level, as BAD_STREAK, "bad" in JSON) and whether
    every sample of it was a mapped UNKNOWN.
    level / level_since: the latest raw level and when that exact level began (stability).
    """

    confirmed: Optional[Status] = None
    confirmed_since: Optional[float] = None
    streak: Optional[Status] = None
    streak_since: Optional[float] = None
    unknown_only: bool = False
    level: Optional[Status] = None
    level_since: Optional[float] = None
    last_seen: Optional[float] = None

    @property
    def pending(self) -> bool:
        """A raw level different from the confirmed one is being timed."""
        return self.level is not None and self.level != self.confirmed

    def streak_of(self, level: Status) -> Status:
        """The streak a sample of `level` belongs to: its level, but while confirmed is OK
        every non-OK level belongs to one bad streak (BAD_STREAK)."""
        if self.confirmed == OK and level != OK:
            return BAD_STREAK
        return level

    def to_json(self) -> Dict[str, Any]:
        streak: Union[str, None] = label_of(self.streak)
        if self.confirmed == OK and self.streak not in (None, OK):
            streak = _BAD
        return {
            "confirmed": label_of(self.confirmed),
            "confirmed_since": self.confirmed_since,
            "streak": streak,
            "streak_since": self.streak_since,
            "unknown_only": self.unknown_only,
            "level": label_of(self.level),
            "level_since": self.level_since,
            "last_seen": self.last_seen,
        }

    @classmethod
    def from_json(cls, data: Any) -> Debounce:
        """Tolerant: any malformed field falls back to "never observed"."""
        if not isinstance(data, dict):
            return cls()
        try:
            confirmed = _level_or_none(data.get("confirmed"))
            raw_streak = data.get("streak")
            # "bad": any non-OK level while confirmed is OK; which one does not matter.
            streak = BAD_STREAK if raw_streak == _BAD else level_of(raw_streak)
            state = cls(
                confirmed=confirmed,
                confirmed_since=_time_or_none(data.get("confirmed_since")),
                streak=streak,
                streak_since=_time_or_none(data.get("streak_since")),
                unknown_only=bool(data.get("unknown_only", False)),
                level=_level_or_none(data.get("level")),
                level_since=_time_or_none(data.get("level_since")),
                last_seen=_time_or_none(data.get("last_seen")),
            )
        except (TypeError, ValueError):
            return cls()
        if state.confirmed is not None and state.confirmed_since is None:
            return cls()
        if (state.streak is None) != (state.streak_since is None):
            state = dataclasses.replace(state, streak=None, streak_since=None)
        if (state.level is None) != (state.level_since is None):
            state = dataclasses.replace(state, level=None, level_since=None)
        return state


def _level_or_none(value: Any) -> Optional[Status]:
    if value is None:
        return None
    level = level_of(value)
    if level is None:
        raise ValueError(f"bad level {value!r}")
    return level


def _time_or_none(value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"bad time {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"bad time {value!r}")
    return value


def step(
    state: Debounce,
    now: float,
    status: Status,
    timing: Timing,
    failure: Optional[Failure] = None,
    role_changed_at: Optional[float] = None,
) -> Tuple[Debounce, Optional[Change]]:
    """Feed one raw status observed at `now`; returns the new state and a confirmed change.

    First observation: OK is confirmed at once (silently, no Change); a problem is timed from
    this first sample like any other. A clock that went backwards restarts the timers at
    `now` instead of stalling them. `failure` and `role_changed_at`: see confirm_at.
    """
    level = effective_level(status, timing.unknown_as)
    if level is None:
        return state, None
    raw_unknown = status == Status.UNKNOWN
    if state.confirmed is None:
        state = Debounce(confirmed=OK, confirmed_since=now)
        if level == OK:
            return dataclasses.replace(state, level=OK, level_since=now, last_seen=now), None

    # Exact-level run (for "stable for ...").
    if state.level != level or state.level_since is None or state.level_since > now:
        state = dataclasses.replace(state, level=level, level_since=now)

    # The streak timed against the confirmed level.
    key = state.streak_of(level)
    if state.streak != key or state.streak_since is None or state.streak_since > now:
        state = dataclasses.replace(state, streak=key, streak_since=now, unknown_only=raw_unknown)
    elif state.unknown_only and not raw_unknown:
        state = dataclasses.replace(state, unknown_only=False)
    state = dataclasses.replace(state, last_seen=now)

    if level == state.confirmed:
        return state, None
    assert state.streak_since is not None
    due = confirm_at(
        state.streak_since, level, state.unknown_only, timing, failure, role_changed_at
    )
    if now + HOLD_SLACK < due:
        return state, None
    change = Change(old=state.confirmed or OK, new=level, at=state.streak_since, confirmed_at=now)
    state = dataclasses.replace(
        state, confirmed=level, confirmed_since=state.streak_since, streak=level
    )
    return state, change
