"""`drbdsetup status --json` (DRBD 9 only): strict JSON, duplicate keys and wrong types
reported with the line they are on."""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Tuple

from watchdog.probes.drbd.lines import _ANSI_RE, _Builder, _quote, _safe
from watchdog.probes.drbd.model import (
    _MAX_QUOTE,
    CONNECTION_STATES,
    DISK_STATES,
    REPLICATION_STATES,
    ROLES,
    DrbdParse,
    DrbdResource,
)

# ---------------------------------------------------------------- drbdsetup status --json


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    """json.loads object hook: a key given twice in one object is unreadable output."""
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _JsonShapeError(Exception):
    def __init__(self, key: str, value: Any) -> None:
        super().__init__(key)
        self.key = key
        self.value = value


@_safe
def parse_drbdsetup_json(text: str) -> DrbdParse:
    """`drbdsetup status --json`: a JSON array of resource objects."""
    if not isinstance(text, str):
        return DrbdParse(bad_line="(not text)")
    try:
        data = json.loads(_ANSI_RE.sub("", text), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        return DrbdParse(bad_line=f"(key {exc.key!r} given twice in one object)"[:_MAX_QUOTE])
    except (ValueError, RecursionError) as exc:
        lineno = getattr(exc, "lineno", None)
        lines = text.split("\n")
        if not text.strip():
            return DrbdParse(bad_line="(empty output)")
        if isinstance(lineno, int) and 1 <= lineno <= len(lines):
            return DrbdParse(bad_line=_quote(lines[lineno - 1]))
        return DrbdParse(bad_line=_quote(lines[0]))
    if not isinstance(data, list):
        return DrbdParse(bad_line=_quote(text.strip().split("\n")[0]))
    resources = []
    for item in data:
        try:
            resources.append(_json_resource(item))
        except _JsonShapeError as exc:
            return DrbdParse(tuple(resources), _json_bad_line(text, exc.key, exc.value))
    return DrbdParse(tuple(resources))


def _json_bad_line(text: str, key: str, value: Any) -> str:
    """Quote the output line that holds the offending key, else key and value."""
    needle = f'"{key}"'
    for line in text.split("\n"):
        if needle in line and len(line.strip()) <= _MAX_QUOTE:
            return line.strip()
    try:
        shown = json.dumps(value)
    except (ValueError, TypeError, OverflowError):
        shown = repr(value)
    return _quote(f"{needle}: {shown[:80]}")


def _get(obj: Dict[str, Any], key: str, kind: Any, required: bool = False) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise _JsonShapeError(key, value)
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _JsonShapeError(key, value)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _JsonShapeError(key, value)
        try:
            value = float(value)
        except OverflowError:
            raise _JsonShapeError(key, value) from None
        if not math.isfinite(value) or value < 0:
            raise _JsonShapeError(key, value)
    if kind not in (int, float) and not isinstance(value, kind):
        raise _JsonShapeError(key, value)
    return value


def _word(obj: Dict[str, Any], key: str, words: frozenset, required: bool = True) -> Any:
    value = _get(obj, key, str, required)
    if value is not None and value not in words:
        raise _JsonShapeError(key, value)
    return value


def _json_resource(item: Any) -> DrbdResource:
    if not isinstance(item, dict):
        raise _JsonShapeError("resource", item)
    name = _get(item, "name", str, required=True)
    if not name:
        raise _JsonShapeError("name", name)
    b = _Builder(name)
    b.role = _word(item, "role", ROLES)
    suspended = item.get("suspended")
    if isinstance(suspended, bool):
        reasons = [
            key[len("suspended-"):]
            for key in ("suspended-user", "suspended-no-data", "suspended-fencing",
                        "suspended-quorum")
            if item.get(key) is True
        ]
        if suspended or reasons:
            b.suspended = ",".join(reasons) or "yes"
    elif suspended is not None:
        raise _JsonShapeError("suspended", suspended)
    for dev in _get(item, "devices", list) or []:
        if not isinstance(dev, dict):
            raise _JsonShapeError("devices", dev)
        b.volumes.append(
            {
                "volume": _get(dev, "volume", int),
                "minor": _get(dev, "minor", int),
                "disk": _word(dev, "disk-state", DISK_STATES),
                "quorum": _get(dev, "quorum", bool),
                "client": _get(dev, "client", bool),
            }
        )
    for c in _get(item, "connections", list) or []:
        if not isinstance(c, dict):
            raise _JsonShapeError("connections", c)
        node_id = _get(c, "peer-node-id", int)
        peer = _get(c, "name", str) or ("peer" if node_id is None else f"node {node_id}")
        conn = b.new_connection(peer)
        if conn is None:
            raise _JsonShapeError("name", peer)
        conn["cstate"] = _word(c, "connection-state", CONNECTION_STATES)
        conn["peer_role"] = _word(c, "peer-role", ROLES, required=False)
        for pd in _get(c, "peer_devices", list) or []:
            if not isinstance(pd, dict):
                raise _JsonShapeError("peer_devices", pd)
            replication = _word(pd, "replication-state", REPLICATION_STATES)
            percent = _get(pd, "percent-resync-done", float)
            if percent is None and replication not in ("Established", "Off"):
                percent = _get(pd, "percent-in-sync", float)
            eta = _get(pd, "estimated-seconds-to-finish", float)
            conn["volumes"].append(
                {
                    "volume": _get(pd, "volume", int),
                    "replication": replication,
                    "peer_disk": _word(pd, "peer-disk-state", DISK_STATES),
                    "sync_percent": percent,
                    "eta_seconds": eta,
                    "resync_suspended": _get(pd, "resync-suspended", str),
                    "peer_client": _get(pd, "peer-client", bool),
                }
            )
    return b.build()
