"""The DRBD 9 model every parser maps its format onto, and DRBD's own state words."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

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
