"""`drbd-overview` (the vendor guide's tool, gone from drbd-utils 9.6)."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from watchdog.probes.drbd.lines import (
    _Builder,
    _is_blank,
    _lines,
    _quote,
    _safe,
    _split_cs,
    _to_int,
)
from watchdog.probes.drbd.model import _CS_84, DISK_STATES, ROLES, UNCONFIGURED, DrbdParse
from watchdog.probes.drbd.proc import _PROGRESS_RE

# ---------------------------------------------------------------- drbd-overview

_OVERVIEW_ROW_RE = re.compile(r"^\s*([0-9]{1,6}):(\S+)\s+(.*)$")
_OVERVIEW_PAIR_RE = re.compile(r"^(\w+)/(\w+)$")
_OVERVIEW_NOTES = ("NOTE: drbd-overview", "Please consider using")


@_safe
def parse_drbd_overview(text: str) -> DrbdParse:
    """`drbd-overview` rows (`0:r0/0  Connected Primary/Secondary UpToDate/UpToDate ...`).

    Its stderr NOTE lines are skipped if a capture mixed them in; rows wrapped by a
    narrow display (the 8.4 guide) are joined with their indented continuation.
    """
    lines = [ln for ln in _lines(text) if not ln.startswith(_OVERVIEW_NOTES)]
    bad: Optional[str] = None
    builders: Dict[str, _Builder] = {}
    last_peer_volume: Optional[Dict[str, Any]] = None
    not_loaded = False
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if _is_blank(line):
            continue
        if line.strip() == "drbd not loaded":
            not_loaded = True
            continue
        m = _PROGRESS_RE.match(line)
        if m:
            if last_peer_volume is None:
                bad = bad or _quote(line)
            else:
                last_peer_volume["sync_percent"] = float(m.group(1))
            continue
        m = _OVERVIEW_ROW_RE.match(line)
        if not m:
            bad = bad or _quote(line)
            last_peer_volume = None
            continue
        tokens = m.group(3).split()
        if tokens and tokens[0].startswith("^^"):  # stacked-device column
            tokens = tokens[1:]
        if (
            len(tokens) == 2
            and i < len(lines)
            and lines[i][:1].isspace()
            and lines[i].split()
            and _OVERVIEW_PAIR_RE.match(lines[i].split()[0])
        ):
            tokens += lines[i].split()  # row wrapped before the disk column
            i += 1
        ok, last_peer_volume = _overview_row(builders, int(m.group(1)), m.group(2), tokens)
        if not ok:
            bad = bad or _quote(line)
    resources = tuple(b.build() for b in builders.values())
    return DrbdParse(resources, bad, not_loaded=not_loaded)


def _overview_row(
    builders: Dict[str, _Builder], minor: int, label: str, tokens: List[str]
) -> Tuple[bool, Optional[Dict[str, Any]]]:
    """Add one row: (readable, its peer-volume record for a following progress line)."""
    name, _, vol_text = label.partition("/")
    volume = _to_int(vol_text) if vol_text else None
    if not name or (vol_text and volume is None) or not tokens:
        return False, None
    cs = tokens[0]
    if cs == UNCONFIGURED:
        if any(t != "." for t in tokens[1:]):
            return False, None
        b = builders.setdefault(name, _Builder(name))
        b.unconfigured = True
        b.volumes.append({"volume": volume, "minor": minor})
        return True, None
    if cs not in _CS_84 or len(tokens) < 3:
        return False, None
    roles = _OVERVIEW_PAIR_RE.match(tokens[1])
    disks = _OVERVIEW_PAIR_RE.match(tokens[2])
    if not roles or not disks:
        return False, None
    if roles.group(1) not in ROLES or roles.group(2) not in ROLES:
        return False, None
    if disks.group(1) not in DISK_STATES or disks.group(2) not in DISK_STATES:
        return False, None
    b = builders.setdefault(name, _Builder(name))
    if b.role is not None and b.role != roles.group(1):
        return False, None
    b.role = roles.group(1)
    b.volumes.append({"volume": volume, "minor": minor, "disk": disks.group(1)})
    cstate, replication = _split_cs(cs)
    conn = b.connection("peer")
    if conn["cstate"] is None or conn["cstate"] == "Connected":
        conn["cstate"] = cstate  # a volume that is not connected marks the resource
    if conn["peer_role"] is not None and conn["peer_role"] != roles.group(2):
        return False, None  # two volumes disagree on the peer's role
    conn["peer_role"] = roles.group(2)
    peer_volume = {"volume": volume, "replication": replication, "peer_disk": disks.group(2)}
    conn["volumes"].append(peer_volume)
    return True, peer_volume
