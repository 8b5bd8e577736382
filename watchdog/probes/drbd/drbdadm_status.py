"""`drbdadm status` / `drbdsetup status` text (DRBD 9, and 8.4 kernels with drbd-utils 9;
wrapped at 80 columns when not on a terminal)."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from watchdog.probes.drbd.lines import (
    _Builder,
    _is_blank,
    _lines,
    _quote,
    _safe,
    _to_float,
    _to_int,
    _yes_no,
)
from watchdog.probes.drbd.model import (
    CONNECTION_STATES,
    DISK_STATES,
    REPLICATION_STATES,
    ROLES,
    DrbdParse,
)

# ---------------------------------------------------------------- drbdadm status (text)

_NO_RESOURCES = "# No currently configured DRBD found."
_KV_RE = re.compile(r"^([a-z][a-z0-9_-]*):(\S+)$")
_NAME_RE = re.compile(r"^[^\s:]+$")


@_safe
def parse_drbdadm_status(text: str) -> DrbdParse:
    """`drbdadm status` / `drbdsetup status` text, including 80-column continuation lines.

    Levels by indentation: resource 0, device and connection 2, peer device 4; a line
    deeper than the level it can belong to continues the previous object.
    """
    bad: Optional[str] = None
    builders: List[_Builder] = []
    # Records: (kind, indent, first tokens) gathered first, so wrapped lines join.
    objects: List[Tuple[str, List[str], str]] = []  # (kind, tokens, first line)
    last_kind: Optional[str] = None
    for line in _lines(text):
        if _is_blank(line):
            continue
        stripped = line.strip()
        if stripped.startswith("#"):
            if stripped != _NO_RESOURCES:
                bad = bad or _quote(line)
            continue
        indent = len(line) - len(line.lstrip(" "))
        if line[indent:indent + 1] == "\t":
            bad = bad or _quote(line)
            continue
        tokens = stripped.split()
        kind = _status_kind(indent, tokens, last_kind)
        if kind == "cont":
            objects[-1][1].extend(tokens)
            continue
        if kind is None:
            bad = bad or _quote(line)
            # Skip what hangs below an unreadable object rather than misfile it.
            last_kind = "bad"
            continue
        objects.append((kind, tokens, line))
        last_kind = kind

    current: Optional[_Builder] = None
    conn: Optional[Dict[str, Any]] = None
    for kind, tokens, line in objects:
        ok = True
        if kind == "resource":
            current = _Builder(tokens[0])
            builders.append(current)
            conn = None
            ok = _status_resource(current, tokens[1:])
        elif kind == "device" and current is not None:
            ok = _status_device(current, tokens)
        elif kind == "connection" and current is not None:
            conn = current.new_connection(tokens[0])
            ok = conn is not None and _status_connection(conn, tokens[1:])
        elif kind == "peer-device" and conn is not None:
            ok = _status_peer_device(conn, tokens)
        else:
            ok = False
        if not ok:
            bad = bad or _quote(line)
    return DrbdParse(tuple(b.build() for b in builders), bad)


def _status_kind(indent: int, tokens: List[str], last: Optional[str]) -> Optional[str]:
    """Classify a line as resource / device / connection / peer-device / continuation."""
    if indent == 0:
        if len(tokens) >= 2 and _NAME_RE.match(tokens[0]) and tokens[1].startswith("role:"):
            return "resource"
        return None
    if last is None or last == "bad":
        return None
    levels = {"resource": 0, "device": 2, "connection": 2, "peer-device": 4}
    level = levels[last]
    first = tokens[0]
    if indent == 2:
        if first.startswith(("disk:", "volume:")):
            return "device"
        if _NAME_RE.match(first) and len(tokens) >= 2 and _KV_RE.match(tokens[1]):
            return "connection"
        return None
    if indent == 4 and last in ("connection", "peer-device"):
        return "peer-device"
    if indent > level + 1 and all(_KV_RE.match(t) for t in tokens):
        return "cont"
    return None


def _kv(tokens: Sequence[str]) -> Optional[Dict[str, str]]:
    """`key:value` tokens as a dict; None when one is not `key:value` or a key repeats
    (`disk:Failed disk:UpToDate` must not read as UpToDate because it came last)."""
    out: Dict[str, str] = {}
    for tok in tokens:
        m = _KV_RE.match(tok)
        if not m or m.group(1) in out:
            return None
        out[m.group(1)] = m.group(2)
    return out


def _status_resource(b: _Builder, tokens: List[str]) -> bool:
    kv = _kv(tokens)
    if kv is None or kv.get("role") not in ROLES:
        return False
    b.role = kv["role"]
    if kv.get("suspended", "no") != "no":
        b.suspended = kv["suspended"]
    return True


def _status_device(b: _Builder, tokens: List[str]) -> bool:
    kv = _kv(tokens)
    if kv is None or kv.get("disk") not in DISK_STATES:
        return False
    volume = _to_int(kv["volume"]) if "volume" in kv else 0
    minor = _to_int(kv["minor"]) if "minor" in kv else None
    if volume is None or ("minor" in kv and minor is None):
        return False
    quorum = _yes_no(kv["quorum"]) if "quorum" in kv else None
    client = _yes_no(kv["client"]) if "client" in kv else None
    b.volumes.append(
        {"volume": volume, "minor": minor, "disk": kv["disk"], "quorum": quorum, "client": client}
    )
    return True


def _status_connection(conn: Dict[str, Any], tokens: List[str]) -> bool:
    kv = _kv(tokens)
    if kv is None:
        return False
    # drbdsetup prints connection: only when not Connected (or with --verbose).
    cstate = kv.get("connection", "Connected")
    role = kv.get("role")
    if cstate not in CONNECTION_STATES or (role is not None and role not in ROLES):
        return False
    conn["cstate"] = cstate
    conn["peer_role"] = role or ("Unknown" if cstate != "Connected" else None)
    return True


def _status_peer_device(conn: Dict[str, Any], tokens: List[str]) -> bool:
    kv = _kv(tokens)
    if kv is None or kv.get("peer-disk") not in DISK_STATES:
        return False
    replication = kv.get("replication")
    if replication is None and conn["cstate"] == "Connected":
        replication = "Established"  # current utils omit it in the normal state
    if replication is not None and replication not in REPLICATION_STATES:
        return False
    volume = _to_int(kv["volume"]) if "volume" in kv else 0
    if volume is None:
        return False
    done = _to_float(kv["done"]) if "done" in kv else None
    eta = _to_float(kv["eta"]) if "eta" in kv else None
    if ("done" in kv and done is None) or ("eta" in kv and eta is None):
        return False
    conn["volumes"].append(
        {
            "volume": volume,
            "replication": replication,
            "peer_disk": kv["peer-disk"],
            "sync_percent": done,
            "eta_seconds": eta,
            "resync_suspended": kv.get("resync-suspended"),
            "peer_client": _yes_no(kv["peer-client"]) if "peer-client" in kv else None,
        }
    )
    return True
