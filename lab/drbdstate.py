"""A node's DRBD state as a file in DRBD 8.4 `/proc/drbd` format, rewritten on demand.

There is no DRBD kernel module in the lab: the demo and the tests point `[drbd] path` at
this file and change it to stage a failover, a disconnect or a resync. The text follows
the kernel's printing code (see tests/fixtures/SOURCES.md for real samples).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from typing import Optional

HEADER = (
    "version: 8.4.11-1 (api:1/proto:86-101)\n"
    "GIT-hash: 66145a308421e9c124ec391a7848ac20203bb03c build by mockbuild@, 2018-11-03 01:26:55\n"
)


@dataclass(frozen=True)
class DrbdDevice:
    minor: int = 1
    cstate: str = "Connected"
    role: str = "Primary"
    peer_role: str = "Secondary"
    disk: str = "UpToDate"
    peer_disk: str = "UpToDate"
    sync_percent: Optional[float] = None  # shown only with cstate SyncSource/SyncTarget

    def render(self) -> str:
        protocol = " " if self.cstate == "StandAlone" else "C"
        lines = [
            f"{self.minor:2d}: cs:{self.cstate} ro:{self.role}/{self.peer_role} "
            f"ds:{self.disk}/{self.peer_disk} {protocol} r-----",
            "    ns:0 nr:0 dw:0 dr:0 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0",
        ]
        if self.cstate in ("SyncSource", "SyncTarget") and self.sync_percent is not None:
            permille = int(self.sync_percent * 10)
            x = permille // 50
            bar = "=" * max(0, x - 1) + ">" + "." * (20 - x)
            lines.append(f"\t[{bar}] sync'ed: {self.sync_percent:5.1f}% (3004/6672)M")
            lines.append("\tfinish: 0:05:53 speed: 8,696 (9,180) K/sec")
        return "\n".join(lines) + "\n"


class DrbdStateFile:
    """One node's fake /proc/drbd; every change is an atomic rewrite."""

    def __init__(self, path: str, device: Optional[DrbdDevice] = None):
        self.path = path
        self.device = device or DrbdDevice()
        self.write()

    def write(self) -> None:
        text = HEADER + ("\n" if self.device.minor > 0 else "") + self.device.render()
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".drbd-")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)

    def set(self, **changes: object) -> None:
        self.device = replace(self.device, **changes)  # type: ignore[arg-type]
        self.write()

    def primary(self) -> None:
        self.set(cstate="Connected", role="Primary", peer_role="Secondary",
                 disk="UpToDate", peer_disk="UpToDate", sync_percent=None)

    def secondary(self) -> None:
        self.set(cstate="Connected", role="Secondary", peer_role="Primary",
                 disk="UpToDate", peer_disk="UpToDate", sync_percent=None)
