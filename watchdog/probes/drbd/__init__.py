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

One module per job: `model` (the snapshot types and DRBD's state words), `lines` (what
the parsers share), one parser per format (`proc`, `overview`, `drbdadm_status`,
`drbdsetup_json`), `detect` (which format a text is) and `probe` (the I/O, with its
deadlines). Every public name is re-exported here: import from `watchdog.probes.drbd`.
"""

from __future__ import annotations

from watchdog.probes.drbd.detect import detect_format, parse
from watchdog.probes.drbd.drbdadm_status import parse_drbdadm_status
from watchdog.probes.drbd.drbdsetup_json import parse_drbdsetup_json
from watchdog.probes.drbd.model import (
    CONNECTION_STATES,
    DEFAULT_COMMANDS,
    DISK_STATES,
    FORMATS,
    REPLICATION_STATES,
    ROLES,
    STATUS_COMMAND,
    UNCONFIGURED,
    DrbdConnection,
    DrbdParse,
    DrbdPeerVolume,
    DrbdResource,
    DrbdSnapshot,
    DrbdVolume,
)
from watchdog.probes.drbd.overview import parse_drbd_overview
from watchdog.probes.drbd.probe import probe_drbd, read_text, resource_matches, select_resources
from watchdog.probes.drbd.proc import parse_proc_drbd

__all__ = [
    "CONNECTION_STATES",
    "DEFAULT_COMMANDS",
    "DISK_STATES",
    "REPLICATION_STATES",
    "ROLES",
    "STATUS_COMMAND",
    "UNCONFIGURED",
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
