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
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from watchdog.config import BackupConfig, PostgresConfig
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


def build_query(server_version: int, with_backups: bool) -> str:
    """The one SELECT for this server version (columns differ between 12, 13 and 14).

    Recovery-only functions sit behind CASE on pg_is_in_recovery(): on a primary they raise
    ERROR ("recovery is not in progress"), and after a promotion pg_last_* keep returning
    stale values, which must not be read as a standby's state.
    """
    if server_version >= 140000:
        pause = "pg_get_wal_replay_pause_state()"
    else:
        pause = "CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END"
    reply_time = "reply_time" if server_version >= 120000 else "NULL::timestamptz"
    if server_version >= 130000:
        received, written = "flushed_lsn", "written_lsn"
    else:
        received, written = "received_lsn", "NULL::pg_lsn"
    if server_version >= 110000:
        sender = "'sender_host', sender_host, 'sender_port', sender_port,"
    else:
        sender = ""
    walsenders = f"""(SELECT json_agg(json_build_object(
            'pid', pid, 'application_name', application_name,
            'client_addr', host(client_addr), 'state', state,
            'sent_lsn', sent_lsn::text, 'write_lsn', write_lsn::text,
            'flush_lsn', flush_lsn::text, 'replay_lsn', replay_lsn::text,
            'sync_state', sync_state,
            'backend_start', extract(epoch FROM backend_start)::float8,
            'backend_age', {_age('backend_start')},
            'reply_age', {_age(reply_time)}) ORDER BY pid)
        FROM pg_stat_replication)"""
    walreceiver = f"""(SELECT json_agg(json_build_object(
            'pid', pid, 'status', status, {sender}
            'received_lsn', {received}::text, 'written_lsn', {written}::text,
            'latest_end_lsn', latest_end_lsn::text, 'slot_name', slot_name,
            'last_msg_receipt_age', {_age('last_msg_receipt_time')}))
        FROM pg_stat_wal_receiver)"""
    if with_backups:
        backups = f"""(SELECT json_agg(json_build_object(
                'pid', pid, 'application_name', application_name,
                'backend_type', backend_type, 'client_addr', host(client_addr),
                'started', extract(epoch FROM backend_start)::float8,
                'age', {_age('backend_start')}) ORDER BY pid)
            FROM pg_stat_activity
            WHERE pid <> pg_backend_pid() AND application_name = ANY(%(names)s::text[]))"""
    else:
        backups = "NULL::json"
    return f"""SELECT
        pg_is_in_recovery() AS in_recovery,
        current_setting('server_version_num')::int AS server_version,
        CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_lsn()::text END AS current_lsn,
        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()::text END AS receive_lsn,
        CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END AS replay_lsn,
        CASE WHEN pg_is_in_recovery() THEN {pause} END AS replay_paused,
        CASE WHEN pg_is_in_recovery()
            THEN {_age('pg_last_xact_replay_timestamp()')} END AS last_replay_age,
        {walsenders} AS walsenders,
        {walreceiver} AS walreceiver,
        {backups} AS backups"""


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
    query_timeout); a failed second read keeps the first row.
    """

    def __init__(self, connect: Callable[..., Any], dsn: str, kwargs: Dict[str, Any],
                 params: Dict[str, Any], with_backups: bool,
                 resample_after: Optional[float] = None, budget: float = 0.0):
        self.connect = connect
        self.dsn = dsn
        self.kwargs = kwargs
        self.params = params
        self.with_backups = with_backups
        self.resample_after = resample_after
        self.budget = budget
        self.resampled = False
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.done = threading.Event()
        self.conn: Any = None
        self.abandoned = False
        self.connect_error: Optional[str] = None
        self.query_error: Optional[str] = None
        self.server_version: Optional[int] = None
        self.row: Optional[Sequence[Any]] = None

    def run(self) -> None:
        try:
            conn = self.connect(self.dsn, **self.kwargs)
        except Exception as exc:  # any failure is the snapshot's reason
            with self.lock:
                self.connect_error = _reason(exc)
                self.connected.set()
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
        except Exception as exc:
            self.query_error = _reason(exc)
        finally:
            with self.lock:
                self.conn = None
                _close_quietly(conn)
            self.done.set()

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
) -> PgSnapshot:
    """Snapshot of the local PostgreSQL; returns within connect_timeout + query_timeout.

    `connect(dsn, **kwargs)` must return a psycopg-like connection (`execute`, `info`,
    `fileno`, `close`); the default is psycopg.connect. `backup_cfg` names the backup
    applications (default: BackupConfig()); with `detect = false` no backups are collected.
    `resample_after=None` never reads a standby twice (see RESAMPLE_AFTER).
    """
    start = clock()
    backup_cfg = backup_cfg if backup_cfg is not None else BackupConfig()
    with_backups = bool(backup_cfg.detect and backup_cfg.application_names)
    try:
        kwargs = _connect_kwargs(cfg)
    except ImportError as exc:
        return PgSnapshot(reachable=False, error=f"psycopg not available: {exc}",
                          duration=clock() - start)
    except Exception as exc:  # a malformed DSN is a reason, not a crash
        return PgSnapshot(reachable=False, error=f"invalid dsn: {_reason(exc)}",
                          duration=clock() - start)
    attempt = _Attempt(connect or _default_connect, cfg.dsn, kwargs,
                       {"names": list(backup_cfg.application_names)}, with_backups,
                       resample_after, cfg.query_timeout)
    worker = threading.Thread(target=attempt.run, name="ha-watchdog-postgres", daemon=True)
    worker.start()

    if not attempt.connected.wait(cfg.connect_timeout) and attempt.abandon():
        return PgSnapshot(
            reachable=False,
            error=f"no answer within connect_timeout {format_duration(cfg.connect_timeout)}"
            " (server frozen or overloaded?)",
            duration=clock() - start,
        )
    if attempt.connect_error is not None:
        return PgSnapshot(reachable=False, error=attempt.connect_error, duration=clock() - start)

    if not attempt.done.wait(cfg.query_timeout):
        attempt.interrupt()
        return PgSnapshot(
            reachable=True,
            error=f"connected, but no answer within query_timeout "
            f"{format_duration(cfg.query_timeout)} (connection shut down)",
            server_version=attempt.server_version,
            duration=clock() - start,
        )
    if attempt.query_error is not None or attempt.row is None:
        return PgSnapshot(
            reachable=True,
            error=f"query failed: {attempt.query_error or 'no row'}",
            server_version=attempt.server_version,
            duration=clock() - start,
        )
    return _snapshot_from_row(attempt.row, backup_cfg, clock() - start, attempt.resampled)


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
     senders_json, receiver_json, backups_json) = row
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
    )


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
    "PgSnapshot",
    "WalReceiver",
    "WalSender",
    "build_query",
    "format_lsn",
    "parse_lsn",
    "probe_postgres",
    "snapshot_details",
]
