"""engine.json as the daemon keeps it: loaded once, written every cycle, its own trouble told.

Why apart from the loop (watchdog.daemon): what happens when the state file is damaged or
cannot be written is a rule of its own. A damaged file is salvaged and the loss becomes a
notice (problems paged again are never paged again silently); a write that keeps failing is
logged and counted from the first cycle and notified after STATE_WRITE_NOTIFY_AFTER cycles in
a row, its end too. Nothing here raises: the cycle goes on with the state in memory.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, List, Optional, Tuple

from watchdog.statefile import load_json, write_json

log = logging.getLogger("watchdog.daemon")

ENGINE_STATE = "engine.json"
# Consecutive cycles whose state write failed before a notification says so (one failure
# can be a blip; the failure is logged and counted in the metrics from the first one).
STATE_WRITE_NOTIFY_AFTER = 3


class EngineFile:
    """The engine state file at `path`; `notices` holds (subject, lines) about the watchdog
    itself, to be sent with the next cycle's notifications."""

    def __init__(self, path: str, wall: Callable[[], float]):
        self.path = path
        self.wall = wall
        self.notices: List[Tuple[str, List[str]]] = []
        self.failures = 0  # failed writes since start (metrics)
        self._error: Optional[str] = None
        self._failing = 0  # consecutive failed writes
        self._notified: Optional[float] = None  # when the PROBLEM about it went out

    def load(self, state_cls: Any) -> Any:
        """The engine state (None: none yet, or unreadable); what could not be recovered is
        logged and queued as a notice."""
        loaded = load_json(self.path, self.wall)
        lost: List[str] = []
        state = state_cls.from_json(loaded.data, lost) if loaded.data is not None else None
        if loaded.problem is not None:
            lost = ["the whole state"]
            what = [f"{loaded.problem}."]
        elif lost:
            what = [f"State file {self.path} was damaged."]
            log.error("state file %s was damaged; lost: %s", self.path, "; ".join(lost))
        else:
            return state
        self.notices.append((
            "its alert state was damaged",
            what + [
                f"Lost: {'; '.join(lost)}.",
                "Problems that are still present are reported again as new PROBLEMs (they "
                "may have been reported before the damage); recoveries of problems reported "
                "before it may not be sent.",
            ],
        ))
        return state

    def save(self, data: Any, now: float, node: str, state_dir: str) -> List[Any]:
        """Write `data`; returns the notifications about a failing write (its start once it
        persisted, its end). Never raises."""
        from watchdog.alerts import message

        try:
            write_json(self.path, data)
        except Exception as exc:  # noqa: BLE001 - OSError mostly; the cycle goes on
            error = f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}"
            self.failures += 1
            self._failing += 1
            if error != self._error:
                log.error("%s; alerts are still sent, the state is kept in memory", error)
            self._error = error
            if self._failing >= STATE_WRITE_NOTIFY_AFTER and self._notified is None:
                self._notified = now
                return [message.self_problem(
                    node, "it cannot save its state", [
                        f"Error: {error} ({self._failing} cycles in a row).",
                        "Checks run and alerts are still sent; after a restart it would not "
                        "remember the problems it already reported, and could page again.",
                        f"First look: df -h {state_dir}; ls -la {state_dir}",
                    ], now, now)]
            return []
        out = []
        if self._error is not None:
            log.info("state file %s written again", self.path)
            if self._notified is not None:
                out.append(message.self_recovery(
                    node, "it cannot save its state",
                    [f"State saved again to {self.path}.",
                     f"Failing since {message.format_time(self._notified)}: {self._error}."],
                    self._notified, now))
        self._error, self._failing, self._notified = None, 0, None
        return out

    def save_at_exit(self, data: Any) -> None:
        """The last write when stopping: a failure is logged, nothing more."""
        try:
            write_json(self.path, data)
        except Exception as exc:  # noqa: BLE001 - stopping must go on
            log.error("could not save state: %s", getattr(exc, "strerror", None) or exc)
