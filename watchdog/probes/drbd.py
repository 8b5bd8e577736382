"""DRBD probe: read the state of the DRBD resources on this node.

Four text formats carry the same facts, depending on the DRBD generation and the tools
installed: `/proc/drbd` (DRBD 8.3/8.4 kernels; DRBD 9 prints only version lines there),
`drbd-overview` (the vendor guide's tool, gone from drbd-utils 9.6), `drbdadm status` /
`drbdsetup status` text (DRBD 9, and 8.4 kernels with drbd-utils 9; wrapped at 80 columns
when not on a terminal) and `drbdsetup status --json` (DRBD 9 only). Every parser maps its
format onto the DRBD 9 model (resource -> volumes, connections -> peer volumes) and never
raises: it returns what it understood plus the first line it could not read.

State words are checked against DRBD's own lists, so a mangled or unknown word is reported
as unreadable output (with the line) instead of being guessed at.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import threading
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from watchdog.config import DrbdConfig
from watchdog.probes.command import CommandResult, run_command

# ---------------------------------------------------------------- state words

ROLES = frozenset({"Primary", "Secondary", "Unknown"})
DISK_STATES = frozenset(
    {
        "Diskless",
        "Attaching",
        "Detaching",
        "Failed",
        "Negotiating",
        "Inconsistent",
        "Outdated",
        "DUnknown",
        "Consistent",
        "UpToDate",
    }
)
# Connection states of DRBD 9 plus the 8.4-only WFConnection / WFReportParams.
CONNECTION_STATES = frozenset(
    {
        "StandAlone",
        "Disconnecting",
        "Unconnected",
        "Timeout",
        "BrokenPipe",
        "NetworkFailure",
        "ProtocolError",
        "TearDown",
        "Connecting",
        "Connected",
        "WFConnection",
        "WFReportParams",
    }
)
REPLICATION_STATES = frozenset(
    {
        "Off",
        "Established",
        "StartingSyncS",
        "StartingSyncT",
        "WFBitMapS",
        "WFBitMapT",
        "WFSyncUUID",
        "SyncSource",
        "SyncTarget",
        "VerifyS",
        "VerifyT",
        "PausedSyncS",
        "PausedSyncT",
        "Ahead",
        "Behind",
    }
)
UNCONFIGURED = "Unconfigured"
# 8.4 has one `cs:` word for both layers: connection-level words, or (when connected)
# a replication-level word, with `Connected` meaning "Established".
_CS_84 = CONNECTION_STATES | (REPLICATION_STATES - {"Off", "Established"}) | {UNCONFIGURED}

FORMATS = ("proc", "drbd-overview", "drbdadm-status", "drbdsetup-json")
# What runs when a format is chosen without `command` (proc reads `path` instead).
DEFAULT_COMMANDS: Dict[str, Tuple[str, ...]] = {
    "drbd-overview": ("drbd-overview",),
    "drbdadm-status": ("drbdadm", "status"),
    "drbdsetup-json": ("drbdsetup", "status", "--json"),
}
STATUS_COMMAND: Tuple[str, ...] = ("drbdadm", "status")

_MAX_QUOTE = 200


# ---------------------------------------------------------------- snapshot types


@dataclass(frozen=True)
class DrbdVolume:
    """One local volume (one minor, one backing disk)."""

    volume: Optional[int] = None
    minor: Optional[int] = None
    disk: Optional[str] = None
    quorum: Optional[bool] = None  # None: not shown by this format
    client: Optional[bool] = None  # DRBD 9 intentionally diskless


@dataclass(frozen=True)
class DrbdPeerVolume:
    """One volume as seen over one connection."""

    volume: Optional[int] = None
    replication: Optional[str] = None  # Established, SyncSource, ... (None: not connected)
    peer_disk: Optional[str] = None
    sync_percent: Optional[float] = None  # resync done, when shown
    eta_seconds: Optional[float] = None  # resync time left, when shown
    resync_suspended: Optional[str] = None  # "no", "user", "peer", "dependency", ...
    peer_client: Optional[bool] = None  # peer is intentionally diskless (tiebreaker)


@dataclass(frozen=True)
class DrbdConnection:
    """The link to one peer node (8.4 formats have exactly one, named "peer")."""

    peer: str
    cstate: Optional[str] = None  # connection state: Connected, StandAlone, Connecting, ...
    peer_role: Optional[str] = None
    volumes: Tuple[DrbdPeerVolume, ...] = ()


@dataclass(frozen=True)
class DrbdResource:
    """One resource (or, for /proc/drbd which has no names, one minor: "drbd0")."""

    name: str
    role: Optional[str] = None  # this node: Primary / Secondary
    volumes: Tuple[DrbdVolume, ...] = ()
    connections: Tuple[DrbdConnection, ...] = ()
    suspended: Optional[str] = None  # I/O suspended and why ("user", "quorum", ...)
    unconfigured: bool = False  # the minor/resource exists but is not up

    @property
    def minors(self) -> Tuple[int, ...]:
        return tuple(v.minor for v in self.volumes if v.minor is not None)

    @property
    def connection(self) -> Optional[DrbdConnection]:
        """The first (in a two-node cluster: the only) connection."""
        return self.connections[0] if self.connections else None


@dataclass(frozen=True)
class DrbdParse:
    """What a parser understood: resources, plus the first line it could not read."""

    resources: Tuple[DrbdResource, ...] = ()
    bad_line: Optional[str] = None
    version: Optional[str] = None  # kernel module version (/proc/drbd only)
    not_loaded: bool = False  # drbd-overview said "drbd not loaded"


@dataclass(frozen=True)
class DrbdSnapshot:
    """The DRBD state of this node as one probe saw it."""

    resources: tuple  # DrbdResource, after the `resources` filter
    format: str  # proc, drbd-overview, drbdadm-status, drbdsetup-json (or "unknown")
    source: str  # the path or the command line, for messages
    error: Optional[str] = None  # could not read / run (reason)
    bad_line: Optional[str] = None  # first line it could not understand
    missing: tuple = ()  # configured resources that were not found
    version: Optional[str] = None  # DRBD kernel version when /proc/drbd showed it
    not_loaded: bool = False  # the output said DRBD is not loaded
    fallback: Optional[str] = None  # why another source than `path` was read


# ---------------------------------------------------------------- helpers

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _lines(text: str) -> List[str]:
    """Text as lines without colour codes or carriage returns."""
    if not isinstance(text, str):
        return []
    return _ANSI_RE.sub("", text).replace("\r", "").split("\n")


def _quote(line: str) -> str:
    line = line.rstrip("\n")
    return line if len(line) <= _MAX_QUOTE else line[:_MAX_QUOTE] + "..."


def _is_blank(line: str) -> bool:
    return not line.strip()


def _to_int(text: str) -> Optional[int]:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 12 else None


def _to_float(text: str) -> Optional[float]:
    if not re.fullmatch(r"[0-9]{1,9}(?:\.[0-9]+)?", text):
        return None
    return float(text)


def _hms(text: str) -> Optional[float]:
    m = re.fullmatch(r"([0-9]{1,6}):([0-9][0-9]):([0-9][0-9])", text)
    if not m:
        return None
    return float(int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)))


def _yes_no(text: str) -> Optional[bool]:
    return {"yes": True, "no": False, "true": True, "false": False}.get(text)


def _safe(parser: Callable[[str], DrbdParse]) -> Callable[[str], DrbdParse]:
    """Last line of defence: a parser bug becomes unreadable output, not a crash."""

    def wrapper(text: str) -> DrbdParse:
        try:
            return parser(text)
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            return DrbdParse(bad_line=f"internal parser error: {type(exc).__name__}: {exc}")

    wrapper.__name__ = parser.__name__
    wrapper.__doc__ = parser.__doc__
    return wrapper


class _Builder:
    """Mutable working copy of a resource while lines arrive."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.role: Optional[str] = None
        self.suspended: Optional[str] = None
        self.unconfigured = False
        self.volumes: List[Dict[str, Any]] = []
        self.connections: List[Dict[str, Any]] = []

    def connection(self, peer: str) -> Dict[str, Any]:
        for conn in self.connections:
            if conn["peer"] == peer:
                return conn
        conn = {"peer": peer, "cstate": None, "peer_role": None, "volumes": []}
        self.connections.append(conn)
        return conn

    def new_connection(self, peer: str) -> Optional[Dict[str, Any]]:
        """A connection listed for the first time; None when `peer` was already listed
        (two entries for one peer contradict each other: neither may silently win)."""
        if any(conn["peer"] == peer for conn in self.connections):
            return None
        return self.connection(peer)

    def build(self) -> DrbdResource:
        return DrbdResource(
            name=self.name,
            role=self.role,
            volumes=tuple(DrbdVolume(**v) for v in self.volumes),
            connections=tuple(
                DrbdConnection(
                    peer=c["peer"],
                    cstate=c["cstate"],
                    peer_role=c["peer_role"],
                    volumes=tuple(DrbdPeerVolume(**pv) for pv in c["volumes"]),
                )
                for c in self.connections
            ),
            suspended=self.suspended,
            unconfigured=self.unconfigured,
        )


def _split_cs(cs: str) -> Tuple[str, Optional[str]]:
    """8.4 `cs:` word -> (connection state, replication state)."""
    if cs == "Connected":
        return "Connected", "Established"
    if cs in REPLICATION_STATES:
        return "Connected", cs
    return cs, None


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


# ---------------------------------------------------------------- format detection

_PARSERS: Dict[str, Callable[[str], DrbdParse]] = {
    "proc": parse_proc_drbd,
    "drbd-overview": parse_drbd_overview,
    "drbdadm-status": parse_drbdadm_status,
    "drbdsetup-json": parse_drbdsetup_json,
}


def parse(fmt: str, text: str) -> DrbdParse:
    """Parse `text` with the parser of format `fmt` (one of FORMATS)."""
    parser = _PARSERS.get(fmt)
    if parser is None:
        return DrbdParse(bad_line=f"unknown format {fmt!r}")
    return parser(text)


def detect_format(text: str) -> Optional[str]:
    """Which DRBD output `text` is, from its content; None when it is none of them."""
    lines = [
        ln
        for ln in _lines(text)
        if not _is_blank(ln) and not ln.startswith(_OVERVIEW_NOTES)
    ]
    if not lines:
        return None
    if lines[0].lstrip().startswith(("[", "{")) and not _PROGRESS_RE.match(lines[0]):
        return "drbdsetup-json"
    for line in lines:
        if _VERSION_RE.match(line) or _PROC_HEADER_RE.match(line):
            return "proc"
        if re.match(r"^\s*[0-9]{1,6}: cs:", line):
            return "proc"
        if line.strip() == _NO_RESOURCES or re.match(r"^[^\s:]+ role:", line):
            return "drbdadm-status"
        if line.strip() == "drbd not loaded" or re.match(r"^\s*[0-9]{1,6}:\S+\s+\S", line):
            return "drbd-overview"
    return None


# ---------------------------------------------------------------- the probe


def read_text(path: str, limit: int = 1 << 20) -> str:
    """Read a small text file (such as /proc/drbd); raises OSError."""
    with open(path, "rb") as fh:
        return fh.read(limit).decode("utf-8", errors="replace")


_stuck_reads: Dict[str, threading.Thread] = {}
_stuck_lock = threading.Lock()


def _read_with_deadline(
    read_file: Callable[[str], str], path: str, timeout: float
) -> Tuple[Optional[str], Optional[str]]:
    """(text, None) or (None, reason); a read that hangs is abandoned at `timeout`.

    A worker thread does the read; at most one per path may hang at a time, so a wedged
    file system cannot pile threads up cycle after cycle.
    """
    with _stuck_lock:
        stuck = _stuck_reads.get(path)
        if stuck is not None:
            if stuck.is_alive():
                return None, f"an earlier read of {path} is still hanging"
            del _stuck_reads[path]
    box: Dict[str, Any] = {}

    def work() -> None:
        try:
            box["text"] = read_file(path)
        except OSError as exc:
            box["error"] = f"cannot read {path}: {exc.strerror or exc}"
        except Exception as exc:  # noqa: BLE001 - an injected reader may fail any way
            box["error"] = f"cannot read {path}: {type(exc).__name__}: {exc}"

    worker = threading.Thread(target=work, name=f"read {path}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        with _stuck_lock:
            _stuck_reads[path] = worker
        return None, f"reading {path} timed out after {timeout:g}s"
    if "error" in box:
        return None, box["error"]
    text = box.get("text")
    if not isinstance(text, str):
        return None, f"cannot read {path}: no text"
    return text, None


def _command_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


_NO_SUCH_RESOURCE_RE = re.compile(r"^(\S+): No such resource\s*$")


def _run(
    run: Callable[..., CommandResult], argv: Sequence[str], timeout: float
) -> Tuple[Optional[str], Optional[str], Tuple[str, ...]]:
    """(stdout, error, resources the command said are not up)."""
    try:
        res = run(tuple(argv), timeout)
    except Exception as exc:  # noqa: BLE001 - an injected runner must not crash the probe
        return None, f"cannot run {_command_line(argv)}: {type(exc).__name__}: {exc}", ()
    if res.error:
        return None, f"{_command_line(argv)}: {res.error}", ()
    down: List[str] = []
    other: List[str] = []
    for line in res.stderr.splitlines():
        m = _NO_SUCH_RESOURCE_RE.match(line.strip())
        if m:
            down.append(m.group(1))
        elif line.strip() and not line.startswith(_OVERVIEW_NOTES):
            other.append(line.strip())
    if res.returncode != 0 and (other or not down):
        why = other[0] if other else (res.stdout.strip().split("\n")[0] or "no output")
        return None, f"{_command_line(argv)} exited with status {res.returncode}: {why}", ()
    return res.stdout, None, tuple(down)


def _kernel_major(version: Optional[str]) -> Optional[int]:
    if not version:
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isascii() and head.isdigit() else None


def probe_drbd(
    cfg: DrbdConfig,
    run: Callable[..., CommandResult] = run_command,
    read_file: Callable[[str], str] = read_text,
    status_command: Sequence[str] = STATUS_COMMAND,
) -> DrbdSnapshot:
    """Read DRBD's state as `cfg` says; failures are in the snapshot, never raised.

    format "auto" without `command` reads `path`; when that file shows a DRBD 9 kernel
    (version lines only) it runs `status_command` (`drbdadm status`) instead. With
    `command`, its stdout is parsed; "auto" recognises the format from the content.
    """
    fmt = cfg.format
    fallback: Optional[str] = None
    version: Optional[str] = None
    down: Tuple[str, ...] = ()
    if cfg.command or fmt in DEFAULT_COMMANDS:
        argv = tuple(cfg.command) if cfg.command else DEFAULT_COMMANDS[fmt]
        source = _command_line(argv)
        text, error, down = _run(run, argv, cfg.timeout)
        if error is not None:
            return DrbdSnapshot((), fmt, source, error=error)
    else:
        source = cfg.path
        text, error = _read_with_deadline(read_file, cfg.path, cfg.timeout)
        if error is not None:
            return DrbdSnapshot((), fmt, source, error=error)
        if fmt == "auto":
            proc = parse_proc_drbd(text)
            major = _kernel_major(proc.version)
            if proc.bad_line is None and major is not None and major >= 9:
                fallback = (
                    f"{cfg.path} shows DRBD {proc.version}, whose devices are not listed "
                    f"there: read {_command_line(status_command)}"
                )
                version = proc.version
                source = _command_line(status_command)
                text, error, down = _run(run, status_command, cfg.timeout)
                if error is not None:
                    return DrbdSnapshot(
                        (), fmt, source, error=error, version=version, fallback=fallback
                    )
            else:
                fmt = "proc"
    text = text or ""
    if fmt == "auto":
        detected = detect_format(text)
        if detected is None:
            first = next((ln for ln in _lines(text) if not _is_blank(ln)), None)
            return DrbdSnapshot(
                (),
                "unknown",
                source,
                bad_line=_quote(first) if first is not None else "(empty output)",
                version=version,
                fallback=fallback,
            )
        fmt = detected
    parsed = parse(fmt, text)
    resources = parsed.resources + tuple(
        DrbdResource(name=name, unconfigured=True)
        for name in down
        if not any(r.name == name for r in parsed.resources)
    )
    selected, missing = select_resources(resources, cfg.resources)
    return DrbdSnapshot(
        resources=selected,
        format=fmt,
        source=source,
        bad_line=parsed.bad_line,
        missing=missing,
        version=parsed.version or version,
        not_loaded=parsed.not_loaded,
        fallback=fallback,
    )


_MINOR_SPEC_RE = re.compile(r"^(?:/dev/drbd|drbd|minor\s*)?([0-9]+)$")


def resource_matches(resource: DrbdResource, spec: str) -> bool:
    """`spec` names `resource`: its name, "name/volume", or a minor ("0", "drbd0", ...)."""
    spec = spec.strip()
    if spec == resource.name:
        return True
    m = _MINOR_SPEC_RE.match(spec)
    if m and int(m.group(1)) in resource.minors:
        return True
    name, sep, vol = spec.partition("/")
    if sep and name == resource.name and vol.isdigit():
        return any(v.volume == int(vol) for v in resource.volumes)
    return False


def select_resources(
    resources: Sequence[DrbdResource], wanted: Optional[Sequence[str]]
) -> Tuple[Tuple[DrbdResource, ...], Tuple[str, ...]]:
    """(resources named in `wanted`, names in `wanted` not found); all when `wanted` unset."""
    if not wanted:
        return tuple(resources), ()
    selected = tuple(r for r in resources if any(resource_matches(r, w) for w in wanted))
    missing = tuple(w for w in wanted if not any(resource_matches(r, w) for r in resources))
    return selected, missing


__all__ = [
    "DrbdConnection",
    "DrbdParse",
    "DrbdPeerVolume",
    "DrbdResource",
    "DrbdSnapshot",
    "DrbdVolume",
    "FORMATS",
    "detect_format",
    "parse",
    "parse_drbd_overview",
    "parse_drbdadm_status",
    "parse_drbdsetup_json",
    "parse_proc_drbd",
    "probe_drbd",
    "read_text",
    "resource_matches",
    "select_resources",
]
