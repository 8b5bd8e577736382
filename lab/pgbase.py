"""lab.pgcluster's vocabulary and process helpers: names, settings per version, where the
server binaries are, free ports, and the /proc and signal plumbing that stops a frozen
server for sure."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
from typing import Any, Dict, List, Optional

from watchdog.probes.command import run_command
from watchdog.probes.postgres import parse_lsn

DEFAULT_OS_USER = "postgres"
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
ROLES = ("primary", "standby")

# Lab defaults: small, fast, and quick to reconnect. Overridable per cluster. `wal_level`
# and the WAL retention setting depend on the version (see _version_settings).
BASE_SETTINGS: Dict[str, Any] = {
    "listen_addresses": "127.0.0.1",
    "max_wal_senders": 10,
    "hot_standby": "on",
    "fsync": "off",
    "shared_buffers": "16MB",
    "max_connections": 40,
    "wal_retrieve_retry_interval": "1s",
}


class PgClusterError(RuntimeError):
    """The lab could not set up or drive its servers (message says which step and why)."""


class _Dsn(str):
    """A conninfo string that can also be called (`c.primary_dsn` and `c.primary_dsn()`)."""

    def __call__(self) -> str:
        return str(self)


def find_bindir() -> str:
    """PostgreSQL's server binaries: `pg_config --bindir`, else the newest Debian version dir."""
    result = run_command(["pg_config", "--bindir"], timeout=10)
    if result.ok:
        bindir = result.stdout.strip()
        if os.path.exists(os.path.join(bindir, "initdb")):
            return bindir
    candidates = []
    for path in glob.glob("/usr/lib/postgresql/*/bin"):
        version = os.path.basename(os.path.dirname(path))
        if version.isdigit() and os.path.exists(os.path.join(path, "initdb")):
            candidates.append((int(version), path))
    if not candidates:
        raise PgClusterError("PostgreSQL server binaries not found (no initdb via pg_config)")
    return max(candidates)[1]


def binary_version(bindir: str) -> int:
    """server_version_num of the build in `bindir`, from `postgres --version`."""
    result = run_command([os.path.join(bindir, "postgres"), "--version"], timeout=10)
    match = re.search(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?(?:\.(\d+))?", result.stdout or "")
    if not result.ok or not match:
        raise PgClusterError(f"cannot tell the version of {bindir}/postgres: "
                             f"{(result.error or result.stdout or '').strip()}")
    major, second, third = (int(g) if g else 0 for g in match.groups())
    if major >= 10:
        return major * 10000 + second
    return major * 10000 + second * 100 + third


#: SQL names that 10 renamed (xlog -> wal, location -> lsn); the lab speaks both.
_RENAMED_BEFORE_10 = {
    "pg_current_wal_lsn": "pg_current_xlog_location",
    "pg_last_wal_receive_lsn": "pg_last_xlog_receive_location",
    "pg_last_wal_replay_lsn": "pg_last_xlog_replay_location",
    "pg_wal_replay_pause": "pg_xlog_replay_pause",
    "pg_wal_replay_resume": "pg_xlog_replay_resume",
    "pg_is_wal_replay_paused": "pg_is_xlog_replay_paused",
}


def sql_name(name: str, version_num: int) -> str:
    """A function's name on `version_num` (`pg_current_wal_lsn` is 9.x's xlog_location)."""
    return _RENAMED_BEFORE_10.get(name, name) if version_num < 100000 else name


def _version_settings(version_num: int) -> Dict[str, Any]:
    settings: Dict[str, Any] = {"wal_level": "replica" if version_num >= 90600 else "hot_standby"}
    # Keep WAL for a standby made from a low-level backup, which copies no WAL of its own.
    if version_num < 100000:
        settings["max_replication_slots"] = 10  # 10's default (9.x: 0, no slot possible)
    if version_num >= 130000:
        settings["wal_keep_size"] = "256MB"
    else:
        settings["wal_keep_segments"] = 16
    return settings


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _conf_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _children(pid: int) -> List[int]:
    """Direct children of `pid`, from /proc (the postmaster's backends and helpers)."""
    found = []
    for stat_path in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat_path) as handle:
                data = handle.read()
        except OSError:
            continue
        try:
            ppid = int(data.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat_path.split("/")[2]))
    return found


def _alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


class _Node:
    """One server: its data directory, port and log (the role label lives in PgCluster)."""

    def __init__(self, name: str, base: str, port: int):
        self.name = name
        self.datadir = os.path.join(base, name)
        self.log = os.path.join(base, name + ".log")
        self.port = port
        self.pid: Optional[int] = None  # last postmaster pid we saw

    def read_pid(self) -> Optional[int]:
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as handle:
                return int(handle.readline().strip())
        except (OSError, ValueError):
            return None


def lsn_int(text: str) -> int:
    """pg_lsn text ('16/B374D848') to a byte position."""
    value = parse_lsn(text)
    assert value is not None
    return value
