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
import math
import os
import re
import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from watchdog.alerts.notification import Notification
from watchdog.statefile import STATE_LIMIT, Unreadable, parse_json, read_bounded, write_atomic
from watchdog.statefile import temp_prefix as _temp_prefix
from watchdog.statefile import unlink_quietly as _unlink_quietly

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
        self._damage: List[str] = []  # what load() lost, for take_damage()

    # ------------------------------------------------------------ reading

    def load(self) -> None:
        """Read the outbox file. Missing: an empty outbox. Damaged: moved aside, what can
        be read from it is kept (entry by entry, even from a truncated or garbled file),
        and what was lost is logged and listed by `take_damage()` for a notification. A
        single bad entry is set aside (`<path>.rejected-<time>`) and the others go out."""
        with self._lock:
            self._boxes = {}
            self._dropped = []
            self._remove_stale_temp_files()
            try:
                raw = read_bounded(self.path, STATE_LIMIT, follow_symlinks=False)
            except FileNotFoundError:
                return
            except Unreadable as exc:
                self._move_aside(exc.strerror or str(exc), recovered=0)
                return
            except OSError as exc:
                self.last_error = f"cannot read outbox: {exc.strerror or exc}"
                log.error("alerts: %s; starting with an empty outbox", self.last_error)
                self._damage.append(f"outbox {self.path}: {self.last_error}")
                return
            try:
                data = parse_json(raw)
                if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
                    raise ValueError("not an outbox document")
            except ValueError as exc:
                recovered = self._salvage(raw)
                self._move_aside(f"unreadable ({exc})", recovered)
                if recovered:
                    self._save()
                return
            rejected: List[Dict[str, Any]] = []
            for target, entry in data["targets"].items():
                box = _TargetBox()
                if not isinstance(entry, dict):
                    rejected.append({"target": target, "entry": entry, "why": "not an object"})
                    continue
                pending = entry.get("pending", [])  # [] (all delivered) is no damage
                if not isinstance(pending, list):
                    rejected.append({"target": target, "entry": pending,
                                     "why": "pending is not a list"})
                    pending = ()
                for item in pending:
                    try:
                        notification, queued = _entry(item)
                    except ValueError as exc:
                        rejected.append({"target": target, "entry": item, "why": str(exc)})
                        continue
                    box.pending[notification.id] = notification
                    box.queued[notification.id] = queued
                _delivered_into(box, entry.get("delivered"))
                if box.pending or box.delivered:
                    self._boxes[str(target)] = box
            dropped = data.get("dropped")
            for item in dropped if isinstance(dropped, list) else ():
                if (
                    isinstance(item, dict)
                    and all(isinstance(item.get(k), str) for k in ("target", "title", "kind"))
                    and all(_number(item.get(k)) is not None for k in ("created", "dropped"))
                ):
                    self._dropped.append(dict(item))
            if rejected:
                self._set_aside(rejected)

    def take_damage(self) -> List[str]:
        """What `load()` could not recover (one sentence each), once: for a notification."""
        with self._lock:
            damage, self._damage = self._damage, []
            return damage

    def _salvage(self, raw: bytes) -> int:
        """Pending entries readable in a damaged file, per target; how many were kept.

        The file is written with sorted keys, so each target reads
        `"<name>":{"delivered":{...},"pending":[{...},...]`: find those, then decode entry
        after entry until the first damaged one."""
        text = raw.decode("utf-8", errors="replace")
        decoder = json.JSONDecoder()
        kept = 0
        for match in _TARGET_RE.finditer(text):
            try:
                target = json.loads(match.group(1))
                delivered = json.loads(match.group(2))
            except (ValueError, RecursionError):
                continue
            box = self._boxes.setdefault(str(target), _TargetBox())
            _delivered_into(box, delivered)
            position = match.end()
            while True:
                try:
                    item, position = decoder.raw_decode(text, position)
                    notification, queued = _entry(item)
                except (ValueError, RecursionError):
                    break
                if notification.id not in box.pending:
                    box.pending[notification.id] = notification
                    box.queued[notification.id] = queued
                    kept += 1
                if text[position:position + 1] != ",":
                    break
                position += 1
        return kept

    def _set_aside(self, rejected: List[Dict[str, Any]]) -> None:
        """Keep damaged entries in a file of their own (for a person), log each one."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._clock()))
        aside = f"{self.path}.rejected-{stamp}"
        try:
            data = json.dumps(rejected, default=str, sort_keys=True).encode("utf-8")
            write_atomic(aside, data, make_dirs=False)
        except (OSError, ValueError, RecursionError) as exc:
            aside = f"(not saved: {getattr(exc, 'strerror', None) or exc})"
        for item in rejected:
            log.error("alerts: outbox %s: set aside a damaged entry for target %r (%s): %s",
                      self.path, str(item["target"])[:80], item["why"],
                      _describe(item["entry"]))
        self._damage.append(
            f"outbox {self.path}: {len(rejected)} damaged entr{'y' if len(rejected) == 1 else 'ies'} "
            f"set aside in {aside}; the other alerts are delivered"
        )
        self._save()

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

    def _move_aside(self, why: str, recovered: int) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._clock()))
        aside = f"{self.path}.corrupt-{stamp}"
        try:
            os.replace(self.path, aside)
            where = f"moved it to {aside}"
        except OSError as exc:
            where = f"it cannot be moved aside ({exc.strerror or exc})"
        kept = (f"recovered {recovered} pending alert(s) from it" if recovered
                else "nothing could be recovered from it")
        log.error("alerts: outbox %s is %s; %s; %s", self.path, why, where, kept)
        self._damage.append(
            f"outbox {self.path} was {why}; {where}; {kept}; alerts in it that could not be "
            "read are lost"
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


# One target in a file written by `to_json()` (sorted keys): name, delivered ids, then
# the opening of its pending list.
_TARGET_RE = re.compile(r'("(?:[^"\\]|\\.)*"):\{"delivered":(\{[^{}]*\}),"pending":\[')


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _entry(item: Any) -> Tuple[Notification, float]:
    """One pending entry; ValueError saying what is wrong with it."""
    if not isinstance(item, dict):
        raise ValueError("not an object")
    notification = Notification.from_json(item.get("notification"))
    queued = _number(item.get("queued"))
    if queued is None:
        raise ValueError("'queued' is not a time")
    return notification, queued


def _delivered_into(box: _TargetBox, delivered: Any) -> None:
    for nid, when in delivered.items() if isinstance(delivered, dict) else ():
        if _number(when) is not None:
            box.delivered[str(nid)] = float(when)


def _describe(entry: Any) -> str:
    """A damaged entry in one short line (its title when it has one)."""
    notification = entry.get("notification") if isinstance(entry, dict) else None
    title = notification.get("title") if isinstance(notification, dict) else None
    if isinstance(title, str):
        return f"title {title[:120]!r}"
    try:
        text = json.dumps(entry, default=str)
    except (ValueError, RecursionError):
        text = type(entry).__name__
    return text[:160]


def notifications_by_target(
    items: Sequence[Tuple[str, Notification]],
) -> Dict[str, List[Notification]]:
    """Group `(target, notification)` pairs, as `expire()` returns them."""
    grouped: Dict[str, List[Notification]] = {}
    for target, notification in items:
        grouped.setdefault(target, []).append(notification)
    return grouped
