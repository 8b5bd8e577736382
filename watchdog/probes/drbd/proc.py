"""/proc/drbd (DRBD 8.3/8.4 kernels; DRBD 9 prints only version lines there)."""

from __future__ import annotations

import re
from typing import List, Optional

from watchdog.probes.drbd.lines import _Builder, _hms, _is_blank, _lines, _quote, _safe, _split_cs
from watchdog.probes.drbd.model import _CS_84, DISK_STATES, ROLES, UNCONFIGURED, DrbdParse

# ---------------------------------------------------------------- /proc/drbd

_PROC_DEVICE_RE = re.compile(
    r"^\s*([0-9]{1,6}): cs:(\S+)"
    r"(?: ro:(\w+)/(\w+) ds:(\w+)/(\w+)(?: ([ABC ]) ([-a-z]{4,8}))?)?\s*$"
)
_PROC_STATS_RE = re.compile(r"^\s+ns:[0-9]+ nr:[0-9]+ ")
_PROGRESS_RE = re.compile(
    r"^\s*\[[=>.]*\]\s+(?:sync'ed|verified):\s*([0-9]{1,3}\.[0-9])%\s+\(([0-9]+)/([0-9]+)\)[MK]\s*$"
)
_FINISH_RE = re.compile(
    r"^\s*finish: ([0-9]{1,6}:[0-9][0-9]:[0-9][0-9]) speed: [0-9,]+ \([0-9,]+\)"
)
_PROC_DETAIL_RE = re.compile(
    r"^\s+(?:[0-9]+% sector pos: |resync: used:|act_log: used:|blocked on activity log: )"
)
_VERSION_RE = re.compile(
    r"^version: ([0-9]+\.[0-9]+\.[0-9]+\S*) \(api:[0-9]+/proto:[0-9]+-[0-9]+\)(?: \(.*\))?\s*$"
)
_PROC_HEADER_RE = re.compile(r"^(?:GIT-hash: [0-9a-f]+|srcversion: [0-9A-F]+|Transports \()")


@_safe
def parse_proc_drbd(text: str) -> DrbdParse:
    """`/proc/drbd` of DRBD 8.3/8.4 (or the version-only file of DRBD 9).

    Resources are named by minor ("drbd0"): the file has no resource names.
    """
    version: Optional[str] = None
    bad: Optional[str] = None
    builders: List[_Builder] = []
    current: Optional[_Builder] = None
    for line in _lines(text):
        if _is_blank(line):  # also the marker for a missing minor
            continue
        m = _VERSION_RE.match(line)
        if m:
            version = version or m.group(1)
            continue
        if _PROC_HEADER_RE.match(line):
            continue
        m = _PROC_DEVICE_RE.match(line)
        if m:
            current = _proc_device(m)
            if current is None:
                bad = bad or _quote(line)
            else:
                builders.append(current)
            continue
        if current is not None and not current.unconfigured:
            if _PROC_STATS_RE.match(line) or _PROC_DETAIL_RE.match(line):
                continue
            m = _PROGRESS_RE.match(line)
            conn = current.connections[0] if current.connections else None
            if m and conn and conn["volumes"]:
                conn["volumes"][0]["sync_percent"] = float(m.group(1))
                continue
            m = _FINISH_RE.match(line)
            if m and conn and conn["volumes"]:
                conn["volumes"][0]["eta_seconds"] = _hms(m.group(1))
                continue
        bad = bad or _quote(line)
    return DrbdParse(tuple(b.build() for b in builders), bad, version)


def _proc_device(m: re.Match) -> Optional[_Builder]:
    minor = int(m.group(1))
    cs = m.group(2)
    b = _Builder(f"drbd{minor}")
    if cs == UNCONFIGURED and m.group(3) is None:
        b.unconfigured = True
        b.volumes.append({"minor": minor})
        return b
    if cs not in _CS_84 or cs == UNCONFIGURED or m.group(3) is None:
        return None
    role, peer_role, disk, peer_disk = m.group(3), m.group(4), m.group(5), m.group(6)
    if role not in ROLES or peer_role not in ROLES:
        return None
    if disk not in DISK_STATES or peer_disk not in DISK_STATES:
        return None
    flags = m.group(8) or ""
    b.role = role
    if flags.startswith("s"):
        b.suspended = "yes"
    b.volumes.append({"minor": minor, "disk": disk})
    cstate, replication = _split_cs(cs)
    conn = b.connection("peer")
    conn["cstate"] = cstate
    conn["peer_role"] = peer_role
    conn["volumes"].append({"replication": replication, "peer_disk": peer_disk})
    return b
