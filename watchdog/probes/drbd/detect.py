"""Which format a text is, and the parser for each format."""

from __future__ import annotations

import re
from typing import Callable, Dict, Optional

from watchdog.probes.drbd.drbdadm_status import _NO_RESOURCES, parse_drbdadm_status
from watchdog.probes.drbd.drbdsetup_json import parse_drbdsetup_json
from watchdog.probes.drbd.lines import _is_blank, _lines
from watchdog.probes.drbd.model import DrbdParse
from watchdog.probes.drbd.overview import _OVERVIEW_NOTES, parse_drbd_overview
from watchdog.probes.drbd.proc import _PROC_HEADER_RE, _PROGRESS_RE, _VERSION_RE, parse_proc_drbd

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
