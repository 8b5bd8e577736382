"""Maintenance mode: a request that silences paging for a bounded time (pure).

Why bounded: a maintenance mode that someone forgets to turn off is a watchdog that stays
silent through the next real outage. So a request always has an end, capped by
`[maintenance] max_duration` when it is written AND again when it is read (an edited file or
a lowered cap cannot make it longer). While it is active the checks still run and incidents
are still tracked; the engine (watchdog.core.engine) holds back the pages and reports what
happened when it ends.

A request is a small JSON document in the daemon's state directory (written by
`ha-watchdog maintenance on/off`, read by the daemon every cycle); this module only turns
that document into a typed value and back, with `now` as a parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Dict, Optional

from watchdog.units import format_duration

FORMAT_VERSION = 1
MAX_TEXT = 300  # reason / by: enough for a sentence, not a log dump


@dataclass(frozen=True)
class Maintenance:
    """One maintenance request as the daemon applies it.

    `until` is the effective end (already capped); `requested_until` what was asked.
    `ended`/`ended_by` are set when it was turned off before its end.
    """

    id: str
    reason: str
    by: str
    started: float
    until: float
    requested_until: float
    ended: Optional[float] = None
    ended_by: Optional[str] = None

    def active(self, now: float) -> bool:
        return self.ended is None and self.started <= now < self.until

    def end_time(self) -> float:
        """When it stopped (or will stop) silencing."""
        return min(self.until, self.ended) if self.ended is not None else self.until

    def how_it_ended(self, now: float) -> str:
        """`turned off by bob` / `expired` / `not started yet`, for messages."""
        if self.ended is not None and self.ended < self.until:
            return f"turned off by {self.ended_by or 'someone'}"
        if now >= self.until:
            capped = self.until < self.requested_until
            return "expired (capped by [maintenance] max_duration)" if capped else "expired"
        return "not started yet"

    def to_json(self) -> Dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "id": self.id,
            "reason": self.reason,
            "by": self.by,
            "started": self.started,
            "until": self.requested_until,
            "ended": self.ended,
            "ended_by": self.ended_by,
        }


def _number(data: Dict[str, Any], key: str, required: bool = True) -> Optional[float]:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{key!r} must be a number (epoch seconds), got {value!r}")
    return float(value)


def _text(data: Dict[str, Any], key: str, required: bool = True) -> Optional[str]:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key!r} must be a non-empty string, got {value!r}")
    return clean_text(value)


def clean_text(text: str) -> str:
    """One line, printable, bounded: it ends up in alert titles' neighbourhood and STATUS=."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= MAX_TEXT else flat[: MAX_TEXT - 3] + "..."


def from_json(data: Any, max_duration: float) -> Maintenance:
    """A request document as a Maintenance, its end capped at started + max_duration.

    ValueError (with the reason) for anything that is not a valid request: the caller
    reports it and applies no maintenance, so a damaged file never silences pages.
    """
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"unknown version {data.get('version')!r} (expected {FORMAT_VERSION})")
    started = _number(data, "started")
    requested = _number(data, "until")
    assert started is not None and requested is not None
    if requested <= started:
        raise ValueError("'until' is not after 'started'")
    ended = _number(data, "ended", required=False)
    return Maintenance(
        id=_text(data, "id") or "",
        reason=_text(data, "reason") or "",
        by=_text(data, "by") or "",
        started=started,
        until=min(requested, started + max(0.0, max_duration)),
        requested_until=requested,
        ended=ended,
        ended_by=_text(data, "ended_by", required=False),
    )


def request(
    id: str, reason: str, by: str, now: float, duration: float, max_duration: float
) -> Maintenance:
    """A new request starting now; ValueError when the duration is not in (0, max]."""
    if not (isinstance(duration, (int, float)) and math.isfinite(duration)) or duration <= 0:
        raise ValueError("the duration must be more than 0s")
    if duration > max_duration:
        raise ValueError(
            f"the duration is longer than [maintenance] max_duration ({format_duration(max_duration)})"
        )
    return Maintenance(
        id=id,
        reason=clean_text(reason),
        by=clean_text(by),
        started=now,
        until=now + duration,
        requested_until=now + duration,
    )


def extend(current: Maintenance, reason: str, by: str, now: float, duration: float,
           max_duration: float) -> Maintenance:
    """`maintenance on` while one is active: same id (no second start message), new end.

    The cap counts from the original start, so repeated extensions cannot make it endless.
    """
    fresh = request(current.id, reason, by, now, duration, max_duration)
    limit = current.started + max_duration
    if fresh.until > limit:
        raise ValueError(
            "maintenance started at an earlier request and may last at most "
            f"[maintenance] max_duration ({format_duration(max_duration)}) from then; "
            "turn it off and on again for a new period"
        )
    return replace(fresh, started=current.started)


def turned_off(current: Maintenance, by: str, now: float) -> Maintenance:
    return replace(current, ended=now, ended_by=clean_text(by))
