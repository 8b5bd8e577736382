"""A real PostgreSQL primary + streaming standby on loopback, for tests, the demo and bench/.

Both servers live in one base directory (data directories, logs, unix sockets) and listen on
127.0.0.1 on free ports. The standby is made with `pg_basebackup -R` and streams from the
primary as `application_name=standby1`. initdb refuses to run as root, so when we are root
every server command runs as an unprivileged OS user (`postgres` by default) via `runuser`.

The roles "primary" and "standby" name what a node *is*, not where it was made: after
`failover()` (promote the standby, rebuild the old primary as its standby) they swap, so
`primary_dsn` always points at the writable server.

`close()` always stops both servers (pg_ctl stop -m immediate, then SIGKILL of the postmaster
and its children) and removes the base directory, also after a failed or partial start and
with frozen (SIGSTOPped) processes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set

from watchdog.probes.command import CommandResult, run_command
from watchdog.probes.postgres import parse_lsn

DEFAULT_OS_USER = "postgres"
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
ROLES = ("primary", "standby")

# Lab defaults: small, fast, and quick to reconnect. Overridable per cluster.
BASE_SETTINGS: Dict[str, Any] = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "replica",
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


class PgCluster:
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
            self._bindir = find_bindir()
        return self._bindir

    def start(self) -> PgCluster:
        """Create and start both servers; wait until the standby streams. Cleans up on failure."""
        try:
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

    def pause_replay(self, wait: bool = True) -> None:
        """pg_wal_replay_pause() on the standby; with `wait`, until it reports `paused`."""
        self.query("standby", "SELECT pg_wal_replay_pause()")
        if wait:
            self._wait(
                lambda: self.scalar("standby", "SELECT pg_get_wal_replay_pause_state()")
                == "paused",
                "replay to pause",
            )

    def resume_replay(self) -> None:
        self.query("standby", "SELECT pg_wal_replay_resume()")

    def write(self, n_rows: int = 1) -> int:
        """Commit `n_rows` rows on the primary in one transaction; the primary's LSN after it."""
        with self.connect("primary", autocommit=False) as conn:
            conn.execute(
                "INSERT INTO lab_writes (payload) SELECT repeat('x', 100) FROM generate_series(1, %s)",
                (n_rows,),
            )
            conn.commit()
            conn.autocommit = True
            return lsn_int(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])

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
        target = lsn_int(self.scalar("primary", "SELECT pg_current_wal_lsn()::text"))

        def replayed() -> bool:
            value = self.scalar("standby", "SELECT pg_last_wal_replay_lsn()::text")
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
        return self.scalar("standby", "SELECT pid FROM pg_stat_wal_receiver")

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
        state = self.scalar("standby", "SELECT pg_get_wal_replay_pause_state()")
        if state not in (None, "not paused"):
            self.resume_replay()
        self.wait_streaming()

    def promote_standby(self) -> None:
        """`pg_ctl promote` the standby. The old primary keeps running: two primaries."""
        node = self.node("standby")
        self._run([self._bin("pg_ctl"), "-D", node.datadir, "-w", "-t", str(int(self.timeout)),
                   "promote"], timeout=self.timeout + 5)

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

    def _prepare_dir(self) -> None:
        if os.path.isdir(self.base_dir) and os.listdir(self.base_dir):
            raise PgClusterError(f"base directory {self.base_dir} is not empty")
        os.makedirs(self.base_dir, exist_ok=True)
        self._owns_dir = True
        os.makedirs(self.socket_dir, exist_ok=True)
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(self.os_user)
            except KeyError:
                raise PgClusterError(f"OS user {self.os_user!r} does not exist") from None
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            probe = self._run(["test", "-w", self.base_dir], check=False)
            if not probe.ok:
                raise PgClusterError(
                    f"user {self.os_user} cannot write {self.base_dir}: every parent directory "
                    "must be searchable by it (use a directory under the system temp dir)"
                )

    def _initdb(self, node: _Node) -> None:
        self._run([self._bin("initdb"), "-D", node.datadir, "--no-sync", "-A", "trust",
                   "-U", SUPERUSER, "-E", "UTF8", "--locale=C"], timeout=max(self.timeout, 60))
        settings = dict(BASE_SETTINGS)
        settings["unix_socket_directories"] = self.socket_dir
        settings.update(self.settings)
        settings["port"] = node.port
        self._append_conf(os.path.join(node.datadir, "postgresql.conf"), settings)
        with open(os.path.join(node.datadir, "pg_hba.conf"), "a") as handle:
            handle.write(f"host replication {REPLICATION_USER} 127.0.0.1/32 trust\n")

    def _setup_primary(self) -> None:
        self.query("primary", f"CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN")
        self.query(
            "primary",
            "CREATE TABLE lab_writes (id bigserial PRIMARY KEY, payload text,"
            " at timestamptz NOT NULL DEFAULT now())",
        )

    def _make_standby(self, node: _Node, source: _Node) -> None:
        conninfo = (f"host=127.0.0.1 port={source.port} user={REPLICATION_USER} "
                    f"application_name={self.application_name}")
        self._run([self._bin("pg_basebackup"), "-D", node.datadir, "-R", "-X", "stream",
                   "-c", "fast", "--no-sync", "-d", conninfo], timeout=max(self.timeout, 60))
        settings: Dict[str, Any] = dict(self.standby_settings)
        settings["port"] = node.port
        self._append_conf(os.path.join(node.datadir, "postgresql.conf"), settings)

    def _append_conf(self, path: str, settings: Mapping[str, Any]) -> None:
        lines = [f"{key} = {_conf_value(value)}\n" for key, value in settings.items()]
        with open(path, "a") as handle:  # appending keeps the file's owner
            handle.write("\n# ha-watchdog lab\n" + "".join(lines))

    def _pg_ctl_start(self, node: _Node) -> None:
        try:
            self._run([self._bin("pg_ctl"), "-D", node.datadir, "-l", node.log, "-w",
                       "-t", str(int(self.timeout)), "start"], timeout=self.timeout + 5)
        except PgClusterError as exc:
            raise PgClusterError(f"{exc}; server log: {self._log_tail(node)}") from None
        node.pid = node.read_pid()

    @staticmethod
    def _log_tail(node: _Node, lines: int = 5) -> str:
        try:
            with open(node.log, errors="replace") as handle:
                return " | ".join(line.strip() for line in handle.readlines()[-lines:])
        except OSError:
            return "(no log)"


def lsn_int(text: str) -> int:
    """pg_lsn text ('16/B374D848') to a byte position."""
    value = parse_lsn(text)
    assert value is not None
    return value
