"""The persistent outbox: every notification a target must get, until it got it.

Enqueueing IS persisting: a notification is on disk before the first delivery attempt, and
it leaves the outbox only after the channel confirmed it, so a SIGKILL at any point loses
nothing. Each write replaces the whole file atomically (temp file, fsync, rename, fsync of
the directory): a reader sees the old or the new outbox, never half of one. A file that is
corrupt anyway (disk trouble, an editor) is moved aside with a log line and the daemon
starts with an empty outbox instead of crashing.

Per target, the ids of recently delivered notifications are kept too (until they expire),
so the same notification enqueued again, even after a restart, is sent once.

This module must stay cheap to import: no apprise here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from watchdog.alerts.notification import Notification
from watchdog.statefile import temp_prefix as _temp_prefix
from watchdog.statefile import unlink_quietly as _unlink_quietly
from watchdog.statefile import write_atomic

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Notifications dropped undelivered are remembered this long (the daily report lists them).
DROPPED_KEEP = 2 * 86400.0


class _TargetBox:
    """One target's share: pending notifications in order, and recently delivered ids."""

    __slots__ = ("pending", "queued", "delivered")

    def __init__(self) -> None:
        self.pending: Dict[str, Notification] = {}  # id -> notification, insertion ordered
        self.queued: Dict[str, float] = {}  # id -> when it entered the outbox (our clock)
        self.delivered: Dict[str, float] = {}  # id -> when it was delivered


class Outbox:
    """Pending notifications per target, persisted atomically in one JSON file.

    Thread-safe: the daemon loop adds while delivery threads remove. A failure to write
    the file is logged and kept in `last_error`; the in-memory state stays authoritative so
    delivery goes on (an alerting path must not stop because a disk is full).
    """

    def __init__(self, path: str, clock=time.time):
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._boxes: Dict[str, _TargetBox] = {}
        # [{"target", "title", "kind", "created", "dropped"}]: expired undelivered, recent
        self._dropped: List[Dict[str, Any]] = []
        self.last_error: Optional[str] = None

    # ------------------------------------------------------------ reading

    def load(self) -> None:
        """Read the outbox file; a missing file is an empty outbox, a corrupt one is moved aside."""
        with self._lock:
            self._boxes = {}
            self._dropped = []
            self._remove_stale_temp_files()
            try:
                with open(self.path, "rb") as handle:
                    raw = handle.read()
            except FileNotFoundError:
                return
            except OSError as exc:
                self.last_error = f"cannot read outbox: {exc.strerror or exc}"
                log.error("alerts: %s; starting with an empty outbox", self.last_error)
                return
            try:
                data = json.loads(raw.decode("utf-8"))
                if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
                    raise ValueError("not an outbox document")
            except (UnicodeDecodeError, ValueError) as exc:
                self._move_aside(f"unreadable ({exc.__class__.__name__})")
                return
            skipped = 0
            for target, entry in data["targets"].items():
                box = _TargetBox()
                if not isinstance(entry, dict):
                    skipped += 1
                    continue
                for item in entry.get("pending") or ():
                    try:
                        notification = Notification.from_json(item["notification"])
                        queued = float(item["queued"])
                    except (TypeError, KeyError, AttributeError, ValueError):
                        skipped += 1
                        continue
                    box.pending[notification.id] = notification
                    box.queued[notification.id] = queued
                delivered = entry.get("delivered") or {}
                if isinstance(delivered, dict):
                    for nid, when in delivered.items():
                        if isinstance(when, (int, float)):
                            box.delivered[str(nid)] = float(when)
                if box.pending or box.delivered:
                    self._boxes[str(target)] = box
            dropped = data.get("dropped")
            for item in dropped if isinstance(dropped, list) else ():
                if (
                    isinstance(item, dict)
                    and all(isinstance(item.get(k), str) for k in ("target", "title", "kind"))
                    and all(isinstance(item.get(k), (int, float)) for k in ("created", "dropped"))
                ):
                    self._dropped.append(dict(item))
            if skipped:
                log.warning("alerts: outbox %s: skipped %d unreadable entries", self.path, skipped)

    def _remove_stale_temp_files(self) -> None:
        """Temp files of writes cut short by a crash: never renamed, so never valid state."""
        directory = os.path.dirname(os.path.abspath(self.path))
        prefix = _temp_prefix(self.path)
        try:
            names = os.listdir(directory)
        except OSError:
            return
        for name in names:
            if name.startswith(prefix):
                _unlink_quietly(os.path.join(directory, name))

    def _move_aside(self, why: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._clock()))
        aside = f"{self.path}.corrupt-{stamp}"
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            log.error(
                "alerts: outbox %s is %s and cannot be moved aside (%s); starting empty",
                self.path,
                why,
                exc.strerror or exc,
            )
            return
        log.error(
            "alerts: outbox %s is %s; moved it to %s and started with an empty outbox",
            self.path,
            why,
            aside,
        )

    # ------------------------------------------------------------ queries

    def pending(self, target: str) -> List[Notification]:
        """What `target` still has to get, in the order it was queued."""
        with self._lock:
            box = self._boxes.get(target)
            return list(box.pending.values()) if box is not None else []

    def targets(self) -> List[str]:
        """Targets with something pending (configured or not)."""
        with self._lock:
            return [name for name, box in self._boxes.items() if box.pending]

    def count(self, target: Optional[str] = None) -> int:
        with self._lock:
            if target is not None:
                box = self._boxes.get(target)
                return len(box.pending) if box else 0
            return sum(len(box.pending) for box in self._boxes.values())

    def oldest_queued(self) -> Optional[float]:
        """When the oldest pending notification entered the outbox (None: nothing pending)."""
        with self._lock:
            times = [when for box in self._boxes.values() for when in box.queued.values()]
            return min(times) if times else None

    def dropped_since(self, since: float) -> List[Dict[str, Any]]:
        """Notifications that expired undelivered at or after `since`, oldest first."""
        with self._lock:
            return [dict(d) for d in self._dropped if d["dropped"] >= since]

    def was_delivered(self, target: str, notification_id: str) -> bool:
        with self._lock:
            box = self._boxes.get(target)
            return bool(box and notification_id in box.delivered)

    # ------------------------------------------------------------ changes

    def add(self, target: str, notification: Notification) -> bool:
        """Queue `notification` for `target` and persist; False when that id is known already."""
        return self.add_many([(target, notification)])[0]

    def add_many(self, items: Iterable[Tuple[str, Notification]]) -> List[bool]:
        """Queue several and persist once (one fsync per daemon cycle, not per message)."""
        added: List[bool] = []
        with self._lock:
            now = self._clock()
            for target, notification in items:
                box = self._boxes.setdefault(target, _TargetBox())
                known = notification.id in box.pending or notification.id in box.delivered
                if not known:
                    box.pending[notification.id] = notification
                    box.queued[notification.id] = now
                added.append(not known)
            if any(added):
                self._save()
        return added

    def remove(self, target: str, ids: Iterable[str]) -> int:
        """Mark `ids` delivered to `target` (remembered for dedup) and persist; how many left."""
        now = self._clock()
        with self._lock:
            box = self._boxes.get(target)
            if box is None:
                return 0
            removed = 0
            for nid in ids:
                box.queued.pop(nid, None)
                if box.pending.pop(nid, None) is not None:
                    removed += 1
                box.delivered[nid] = now
            self._save()
            return removed

    def expire(
        self, now: float, max_age: float, target: Optional[str] = None
    ) -> List[Tuple[str, Notification]]:
        """Drop what has waited in the outbox longer than `max_age` and return it.

        Delivered-id records older than `max_age` are forgotten at the same time: the
        dedup window is the expiry window.
        """
        expired: List[Tuple[str, Notification]] = []
        changed = False
        with self._lock:
            for name in list(self._boxes):
                if target is not None and name != target:
                    continue
                box = self._boxes[name]
                for nid, notification in list(box.pending.items()):
                    if now - box.queued.get(nid, notification.created) > max_age:
                        del box.pending[nid]
                        box.queued.pop(nid, None)
                        expired.append((name, notification))
                for nid, when in list(box.delivered.items()):
                    if now - when > max_age:
                        del box.delivered[nid]
                        changed = True
                if not box.pending and not box.delivered:
                    del self._boxes[name]
                    changed = True
            for name, notification in expired:
                self._dropped.append(
                    {"target": name, "title": notification.title, "kind": notification.kind,
                     "created": notification.created, "dropped": now}
                )
            kept = [d for d in self._dropped if now - d["dropped"] <= DROPPED_KEEP]
            changed = changed or len(kept) != len(self._dropped)
            self._dropped = kept
            if expired or changed:
                self._save()
        return expired

    # ------------------------------------------------------------ persistence

    def to_json(self) -> Dict[str, Any]:
        with self._lock:
            return {
                "version": FORMAT_VERSION,
                "targets": {
                    name: {
                        "pending": [
                            {"queued": box.queued.get(n.id, n.created), "notification": n.to_json()}
                            for n in self.pending(name)
                        ],
                        "delivered": dict(box.delivered),
                    }
                    for name, box in self._boxes.items()
                },
                "dropped": list(self._dropped),
            }

    def _save(self) -> None:
        """Replace the file atomically; log (do not raise) when the disk refuses."""
        data = json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode("utf-8")
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            error = f"cannot write outbox {self.path}: {exc.strerror or exc}"
            if error != self.last_error:
                log.error("alerts: %s; pending notifications are kept in memory only", error)
            self.last_error = error
            return
        if self.last_error is not None:
            log.info("alerts: outbox %s written again", self.path)
            self.last_error = None


def notifications_by_target(
    items: Sequence[Tuple[str, Notification]],
) -> Dict[str, List[Notification]]:
    """Group `(target, notification)` pairs, as `expire()` returns them."""
    grouped: Dict[str, List[Notification]] = {}
    for target, notification in items:
        grouped.setdefault(target, []).append(notification)
    return grouped
