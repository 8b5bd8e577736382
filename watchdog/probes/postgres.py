"""The PostgreSQL probe: one connection, one query, a deadline enforced from outside.

What it collects (everything three checks and the backup logic need, in one round trip):
recovery state and server version; on a primary the current WAL LSN and one row per
walsender (pg_stat_replication); on a standby the receive/replay LSNs, the replay pause
state, the age of the last replayed transaction and the WAL receiver (pg_stat_wal_receiver);
and backup sessions (pg_dump & co. by application_name, walsenders in state `backup`).

Why the deadline lives outside the driver: against a SIGSTOPped postmaster a connect waits
forever, psycopg's own connect_timeout fires only after max(2, t) s, and a query on an open
connection to a stopped backend hangs despite statement_timeout. So the database work runs
in a worker thread: the caller waits at most `connect_timeout` for the connection, then at
most `query_timeout` for the answer. A connect that misses its deadline is abandoned (the
worker closes whatever it gets later; libpq's own timeout ends it); a query that misses
its deadline gets its socket shut down from here, which unblocks the worker at once.

Ages are computed by the server (`clock_timestamp() - ...`), so the watchdog's clock does
not matter. `reply_time` in pg_stat_replication is stamped by the *standby's* clock: keep
both nodes on NTP or reply ages are off by the skew.

The role the watchdog connects as needs `pg_monitor` (or superuser): without it
PostgreSQL hides the walsender/walreceiver columns and the checks say so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from watchdog.config import BackupConfig, CanaryConfig, PostgresConfig
from watchdog.redaction import scrub_dsn
from watchdog.units import format_duration

APPLICATION_NAME = "ha-watchdog"
# Kinds of BackupSession.
SESSION = "session"
WALSENDER = "walsender"


# ---------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class WalSender:
    """One row of pg_stat_replication, as seen on the primary."""

    pid: Optional[int]
    application_name: Optional[str]
    client_addr: Optional[str]  # None for a unix-socket connection (or hidden)
    state: Optional[str]  # None when the monitoring role lacks pg_monitor
    sent_lsn: Optional[int] = None
    write_lsn: Optional[int] = None
    flush_lsn: Optional[int] = None
    replay_lsn: Optional[int] = None  # NULL for a moment right after the standby connects
    reply_age: Optional[float] = None  # s since reply_time; None until the first reply
    replay_lag_bytes: Optional[int] = None  # primary's current LSN - replay_lsn
    sync_state: Optional[str] = None
    backend_start: Optional[float] = None  # epoch seconds
    backend_age: Optional[float] = None  # s since the walsender started
    is_backup: bool = False  # pg_basebackup & co. (state `backup` or a backup app name)
    # Filled in by track() from the previous cycle (servers without reply_time, < 12):
    # since when (probe clock) WAL beyond flush_lsn has waited without the standby's flush
    # position moving; None when it moved, nothing waits, or there is no earlier look.
    flush_waiting_since: Optional[float] = None
    flush_moved: Optional[bool] = None  # None: no earlier look at this walsender (same pid)

    @property
    def key(self) -> Tuple[str, str]:
        """Identity of a standby: rows with the same key are one standby (old + reconnected)."""
        return (self.application_name or "", self.client_addr or "local")

    @property
    def label(self) -> str:
        return f"{self.application_name or '?'}@{self.client_addr or 'local'}"


@dataclass(frozen=True)
class WalReceiver:
    """The row of pg_stat_wal_receiver (standby only; absent when no walreceiver runs)."""

    pid: Optional[int]
    status: Optional[str]  # streaming, waiting, starting, ...; None when hidden
    sender_host: Optional[str] = None
    sender_port: Optional[int] = None
    received_lsn: Optional[int] = None  # flushed_lsn (13+) / received_lsn (12)
    written_lsn: Optional[int] = None  # 13+
    latest_end_lsn: Optional[int] = None
    last_msg_receipt_age: Optional[float] = None  # s since the last message from the primary
    slot_name: Optional[str] = None


@dataclass(frozen=True)
class ReceiverProcess:
    """The standby's WAL receiver seen through /proc (9.5 has no pg_stat_wal_receiver).

    `found=False` with `error=None`: the postmaster has no WAL receiver child. `error`:
    /proc could not tell (not the same host, hidepid, ...). `status` is the word after the
    process title's name (`streaming`, `restarting`, ...; None when the title has none, e.g.
    update_process_title = off); `lsn` the position the title shows.
    """

    found: bool
    pid: Optional[int] = None
    title: Optional[str] = None
    status: Optional[str] = None
    lsn: Optional[int] = None
    state: Optional[str] = None  # the kernel's process state letter (R, S, D, T, Z, ...)
    error: Optional[str] = None


@dataclass(frozen=True)
class CanaryWrite:
    """The canary transaction of this cycle (primary only; see build_canary)."""

    ok: bool
    xid: Optional[int] = None
    before_lsn: Optional[int] = None  # WAL insert position just before its commit record
    error: Optional[str] = None
    duration: float = 0.0

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"written": self.ok, "xid": self.xid,
                               "lsn": format_lsn(self.before_lsn),
                               "seconds": round(self.duration, 3)}
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class BackupSession:
    """A backup running against this server: a pg_dump-like session or a backup walsender."""

    pid: int
    application_name: Optional[str]
    age: Optional[float]  # s since the session started
    kind: str  # SESSION or WALSENDER
    started: Optional[float] = None  # epoch seconds (backend_start)
    client_addr: Optional[str] = None


@dataclass(frozen=True)
class PgSnapshot:
    """What the probe saw. A failure is `reachable=False` or `error`, never an exception."""

    reachable: bool
    error: Optional[str] = None
    in_recovery: Optional[bool] = None
    server_version: Optional[int] = None
    current_lsn: Optional[int] = None  # primary
    walsenders: Tuple[WalSender, ...] = ()  # primary
    receive_lsn: Optional[int] = None  # standby
    replay_lsn: Optional[int] = None  # standby
    replay_paused: Optional[str] = None  # "not paused" / "pause requested" / "paused"
    last_replay_age: Optional[float] = None  # now - pg_last_xact_replay_timestamp() (naive)
    walreceiver: Optional[WalReceiver] = None
    backups: Tuple[BackupSession, ...] = ()
    duration: float = 0.0
    resampled: bool = False  # standby: read twice (see RESAMPLE_AFTER)
    server_age: Optional[float] = None  # s since the postmaster started
    receiver_process: Optional[ReceiverProcess] = None  # standby without the view (9.5)
    canary: Optional[CanaryWrite] = None  # primary: this cycle's canary, when one was asked
    taken_at: Optional[float] = None  # the probe's clock when the answer came
    tracked: bool = False  # track() has compared this snapshot with the previous one

    @property
    def walreceiver_view(self) -> bool:
        """Does this server have pg_stat_wal_receiver (9.6+)? Unknown version: assume so."""
        return self.server_version is None or self.server_version >= WALRECEIVER_VIEW

    @property
    def has_reply_time(self) -> bool:
        """pg_stat_replication.reply_time exists (12+)."""
        return self.server_version is None or self.server_version >= REPLY_TIME

    @property
    def answered(self) -> bool:
        """Connected and the queries came back: the other fields are meaningful."""
        return self.reachable and self.error is None and self.in_recovery is not None

    @property
    def replay_gap_bytes(self) -> Optional[int]:
        """Standby: WAL received but not yet replayed (never negative)."""
        if self.receive_lsn is None or self.replay_lsn is None:
            return None
        return max(0, self.receive_lsn - self.replay_lsn)


# ---------------------------------------------------------------- LSNs


def parse_lsn(text: Optional[str]) -> Optional[int]:
    """'16/B374D848' -> byte position; None stays None."""
    if text is None:
        return None
    high, low = str(text).split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(value: Optional[int]) -> Optional[str]:
    """Byte position -> PostgreSQL's 'X/Y' form."""
    if value is None:
        return None
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


# ---------------------------------------------------------------- the query


def _age(expr: str) -> str:
    return f"extract(epoch FROM clock_timestamp() - {expr})::float8"


#: First server_version_num with each feature this probe uses (checked against each
#: version's documentation and against real servers, see README "PostgreSQL versions").
WAL_NAMES = 100000  # pg_current_wal_lsn() & co., pg_stat_replication.*_lsn (9.x: xlog/location)
WALRECEIVER_VIEW = 90600  # pg_stat_wal_receiver (9.5 has no view of its WAL receiver)
SENDER_HOST = 110000  # pg_stat_wal_receiver.sender_host/sender_port
WRITTEN_FLUSHED = 130000  # pg_stat_wal_receiver.written_lsn/flushed_lsn (was received_lsn)
REPLY_TIME = 120000  # pg_stat_replication.reply_time
PAUSE_STATE = 140000  # pg_get_wal_replay_pause_state()
BACKEND_TYPE = 100000  # pg_stat_activity.backend_type
XACT_ID = 130000  # pg_current_xact_id() (txid_current() before; deprecated after)


@dataclass(frozen=True)
class SqlNames:
    """The spelling of each function and column this probe needs, for one server version."""

    current_lsn: str
    insert_lsn: str
    receive_lsn: str
    replay_lsn: str
    paused: str  # an expression giving 'paused' / 'not paused' (/ 'pause requested' on 14+)
    sent: str
    write: str
    flush: str
    replay: str
    reply_time: str
    xact_id: str


def sql_names(server_version: int) -> SqlNames:
    """9.5/9.6 use xlog/location names; 10 renamed them wal/lsn (see the constants above)."""
    if server_version >= WAL_NAMES:
        fn = {"current": "pg_current_wal_lsn()", "insert": "pg_current_wal_insert_lsn()",
              "receive": "pg_last_wal_receive_lsn()", "replay": "pg_last_wal_replay_lsn()",
              "paused": "pg_is_wal_replay_paused()"}
        col = "{}_lsn"
    else:
        fn = {"current": "pg_current_xlog_location()",
              "insert": "pg_current_xlog_insert_location()",
              "receive": "pg_last_xlog_receive_location()",
              "replay": "pg_last_xlog_replay_location()",
              "paused": "pg_is_xlog_replay_paused()"}
        col = "{}_location"
    if server_version >= PAUSE_STATE:
        paused = "pg_get_wal_replay_pause_state()"
    else:
        paused = f"CASE WHEN {fn['paused']} THEN 'paused' ELSE 'not paused' END"
    return SqlNames(
        current_lsn=fn["current"], insert_lsn=fn["insert"], receive_lsn=fn["receive"],
        replay_lsn=fn["replay"], paused=paused,
        sent=col.format("sent"), write=col.format("write"), flush=col.format("flush"),
        replay=col.format("replay"),
        reply_time="reply_time" if server_version >= REPLY_TIME else "NULL::timestamptz",
        xact_id="pg_current_xact_id()" if server_version >= XACT_ID else "txid_current()",
    )


def build_query(server_version: int, with_backups: bool) -> str:
    """The one SELECT for this server version (names and columns differ from 9.5 to 14).

    Recovery-only functions sit behind CASE on pg_is_in_recovery(): on a primary they raise
    ERROR ("recovery is not in progress"), and after a promotion pg_last_* keep returning
    stale values, which must not be read as a standby's state. A column a version lacks is
    a typed NULL, so the row has the same shape on every version.
    """
    n = sql_names(server_version)
    if server_version >= WRITTEN_FLUSHED:
        received, written = "flushed_lsn", "written_lsn"
    else:
        received, written = "received_lsn", "NULL::pg_lsn"
    if server_version >= SENDER_HOST:
        sender = "'sender_host', sender_host, 'sender_port', sender_port,"
    else:
        sender = ""
    walsenders = f"""(SELECT json_agg(json_build_object(
            'pid', pid, 'application_name', application_name,
            'client_addr', host(client_addr), 'state', state,
            'sent_lsn', {n.sent}::text, 'write_lsn', {n.write}::text,
            'flush_lsn', {n.flush}::text, 'replay_lsn', {n.replay}::text,
            'sync_state', sync_state,
            'backend_start', extract(epoch FROM backend_start)::float8,
            'backend_age', {_age('backend_start')},
            'reply_age', {_age(n.reply_time)}) ORDER BY pid)
        FROM pg_stat_replication)"""
    if server_version >= WALRECEIVER_VIEW:
        walreceiver = f"""(SELECT json_agg(json_build_object(
                'pid', pid, 'status', status, {sender}
                'received_lsn', {received}::text, 'written_lsn', {written}::text,
                'latest_end_lsn', latest_end_lsn::text, 'slot_name', slot_name,
                'last_msg_receipt_age', {_age('last_msg_receipt_time')}))
            FROM pg_stat_wal_receiver)"""
    else:
        walreceiver = "NULL::json"
    backend_type = "backend_type" if server_version >= BACKEND_TYPE else "NULL::text"
    if with_backups:
        backups = f"""(SELECT json_agg(json_build_object(
                'pid', pid, 'application_name', application_name,
                'backend_type', {backend_type}, 'client_addr', host(client_addr),
                'started', extract(epoch FROM backend_start)::float8,
                'age', {_age('backend_start')}) ORDER BY pid)
            FROM pg_stat_activity
            WHERE pid <> pg_backend_pid() AND application_name = ANY(%(names)s::text[]))"""
    else:
        backups = "NULL::json"
    return f"""SELECT
        pg_is_in_recovery() AS in_recovery,
        current_setting('server_version_num')::int AS server_version,
        CASE WHEN NOT pg_is_in_recovery() THEN {n.current_lsn}::text END AS current_lsn,
        CASE WHEN pg_is_in_recovery() THEN {n.receive_lsn}::text END AS receive_lsn,
        CASE WHEN pg_is_in_recovery() THEN {n.replay_lsn}::text END AS replay_lsn,
        CASE WHEN pg_is_in_recovery() THEN {n.paused} END AS replay_paused,
        CASE WHEN pg_is_in_recovery()
            THEN {_age('pg_last_xact_replay_timestamp()')} END AS last_replay_age,
        {walsenders} AS walsenders,
        {walreceiver} AS walreceiver,
        {backups} AS backups,
        pg_backend_pid() AS backend_pid,
        {_age('pg_postmaster_start_time()')} AS server_age"""


def build_canary(server_version: int) -> str:
    """The canary: one statement, so in autocommit mode one transaction that takes a
    transaction id and therefore writes a commit record (no table, nothing else written).

    Guarded by pg_is_in_recovery() (a standby never writes; on one the xid functions would
    raise anyway). `synchronous_commit = local` for this transaction only: the commit never
    waits for a synchronous standby, so a standby that is down cannot block it. Returns the
    transaction id and the WAL insert position just before the commit record (a standby
    that has flushed past it has the canary). Works in the probe's read-only session: taking
    a transaction id is not a write.
    """
    n = sql_names(server_version)
    return f"""SELECT
        CASE WHEN NOT pg_is_in_recovery() THEN {n.xact_id}::text END AS xid,
        CASE WHEN NOT pg_is_in_recovery() THEN {n.insert_lsn}::text END AS before_lsn,
        set_config('synchronous_commit', 'local', true) AS synchronous_commit"""


# ---------------------------------------------------------------- /proc (9.5's WAL receiver

#: Bounds on what the /proc lookup reads: bytes per file, processes scanned.
PROC_READ_LIMIT = 4096
PROC_CHILDREN_LIMIT = 65536
PROC_SCAN_LIMIT = 100000
_TITLE_RE = re.compile(
    r"^postgres: (?:.*?: )?(?:wal receiver process|walreceiver)(?:\s+(\S+))?(?:\s+(\S+))?")


def _read_bounded(path: str, limit: int = PROC_READ_LIMIT) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(limit)


def _stat_fields(proc_root: str, pid: int) -> Tuple[str, int]:
    """(state letter, ppid) from /proc/PID/stat; the name in parentheses may hold anything."""
    text = _read_bounded(os.path.join(proc_root, str(pid), "stat")).decode("ascii", "replace")
    rest = text[text.rindex(")") + 1:].split()
    return rest[0], int(rest[1])


def _children(proc_root: str, parent: int) -> List[int]:
    """Child pids of `parent`: the kernel's children list, else a bounded scan of /proc."""
    path = os.path.join(proc_root, str(parent), "task", str(parent), "children")
    try:
        return [int(x) for x in _read_bounded(path, PROC_CHILDREN_LIMIT).split()]
    except (OSError, ValueError):
        pass
    found = []
    with os.scandir(proc_root) as entries:
        for count, entry in enumerate(entries):
            if count >= PROC_SCAN_LIMIT:
                break
            if not entry.name.isdigit():
                continue
            try:
                if _stat_fields(proc_root, int(entry.name))[1] == parent:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile, or not ours to read
    return found


def parse_receiver_title(title: str) -> Optional[Tuple[Optional[str], Optional[int]]]:
    """`postgres: wal receiver process   streaming 0/3000060` -> ("streaming", 0x3000060).

    None when the title is not a WAL receiver's. 9.5 says "wal receiver process", later
    versions "walreceiver" (ClusterLabs resource-agents #1551 dates it to 11); a
    cluster_name adds "NAME: " after "postgres: ".
    """
    match = _TITLE_RE.match(title.strip())
    if match is None:
        return None
    status, lsn_text = match.group(1), match.group(2)
    lsn = None
    if lsn_text and re.match(r"^[0-9A-Fa-f]+/[0-9A-Fa-f]+$", lsn_text):
        lsn = parse_lsn(lsn_text)
    return status, lsn


def find_receiver_process(backend_pid: int, proc_root: str = "/proc") -> ReceiverProcess:
    """The WAL receiver of the server whose backend `backend_pid` is, found by process title.

    Our own backend's parent is the postmaster; the WAL receiver is the postmaster's child
    whose title names it. Every read is bounded; nothing here raises.
    """
    try:
        postmaster = _stat_fields(proc_root, backend_pid)[1]
    except (OSError, ValueError, IndexError) as exc:
        return ReceiverProcess(
            found=False,
            error=f"cannot read the process table ({type(exc).__name__}: {exc}); the "
            "watchdog must run on the database's host with /proc readable")
    try:
        children = _children(proc_root, postmaster)
    except OSError as exc:
        return ReceiverProcess(found=False, error=f"cannot list processes: {exc}")
    for pid in children:
        try:
            raw = _read_bounded(os.path.join(proc_root, str(pid), "cmdline"))
        except OSError:
            continue
        title = raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
        parsed = parse_receiver_title(title)
        if parsed is None:
            continue
        try:
            state: Optional[str] = _stat_fields(proc_root, pid)[0]
        except (OSError, ValueError, IndexError):
            state = None
        return ReceiverProcess(found=True, pid=pid, title=title, status=parsed[0],
                               lsn=parsed[1], state=state)
    return ReceiverProcess(found=False)


# ---------------------------------------------------------------- the worker


def _reason(exc: BaseException) -> str:
    """libpq's message on one line (it spans lines, the second TAB-indented)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):  # a broken connection may complain on close
        conn.close()


def _shutdown_socket(conn: Any) -> None:
    """Wake a worker blocked on `conn`: shut the TCP/unix socket down under it.

    shutdown() acts on the socket itself, so the worker's read returns at once with an
    error; we close only our own dup of the descriptor, never the driver's.
    """
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except Exception:  # no descriptor: fall back to closing the connection
        _close_quietly(conn)
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


#: A standby that shows WAL received but not replayed while its last replayed transaction is
#: at least RESAMPLE_MIN_AGE old is read again RESAMPLE_AFTER later. After an idle stretch,
#: WAL that just arrived (autovacuum, a checkpoint, the next commit) waits a few ms for
#: replay (12 ms measured for 7.7 KiB after 60 s idle), and in that moment the time lag
#: reads the whole idle time. A real lag is still there on the second read.
RESAMPLE_MIN_AGE = 1.0
RESAMPLE_AFTER = 0.25


def _replay_gap_suspect(row: Sequence[Any]) -> bool:
    """First read of a standby: un-replayed WAL, replay not paused, last xact >= 1 s old."""
    in_recovery, _, _, receive, replay, paused, age = row[:7]
    received, replayed = parse_lsn(receive), parse_lsn(replay)
    return (bool(in_recovery) and received is not None and replayed is not None
            and received > replayed and paused in (None, "not paused")
            and age is not None and float(age) >= RESAMPLE_MIN_AGE)


class _Attempt:
    """One connect + query, run in a worker thread; the caller only waits on its events.

    The query runs a second time, `resample_after` seconds later, when the first row is a
    `_replay_gap_suspect` and both reads fit well inside `budget` (the caller's
    query_timeout); a failed second read keeps the first row. Then, still on the open
    connection: a standby without pg_stat_wal_receiver (9.5) has its WAL receiver looked
    up in `proc_root`, and a primary asked for a canary writes it (`answered` is set before
    the canary, so the caller bounds the canary with its own deadline).
    """

    def __init__(self, connect: Callable[..., Any], dsn: str, kwargs: Dict[str, Any],
                 params: Dict[str, Any], with_backups: bool,
                 resample_after: Optional[float] = None, budget: float = 0.0,
                 canary: bool = False, proc_root: Optional[str] = "/proc"):
        self.connect = connect
        self.dsn = dsn
        self.kwargs = kwargs
        self.params = params
        self.with_backups = with_backups
        self.resample_after = resample_after
        self.budget = budget
        self.want_canary = canary
        self.proc_root = proc_root
        self.resampled = False
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.done = threading.Event()
        self.conn: Any = None
        self.abandoned = False
        self.connect_error: Optional[str] = None
        self.query_error: Optional[str] = None
        self.server_version: Optional[int] = None
        self.row: Optional[Sequence[Any]] = None
        self.receiver_process: Optional[ReceiverProcess] = None
        self.canary: Optional[CanaryWrite] = None
        self.canary_started: Optional[float] = None

    def run(self) -> None:
        try:
            conn = self.connect(self.dsn, **self.kwargs)
        except Exception as exc:  # any failure is the snapshot's reason
            with self.lock:
                self.connect_error = _reason(exc)
                self.connected.set()
            self.answered.set()
            self.done.set()
            return
        with self.lock:
            if self.abandoned:  # the caller gave up: just release the connection
                _close_quietly(conn)
                return
            self.conn = conn
            self.connected.set()
        try:
            started = time.monotonic()
            self.server_version = int(conn.info.server_version)
            sql = build_query(self.server_version, self.with_backups)
            params = self.params if self.with_backups else None
            self.row = conn.execute(sql, params).fetchone()
            if self._resample_fits(started):
                time.sleep(self.resample_after or 0.0)
                try:
                    self.row = conn.execute(sql, params).fetchone() or self.row
                    self.resampled = True
                except Exception:
                    pass  # the first read stands
            self._look_up_receiver()
        except Exception as exc:
            self.query_error = _reason(exc)
        self.answered.set()
        try:
            if self.query_error is None and self._canary_allowed():
                self._write_canary(conn)
        finally:
            with self.lock:
                self.conn = None
                _close_quietly(conn)
            self.done.set()

    def _look_up_receiver(self) -> None:
        """9.5: find the WAL receiver by process title while our backend still exists."""
        row = self.row
        if (row is None or self.proc_root is None or not row[0]
                or (self.server_version or 0) >= WALRECEIVER_VIEW):
            return
        backend_pid = row[10] if len(row) > 10 else None
        if backend_pid is None:
            return
        self.receiver_process = find_receiver_process(int(backend_pid), self.proc_root)

    def _canary_allowed(self) -> bool:
        """Only when asked for and this very server just said it is not in recovery."""
        return bool(self.want_canary and self.row is not None and self.row[0] is False)

    def _write_canary(self, conn: Any) -> None:
        self.canary_started = time.monotonic()
        try:
            xid, before, _ = conn.execute(build_canary(self.server_version or 0)).fetchone()
            if xid is None:
                self.canary = CanaryWrite(ok=False, error="the server is in recovery: "
                                          "no canary written", duration=self._canary_time())
            else:
                self.canary = CanaryWrite(ok=True, xid=int(xid), before_lsn=parse_lsn(before),
                                          duration=self._canary_time())
        except Exception as exc:
            self.canary = CanaryWrite(ok=False, error=_reason(exc), duration=self._canary_time())

    def _canary_time(self) -> float:
        return time.monotonic() - (self.canary_started or time.monotonic())

    def _resample_fits(self, started: float) -> bool:
        if self.resample_after is None or self.row is None or not _replay_gap_suspect(self.row):
            return False
        spent = time.monotonic() - started
        return 2 * spent + self.resample_after < self.budget / 2

    def abandon(self) -> bool:
        """Give up on a connect still in progress; False if it has finished meanwhile."""
        with self.lock:
            if self.connected.is_set():
                return False
            self.abandoned = True
            return True

    def interrupt(self) -> None:
        with self.lock:
            if self.conn is not None:
                _shutdown_socket(self.conn)


def _default_connect(dsn: str, **kwargs: Any) -> Any:
    import psycopg  # ~0.1 s once; only the daemon and tests pay it

    return psycopg.connect(dsn, **kwargs)


def _connect_kwargs(cfg: PostgresConfig) -> Dict[str, Any]:
    """Our session settings, merged into (not replacing) any `options` of the DSN."""
    options = ""
    if cfg.dsn.strip():
        from psycopg.conninfo import conninfo_to_dict

        options = str(conninfo_to_dict(cfg.dsn).get("options") or "")
    statement_ms = max(1, int(cfg.query_timeout * 1000))
    ours = f"-c statement_timeout={statement_ms} -c default_transaction_read_only=on"
    return {
        # libpq's own timeout only ends an abandoned attempt; the caller's wait is ours.
        "connect_timeout": max(2, int(math.ceil(cfg.connect_timeout))),
        "fallback_application_name": APPLICATION_NAME,
        "options": (options + " " + ours).strip(),
        "autocommit": True,
    }


# ---------------------------------------------------------------- the probe


def _timing(clock: Callable[[], float], start: float) -> Dict[str, float]:
    now = clock()
    return {"duration": now - start, "taken_at": now}


def _scrub_errors(probe: Callable[..., PgSnapshot]) -> Callable[..., PgSnapshot]:
    """Every error text leaving the probe is scrubbed of the DSN's secrets.

    libpq quotes pieces of a malformed DSN in its messages (`invalid percent-encoded
    token: "S3CRET%pw"`), and these texts reach alerts, `--once` and engine.json; an
    unexpected exception becomes a (scrubbed) reason too, never a traceback.
    """

    def wrapper(cfg: PostgresConfig, *args: Any, **kwargs: Any) -> PgSnapshot:
        try:
            snapshot = probe(cfg, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises"
            snapshot = PgSnapshot(reachable=False, error=f"probe failed: {_reason(exc)}")
        if snapshot.error:
            snapshot = dataclasses.replace(snapshot, error=scrub_dsn(snapshot.error, cfg.dsn))
        if snapshot.canary is not None and snapshot.canary.error:
            canary = dataclasses.replace(snapshot.canary,
                                         error=scrub_dsn(snapshot.canary.error, cfg.dsn))
            snapshot = dataclasses.replace(snapshot, canary=canary)
        return snapshot

    wrapper.__name__ = probe.__name__
    wrapper.__doc__ = probe.__doc__
    return wrapper


@_scrub_errors
def probe_postgres(
    cfg: PostgresConfig,
    backup_cfg: Optional[BackupConfig] = None,
    connect: Optional[Callable[..., Any]] = None,
    clock: Callable[[], float] = time.monotonic,
    resample_after: Optional[float] = RESAMPLE_AFTER,
    canary: Optional[CanaryConfig] = None,
    proc_root: Optional[str] = "/proc",
) -> PgSnapshot:
    """Snapshot of the local PostgreSQL; returns within connect_timeout + query_timeout
    (+ canary.timeout when a canary is written).

    `connect(dsn, **kwargs)` must return a psycopg-like connection (`execute`, `info`,
    `fileno`, `close`); the default is psycopg.connect. `backup_cfg` names the backup
    applications (default: BackupConfig()); with `detect = false` no backups are collected.
    `resample_after=None` never reads a standby twice (see RESAMPLE_AFTER). `canary`: write
    the canary (build_canary) if this server turns out not to be in recovery; the caller
    asks only on the node DRBD says is primary. `proc_root`: where a 9.5 standby's WAL
    receiver is looked up (None: not at all).
    """
    start = clock()
    backup_cfg = backup_cfg if backup_cfg is not None else BackupConfig()
    with_backups = bool(backup_cfg.detect and backup_cfg.application_names)
    try:
        kwargs = _connect_kwargs(cfg)
    except ImportError as exc:
        return PgSnapshot(reachable=False, error=f"psycopg not available: {exc}",
                          **_timing(clock, start))
    except Exception as exc:  # a malformed DSN is a reason, not a crash
        return PgSnapshot(reachable=False, error=f"invalid dsn: {_reason(exc)}",
                          **_timing(clock, start))
    want_canary = canary is not None and canary.enabled
    attempt = _Attempt(connect or _default_connect, cfg.dsn, kwargs,
                       {"names": list(backup_cfg.application_names)}, with_backups,
                       resample_after, cfg.query_timeout, want_canary, proc_root)
    worker = threading.Thread(target=attempt.run, name="ha-watchdog-postgres", daemon=True)
    worker.start()

    if not attempt.connected.wait(cfg.connect_timeout) and attempt.abandon():
        return PgSnapshot(
            reachable=False,
            error=f"no answer within connect_timeout {format_duration(cfg.connect_timeout)}"
            " (server frozen or overloaded?)",
            **_timing(clock, start),
        )
    if attempt.connect_error is not None:
        return PgSnapshot(reachable=False, error=attempt.connect_error,
                          **_timing(clock, start))

    if not attempt.answered.wait(cfg.query_timeout):
        attempt.interrupt()
        return PgSnapshot(
            reachable=True,
            error=f"connected, but no answer within query_timeout "
            f"{format_duration(cfg.query_timeout)} (connection shut down)",
            server_version=attempt.server_version,
            **_timing(clock, start),
        )
    if attempt.query_error is not None or attempt.row is None:
        return PgSnapshot(
            reachable=True,
            error=f"query failed: {attempt.query_error or 'no row'}",
            server_version=attempt.server_version,
            **_timing(clock, start),
        )
    answered_at = clock()  # taken_at: what track() compares across cycles
    written: Optional[CanaryWrite] = None
    if want_canary and attempt.row[0] is False:
        assert canary is not None
        if attempt.done.wait(canary.timeout):
            written = attempt.canary
        else:
            attempt.interrupt()  # one attempt per cycle, never a retry loop
            written = CanaryWrite(
                ok=False, duration=canary.timeout,
                error=f"no answer within [canary] timeout {format_duration(canary.timeout)} "
                "(connection shut down)")
    snapshot = _snapshot_from_row(attempt.row, backup_cfg, answered_at - start, attempt.resampled)
    return dataclasses.replace(snapshot, receiver_process=attempt.receiver_process,
                               canary=written, taken_at=answered_at)


def _json(value: Any) -> List[Dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        value = json.loads(value)
    return list(value)


def _num(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def _snapshot_from_row(row: Sequence[Any], backup_cfg: BackupConfig, duration: float,
                       resampled: bool = False) -> PgSnapshot:
    (in_recovery, version, current, receive, replay, paused, last_replay_age,
     senders_json, receiver_json, backups_json) = row[:10]
    server_age = row[11] if len(row) > 11 else None
    current_lsn = parse_lsn(current)
    names = set(backup_cfg.application_names)

    walsenders = []
    for item in _json(senders_json):
        replay_lsn = parse_lsn(item.get("replay_lsn"))
        lag = None
        if current_lsn is not None and replay_lsn is not None:
            lag = max(0, current_lsn - replay_lsn)
        walsenders.append(WalSender(
            pid=item.get("pid"),
            application_name=item.get("application_name"),
            client_addr=item.get("client_addr"),
            state=item.get("state"),
            sent_lsn=parse_lsn(item.get("sent_lsn")),
            write_lsn=parse_lsn(item.get("write_lsn")),
            flush_lsn=parse_lsn(item.get("flush_lsn")),
            replay_lsn=replay_lsn,
            reply_age=_num(item.get("reply_age")),
            replay_lag_bytes=lag,
            sync_state=item.get("sync_state"),
            backend_start=_num(item.get("backend_start")),
            backend_age=_num(item.get("backend_age")),
            is_backup=item.get("state") == "backup" or item.get("application_name") in names,
        ))

    receivers = _json(receiver_json)
    walreceiver = None
    if receivers:
        item = receivers[0]
        walreceiver = WalReceiver(
            pid=item.get("pid"),
            status=item.get("status"),
            sender_host=item.get("sender_host"),
            sender_port=item.get("sender_port"),
            received_lsn=parse_lsn(item.get("received_lsn")),
            written_lsn=parse_lsn(item.get("written_lsn")),
            latest_end_lsn=parse_lsn(item.get("latest_end_lsn")),
            last_msg_receipt_age=_num(item.get("last_msg_receipt_age")),
            slot_name=item.get("slot_name"),
        )

    backups: Dict[int, BackupSession] = {}
    for item in _json(backups_json):
        kind = WALSENDER if item.get("backend_type") == "walsender" else SESSION
        backups[item["pid"]] = BackupSession(
            pid=item["pid"], application_name=item.get("application_name"),
            age=_num(item.get("age")), kind=kind, started=_num(item.get("started")),
            client_addr=item.get("client_addr"),
        )
    if backup_cfg.detect:
        for sender in walsenders:
            if sender.state == "backup" and sender.pid is not None and sender.pid not in backups:
                backups[sender.pid] = BackupSession(
                    pid=sender.pid, application_name=sender.application_name,
                    age=sender.backend_age, kind=WALSENDER, started=sender.backend_start,
                    client_addr=sender.client_addr,
                )

    return PgSnapshot(
        reachable=True,
        error=None,
        in_recovery=bool(in_recovery),
        server_version=int(version),
        current_lsn=current_lsn,
        walsenders=tuple(walsenders),
        receive_lsn=parse_lsn(receive),
        replay_lsn=parse_lsn(replay),
        replay_paused=paused,
        last_replay_age=_num(last_replay_age),
        walreceiver=walreceiver,
        backups=tuple(sorted(backups.values(), key=lambda b: b.pid)),
        duration=duration,
        resampled=resampled,
        server_age=_num(server_age),
    )


def _pending_at(snapshot: PgSnapshot) -> Optional[int]:
    """The furthest WAL position known to exist on the primary when `snapshot` was taken:
    its current LSN, or just past the canary it wrote right after (the commit record)."""
    positions = [] if snapshot.current_lsn is None else [snapshot.current_lsn]
    if snapshot.canary is not None and snapshot.canary.ok and snapshot.canary.before_lsn:
        positions.append(snapshot.canary.before_lsn + 1)
    return max(positions) if positions else None


def track(current: PgSnapshot, previous: Optional[PgSnapshot]) -> PgSnapshot:
    """`current` with what only a comparison with the previous cycle shows (pure).

    For each walsender (matched by pid: a reconnected standby starts afresh) on a primary:
    did the standby's flush position move since the previous look, and if not, since when
    has WAL beyond it been waiting (`flush_waiting_since`, on the probe's clock). This is
    the evidence of life on servers without pg_stat_replication.reply_time (before 12):
    a standby whose flush position stays put while the primary's WAL moves on is stalled.
    The previous snapshot carries its own waiting times, so the memory spans any number of
    cycles, however they are spaced.
    """
    if current.tracked or not current.answered or current.in_recovery:
        return current
    if (previous is None or not previous.answered or previous.in_recovery
            or current.taken_at is None or previous.taken_at is None):
        return dataclasses.replace(current, tracked=True)
    before = {w.pid: w for w in previous.walsenders if w.pid is not None}
    pending_then = _pending_at(previous)
    senders = []
    for sender in current.walsenders:
        old = before.get(sender.pid)
        if old is None or sender.flush_lsn is None or old.flush_lsn is None:
            senders.append(sender)
            continue
        if sender.flush_lsn != old.flush_lsn:
            senders.append(dataclasses.replace(sender, flush_moved=True))
            continue
        since: Optional[float] = None
        if old.flush_waiting_since is not None:
            since = old.flush_waiting_since
        elif pending_then is not None and pending_then > sender.flush_lsn:
            since = previous.taken_at  # it was there a whole cycle ago
        elif current.current_lsn is not None and current.current_lsn > sender.flush_lsn:
            since = current.taken_at  # arrived since: when exactly is unknown, so now
        senders.append(dataclasses.replace(sender, flush_moved=False, flush_waiting_since=since))
    return dataclasses.replace(current, walsenders=tuple(senders), tracked=True)


def snapshot_details(snapshot: PgSnapshot) -> Dict[str, Any]:
    """The common, JSON-serialisable facts every PostgreSQL check puts in its details."""
    out: Dict[str, Any] = {
        "reachable": snapshot.reachable,
        "in_recovery": snapshot.in_recovery,
        "server_version": snapshot.server_version,
        "probe_seconds": round(snapshot.duration, 3),
    }
    if snapshot.error:
        out["error"] = snapshot.error
    return out


__all__ = [
    "BackupSession",
    "CanaryWrite",
    "ReceiverProcess",
    "build_canary",
    "find_receiver_process",
    "parse_receiver_title",
    "sql_names",
    "track",
    "PgSnapshot",
    "WalReceiver",
    "WalSender",
    "build_query",
    "format_lsn",
    "parse_lsn",
    "probe_postgres",
    "snapshot_details",
]
