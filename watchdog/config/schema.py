"""The schema's building blocks: field helpers, shared bounds and the check timing.

Every section is a frozen dataclass whose fields carry their TOML kind and bounds in field
metadata (`_f`, `_dur`); that one declaration drives validation (watchdog.config.load) and
the defaults. The debounce keys every check table accepts are declared once, on
`CheckTiming`; a check's section inherits them through `@check_section` with its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from watchdog.units import (
    parse_duration,
)

SEVERITIES = ("ok", "warning", "critical", "unknown")
ALERT_KINDS = ("warning", "critical", "recovery", "info")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ---------------------------------------------------------------- schema helpers


def _f(kind: str, default: Any, toml: Optional[str] = None, **extra: Any) -> Any:
    """A dataclass field with its TOML kind (and TOML name when it differs)."""
    meta = {"kind": kind, "toml": toml, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _dur(default: Optional[str], low: str, high: str, why_low: str = "", why_high: str = "",
         positive: bool = False, **extra: Any) -> Any:
    """A duration field bounded to what works: [low, high] (or (0, high] when `positive`),
    with the reason a bound exists, for the error message."""
    value = parse_duration(default) if default is not None else None
    return _f("duration", value, low=parse_duration(low), high=parse_duration(high),
              why_low=why_low, why_high=why_high, positive=positive, **extra)


# Bounds every duration has unless it declares tighter ones: beyond a year, deadlines and
# timers overflow (threading timeouts, datetime arithmetic) and no monitoring makes sense.
_MAX_DURATION = 366 * 86400.0
_MAX_SIZE = 1024**5  # 1 PiB: more WAL than any standby holds
_MAX_INT = 1_000_000
_UNIT_WATCHDOG_SLOT = 60.0  # systemd/ha-watchdog.service: WatchdogSec=120, pinged every 60 s
_PROBE_LIMIT = "5m"
_PROBE_WHY = "a probe blocks its cycle that long; beyond minutes the watchdog is blind"
_DEBOUNCE_LIMIT = "7d"
_DEBOUNCE_WHY = "a problem held back longer than a week is never paged"

# The keys every check table accepts (decision core, see watchdog.core.debounce); each
# section declares them with its own defaults.


def _for(default: str) -> Any:
    return _dur(default, "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY, toml="for")


def _recover_for(default: str) -> Any:
    return _dur(default, "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY)


def _unknown_as(default: str) -> Any:
    return _f("choice", default, choices=SEVERITIES)


def _unknown_for(default: Optional[str] = None) -> Any:
    """None: the check's own `for` (see effective_unknown_for)."""
    return _dur(default, "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY, optional=True)


def _timeout(default: str, what: str = _PROBE_WHY, low: str = "100ms") -> Any:
    return _dur(default, low, _PROBE_LIMIT, why_low="nothing answers faster", why_high=what)


@dataclass(frozen=True)
class CheckTiming:
    """The debounce keys of every check table (see watchdog.core.debounce): `for`,
    `recover_for`, `unknown_as`, `unknown_for`. Declared once here; a check's section
    subclasses it and sets its own defaults with `@check_section`."""

    for_: float = _for("0s")
    recover_for: float = _recover_for("0s")
    unknown_as: str = _unknown_as("warning")
    unknown_for: Optional[float] = _unknown_for()

    @property
    def timing(self) -> CheckTiming:
        """Just the debounce keys, as the shared type."""
        return CheckTiming(self.for_, self.recover_for, self.unknown_as, self.unknown_for)


_TIMING_KEYS = ("for_", "recover_for", "unknown_as", "unknown_for")


def check_section(for_: str, recover_for: str, unknown_as: str,
                  unknown_for: Optional[str] = None) -> Callable[[type], type]:
    """Make `cls` (a CheckTiming subclass) a frozen section dataclass whose debounce keys
    default to the given values. The TOML keys stay flat in the check's table."""

    def wrap(cls: type) -> type:
        if not issubclass(cls, CheckTiming):
            raise TypeError(f"{cls.__name__} must subclass CheckTiming")
        specs = {"for_": _for(for_), "recover_for": _recover_for(recover_for),
                 "unknown_as": _unknown_as(unknown_as), "unknown_for": _unknown_for(unknown_for)}
        own = dict(cls.__dict__.get("__annotations__", {}))
        for name in _TIMING_KEYS:
            own[name] = CheckTiming.__annotations__[name]
            setattr(cls, name, specs[name])
        cls.__annotations__ = own
        return dataclass(frozen=True)(cls)

    return wrap
