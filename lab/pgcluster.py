"""A real PostgreSQL primary + streaming standby on loopback, for tests, the demo and bench/.

Both servers live in one base directory (data directories, logs, unix sockets) and listen on
127.0.0.1 on free ports. The standby is a base backup of the primary (`pg_basebackup` where the
build has one, else PostgreSQL's low-level backup API and a file copy) and streams from the
primary as `application_name=standby1`; its recovery settings are written here (recovery.conf
before 12, standby.signal from 12), never by a newer client's `-R`, whose conninfo an older
server's libpq may reject. initdb refuses to run as root, so when we are root every server
command runs as an unprivileged OS user (`postgres` by default) via `runuser`.

`version="9.5"` (or "10" ... "18") starts that major version from the builds `.ci/pg-builds`
installs (see lab.pgversions); the default is Debian's packaged server. The SQL the
lab itself runs (pause replay, current LSN, ...) uses each version's names.

The roles "primary" and "standby" name what a node *is*, not where it was made: after
`failover()` (promote the standby, rebuild the old primary as its standby) they swap, so
`primary_dsn` always points at the writable server.

The parts: lab.pgbase (names, settings per version, binaries, process helpers) and
lab.pgbuild (initdb, roles, the standby's base backup, config files: a mixin).

`close()` always stops both servers (pg_ctl stop -m immediate, then SIGKILL of the postmaster
and its children) and removes the base directory, also after a failed or partial start and
with frozen (SIGSTOPped) processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

from lab.pgbase import (
    BASE_SETTINGS,
    DEFAULT_OS_USER,
    REPLICATION_USER,
    ROLES,
    SUPERUSER,
    PgClusterError,
    _alive,
    _children,
    _Dsn,
    _Node,
    _signal,
    binary_version,
    find_bindir,
    free_port,
    lsn_int,
    sql_name,
)
from lab.pgbuild import _Building
from watchdog.probes.command import CommandResult, run_command

# Re-exported: the tests, the demo and bench import these from here.
__all__ = [
    "BASE_SETTINGS", "DEFAULT_OS_USER", "REPLICATION_USER", "ROLES", "SUPERUSER", "PgCluster",
    "PgClusterError", "_alive", "binary_version", "find_bindir", "free_port", "lsn_int",
    "sql_name",
]


class PgCluster(_Building):
    """A primary and one streaming standby under `base_dir` (a context manager).

    `settings` go to both servers, `standby_settings` to the standby only (e.g.
    `{"wal_receiver_status_interval": "1s"}`). `timeout` bounds every step (a start, a
    wait for streaming, one command). `keep=True` leaves the directory after close (debug).
    """

    def __init__(
        self,
        base_dir: str,
        *,
        settings: Optional[Mapping[str, Any]] = None,
        standby_settings: Optional[Mapping[str, Any]] = None,
        application_name: str = "standby1",
        os_user: str = DEFAULT_OS_USER,
        bindir: Optional[str] = None,
        version: Optional[str] = None,
        timeout: float = 30.0,
        keep: bool = False,
    ):
        self.base_dir = os.path.abspath(base_dir)
        self.socket_dir = os.path.join(self.base_dir, "run")
        self.settings = dict(settings or {})
        self.standby_settings = dict(standby_settings or {})
        self.application_name = application_name
        self.os_user = os_user
        self._bindir = bindir
        self.version = version
        self._version_num: Optional[int] = None
        self.timeout = timeout
        self.keep = keep
        self._nodes: Dict[str, _Node] = {}
        self._frozen: Set[int] = set()
        self._owns_dir = False  # set once the directory is known to be ours (empty/new)
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def bindir(self) -> str:
        if self._bindir is None:
            from lab.pgversions import PgVersionMissing, bindir_for

            try:
                self._bindir = bindir_for(self.version)
            except PgVersionMissing as exc:
                raise PgClusterError(str(exc)) from None
        return self._bindir

    @property
    def server_version_num(self) -> int:
        """The build's version as server_version_num (90501, 150018, ...)."""
        if self._version_num is None:
            self._version_num = binary_version(self.bindir)
        return self._version_num

    def sql(self, name: str) -> str:
        """A server function's name for this version (see sql_name)."""
        return sql_name(name, self.server_version_num)

    def start(self) -> PgCluster:
        """Create and start both servers; wait until the standby streams. Cleans up on failure."""
        try:
            binary_version(self.bindir)  # a missing build is the first thing to say
            self._prepare_dir()
            primary = _Node("node1", self.base_dir, free_port())
            standby = _Node("node2", self.base_dir, free_port())
            self._nodes = {"primary": primary, "standby": standby}
            self._initdb(primary)
            self._pg_ctl_start(primary)
            self._setup_primary()
            self._make_standby(standby, source=primary)
            self._pg_ctl_start(standby)
            self.wait_streaming()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop both servers whatever state they are in, and remove the base directory."""
        if self._closed:
            return
        self._closed = True
        for pid in list(self._frozen):
            _signal(pid, signal.SIGCONT)
        self._frozen.clear()
        for node in self._nodes.values():
            pid = node.read_pid() or node.pid
            if pid:
                # A stopped child (walreceiver, backend) would ignore the shutdown too.
                for child in [pid] + _children(pid):
                    _signal(child, signal.SIGCONT)
            if os.path.exists(os.path.join(node.datadir, "postmaster.pid")):
                self._run(
                    [self._bin("pg_ctl"), "-D", node.datadir, "-m", "immediate", "-w", "-t", "10",
                     "stop"],
                    timeout=15,
                    check=False,
                )
            pids = [p for p in (pid, node.pid) if p]
            for postmaster in pids:
                for child in _children(postmaster):
                    _signal(child, signal.SIGKILL)
                _signal(postmaster, signal.SIGKILL)
        if not self.keep and self._owns_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # ------------------------------------------------------------ addresses

    def node(self, which: str) -> _Node:
        if which not in self._nodes:
            raise PgClusterError(f"unknown server {which!r}; use one of {', '.join(ROLES)}")
        return self._nodes[which]

    def port(self, which: str) -> int:
        return self.node(which).port

    def dsn(self, which: str, *, socket_dir: bool = False, user: str = SUPERUSER, **extra: str) -> str:
        """libpq conninfo of `which` over TCP (or the unix socket with `socket_dir=True`)."""
        host = self.socket_dir if socket_dir else "127.0.0.1"
        parts = [f"host={host}", f"port={self.port(which)}", f"user={user}", "dbname=postgres"]
        parts += [f"{key}={value}" for key, value in extra.items()]
        return " ".join(parts)

    @property
    def primary_dsn(self) -> _Dsn:
        return _Dsn(self.dsn("primary"))

    @property
    def standby_dsn(self) -> _Dsn:
        return _Dsn(self.dsn("standby"))

    def pids(self) -> Dict[str, Optional[int]]:
        """Postmaster pid per role (None when that server is not running)."""
        out: Dict[str, Optional[int]] = {}
        for which, node in self._nodes.items():
            pid = node.read_pid()
            out[which] = pid if _alive(pid) else None
        return out

    # ------------------------------------------------------------ SQL helpers

    def connect(self, which: str, **kwargs: Any) -> Any:
        """A psycopg connection (autocommit) to `which`; the caller closes it."""
        import psycopg

        kwargs.setdefault("connect_timeout", 5)
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn(which), **kwargs)

    def query(self, which: str, sql: str, params: Sequence[Any] = ()) -> List[tuple]:
        """Run one statement on `which`; its rows ([] for statements without rows)."""
        with self.connect(which) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, which: str, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.query(which, sql, params)
        return rows[0][0] if rows else None

    # ------------------------------------------------------------ actions

    def stop(self, which: str, mode: str = "fast") -> None:
        node = self.node(which)
        self._run(
            [self._bin("pg_ctl"), "-D", node.datadir, "-m", mode, "-w", "-t", str(int(self.timeout)),
             "stop"],
            timeout=self.timeout + 5,
        )

    def start_server(self, which: str, wait: bool = True) -> None:
        """Start a stopped server; with `wait`, until the standby streams again."""
        self._pg_ctl_start(self.node(which))
        if wait and self.pids().get("standby") and self.pids().get("primary"):
            self.wait_streaming()

    def stop_standby(self, mode: str = "fast") -> None:
        self.stop("standby", mode)

    def start_standby(self, wait: bool = True) -> None:
        self.start_server("standby", wait)

    def stop_primary(self, mode: str = "fast") -> None:
        self.stop("primary", mode)

    def start_primary(self, wait: bool = True) -> None:
        self.start_server("primary", wait)

    def replay_pause_state(self) -> Optional[str]:
        """The standby's pause state as 14+ names it: not paused / pause requested / paused.

        Before 14 only "paused or not" exists (true from the moment a pause is requested).
        """
        if self.server_version_num >= 140000:
            return self.scalar("standby", "SELECT pg_get_wal_replay_pause_state()")
        paused = self.scalar("standby", f"SELECT {self.sql('pg_is_wal_replay_paused')}()")
        return None if paused is None else ("paused" if paused else "not paused")

    def pause_replay(self, wait: bool = True) -> None:
        """pg_wal_replay_pause() on the standby; with `wait`, until it reports `paused`."""
        self.query("standby", f"SELECT {self.sql('pg_wal_replay_pause')}()")
        if wait:
            self._wait(lambda: self.replay_pause_state() == "paused", "replay to pause")

    def resume_replay(self) -> None:
        self.query("standby", f"SELECT {self.sql('pg_wal_replay_resume')}()")

    def current_lsn(self) -> int:
        """The primary's current WAL position."""
        return lsn_int(self.scalar("primary", f"SELECT {self.sql('pg_current_wal_lsn')}()::text"))

    def write(self, n_rows: int = 1) -> int:
        """Commit `n_rows` rows on the primary in one transaction; the primary's LSN after it."""
        with self.connect("primary", autocommit=False) as conn:
            conn.execute(
                "INSERT INTO lab_writes (payload) SELECT repeat('x', 100) FROM generate_series(1, %s)",
                (n_rows,),
            )
            conn.commit()
            conn.autocommit = True
            sql = f"SELECT {self.sql('pg_current_wal_lsn')}()::text"
            return lsn_int(conn.execute(sql).fetchone()[0])

    def wait_streaming(self, timeout: Optional[float] = None) -> None:
        """Until the primary shows the standby's walsender in state `streaming`."""

        def streaming() -> bool:
            try:
                return bool(
                    self.query(
                        "primary",
                        "SELECT 1 FROM pg_stat_replication"
                        " WHERE application_name = %s AND state = 'streaming'",
                        (self.application_name,),
                    )
                )
            except Exception:  # server still starting: try again
                return False

        self._wait(streaming, "the standby to stream", timeout)

    def wait_replayed(self, timeout: Optional[float] = None) -> int:
        """Until the standby has replayed everything the primary has written; that LSN."""
        target = self.current_lsn()

        def replayed() -> bool:
            value = self.scalar("standby", f"SELECT {self.sql('pg_last_wal_replay_lsn')}()::text")
            return value is not None and lsn_int(value) >= target

        self._wait(replayed, "the standby to replay", timeout)
        return target

    def freeze(self, which: str) -> int:
        """SIGSTOP the postmaster of `which` (it accepts TCP but never answers); its pid."""
        pid = self._running_pid(which)
        self._frozen.add(pid)
        os.kill(pid, signal.SIGSTOP)
        return pid

    def thaw(self, which: str) -> int:
        pid = self._running_pid(which)
        os.kill(pid, signal.SIGCONT)
        self._frozen.discard(pid)
        return pid

    def walreceiver_pid(self) -> Optional[int]:
        """The standby's WAL receiver process (9.5 has no view of it: its process title)."""
        if self.server_version_num >= 90600:
            return self.scalar("standby", "SELECT pid FROM pg_stat_wal_receiver")
        postmaster = self.node("standby").read_pid()
        for pid in _children(postmaster) if postmaster else []:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    title = handle.read(4096).replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if "wal receiver" in title or "walreceiver" in title:
                return pid
        return None

    def freeze_walreceiver(self) -> int:
        """SIGSTOP the standby's walreceiver: a hung link with the TCP connection open."""
        pid = self.walreceiver_pid()
        if not pid:
            raise PgClusterError("the standby has no walreceiver to freeze")
        self._frozen.add(pid)
        os.kill(pid, signal.SIGSTOP)
        return pid

    def thaw_walreceiver(self) -> None:
        for pid in list(self._frozen):
            if pid not in self._postmaster_pids():
                _signal(pid, signal.SIGCONT)
                self._frozen.discard(pid)

    def heal(self) -> None:
        """Undo what tests and demos do: thaw, start stopped servers, resume replay, stream.

        Cheap when nothing is wrong (a few queries), so a fixture can call it after every
        test that shares the cluster.
        """
        for pid in list(self._frozen):
            _signal(pid, signal.SIGCONT)
        self._frozen.clear()
        running = self.pids()
        for which in ROLES:
            if not running.get(which):
                self._pg_ctl_start(self.node(which))
        state = self.replay_pause_state()
        if state not in (None, "not paused"):
            self.resume_replay()
        self.wait_streaming()

    def promote_standby(self) -> None:
        """`pg_ctl promote` the standby. The old primary keeps running: two primaries."""
        node = self.node("standby")
        if self.server_version_num >= 100000:
            self._run([self._bin("pg_ctl"), "-D", node.datadir, "-w", "-t",
                       str(int(self.timeout)), "promote"], timeout=self.timeout + 5)
            return
        # pg_ctl promote does not wait before 10: wait for the end of recovery here.
        self._run([self._bin("pg_ctl"), "-D", node.datadir, "promote"], timeout=self.timeout)
        self._wait(lambda: self.scalar("standby", "SELECT pg_is_in_recovery()") is False,
                   "the standby to leave recovery")

    def reattach_old_primary(self) -> None:
        """After `promote_standby()`: rebuild the old primary as a standby of the new one.

        The old primary is stopped and re-cloned with pg_basebackup (simple and always
        possible, unlike pg_rewind which needs wal_log_hints); then the roles swap.
        """
        old, new = self.node("primary"), self.node("standby")
        if self.pids().get("primary"):
            self.stop("primary", "fast")
        shutil.rmtree(old.datadir)
        self._make_standby(old, source=new)
        self._nodes = {"primary": new, "standby": old}
        self._pg_ctl_start(old)
        self.wait_streaming()

    def failover(self) -> None:
        """Promote the standby and make the old primary its standby (roles swap)."""
        self.promote_standby()
        self.reattach_old_primary()

    # ------------------------------------------------------------ internals

    def _bin(self, name: str) -> str:
        return os.path.join(self.bindir, name)

    def _as_user(self) -> List[str]:
        return ["runuser", "-u", self.os_user, "--"] if os.geteuid() == 0 else []

    def _run(self, argv: Sequence[str], timeout: Optional[float] = None, check: bool = True
             ) -> CommandResult:
        result = run_command(self._as_user() + list(argv), timeout=timeout or self.timeout)
        if check and not result.ok:
            reason = result.error or f"exit status {result.returncode}"
            output = (result.stderr or result.stdout).strip()
            raise PgClusterError(f"{os.path.basename(argv[0])} failed ({reason}): {output}")
        return result

    def _wait(self, predicate: Any, what: str, timeout: Optional[float] = None) -> None:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if predicate():
                return
            if time.monotonic() > deadline:
                raise PgClusterError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def _running_pid(self, which: str) -> int:
        node = self.node(which)
        pid = node.read_pid() or node.pid
        if not _alive(pid):
            raise PgClusterError(f"the {which} is not running")
        return pid  # type: ignore[return-value]

    def _postmaster_pids(self) -> Set[int]:
        return {p for n in self._nodes.values() for p in (n.pid, n.read_pid()) if p}
