"""The last alerts delivered, for `ha-watchdog status` (a bounded file in the state dir).

Why a file of its own: the outbox forgets what it delivered (it keeps ids for dedup only),
and a person asking "what did it send?" wants the words, the target and the times. The
list is bounded (KEEP entries) so it never grows; it holds no URL, only target names.
A write that fails is logged once and never touches delivery.

Cheap to import: no apprise here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any, Dict, List, Optional

from watchdog.statefile import write_atomic

log = logging.getLogger(__name__)

HISTORY_FILE = "sent.json"
# Readable by the state directory's group (`ha-watchdog status` as a monitoring user): it
# holds titles, headlines and target names, no URL.
PUBLIC_MODE = 0o640
KEEP = 50
FORMAT_VERSION = 1


class SentHistory:
    """Appends delivered messages to `<state_dir>/sent.json`, newest last, at most `keep`."""

    def __init__(self, state_dir: str, keep: int = KEEP):
        self.path = os.path.join(state_dir, HISTORY_FILE)
        self.keep = keep
        self._lock = threading.Lock()
        self._entries: Optional[List[Dict[str, Any]]] = None
        self._error: Optional[str] = None

    def _load(self) -> List[Dict[str, Any]]:
        if self._entries is None:
            self._entries = read_history(self.path)[-self.keep:]
        return self._entries

    def record(self, entry: Dict[str, Any]) -> None:
        """Remember one delivered message; never raises."""
        try:
            with self._lock:
                entries = self._load()
                entries.append(dict(entry))
                del entries[: max(0, len(entries) - self.keep)]
                data = {"version": FORMAT_VERSION, "sent": entries}
                write_atomic(self.path, json.dumps(data, separators=(",", ":")).encode("utf-8"),
                             PUBLIC_MODE)
                self._error = None
        except Exception as exc:  # noqa: BLE001 - history must never cost an alert
            error = f"{type(exc).__name__}: {exc}"
            if error != self._error:
                log.warning("alerts: could not record the sent history in %s: %s", self.path, error)
            self._error = error


def read_history(path: str) -> List[Dict[str, Any]]:
    """The entries of a history file; [] when absent or unreadable as JSON (read-only:
    a damaged file is left where it is, the next record() replaces it)."""
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read(4 * 1024 * 1024).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    entries = data.get("sent") if isinstance(data, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
