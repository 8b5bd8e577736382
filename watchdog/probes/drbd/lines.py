"""Helpers the parsers share: clean lines, bounded numbers, a never-raising wrapper and
the mutable builder a resource is assembled in while its lines arrive."""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from watchdog.probes.drbd.model import (
    _MAX_QUOTE,
    REPLICATION_STATES,
    DrbdConnection,
    DrbdParse,
    DrbdPeerVolume,
    DrbdResource,
    DrbdVolume,
)

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
