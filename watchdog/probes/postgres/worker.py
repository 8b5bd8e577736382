"""The database work of one probe, in a worker thread the caller only waits on: connect,
query (a suspect standby read twice), the 9.5 /proc lookup and the canary; and the ways
the caller stops waiting (abandon, shut the socket down)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, Optional, Sequence

from watchdog.config import PostgresConfig
from watchdog.probes.postgres.model import (
    APPLICATION_NAME,
    CanaryWrite,
    ReceiverProcess,
    WalFacts,
    parse_lsn,
)
from watchdog.probes.postgres.proc import find_receiver_process
from watchdog.probes.postgres.sql import (
    build_canary,
    build_query,
    build_wal_queries,
    wal_facts_from_row,
)
from watchdog.probes.postgres.versions import WALRECEIVER_VIEW

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
    up in `proc_root`. `answered` is set then: the other checks' facts are in hand. After
    it, each with its own event so the caller bounds it with its own deadline: a primary
    asked for a canary writes it (`canary_done`), then a primary (`wal`) has the `wal`
    check's facts read (`wal_done`: slots, archiver, WAL directory in three small
    statements; a listing that hangs costs only those facts).
    """

    def __init__(self, connect: Callable[..., Any], dsn: str, kwargs: Dict[str, Any],
                 params: Dict[str, Any], with_backups: bool,
                 resample_after: Optional[float] = None, budget: float = 0.0,
                 canary: bool = False, proc_root: Optional[str] = "/proc",
                 wal: bool = False):
        self.connect = connect
        self.dsn = dsn
        self.kwargs = kwargs
        self.params = params
        self.with_backups = with_backups
        self.resample_after = resample_after
        self.budget = budget
        self.want_canary = canary
        self.proc_root = proc_root
        self.want_wal = wal
        self.wal: Optional[WalFacts] = None
        self.resampled = False
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.canary_done = threading.Event()
        self.wal_done = threading.Event()
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
            self.canary_done.set()
            self.wal_done.set()
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
            try:
                if self.query_error is None and self._canary_allowed():
                    self._write_canary(conn)
            finally:
                self.canary_done.set()
            try:
                if self.query_error is None:
                    self._read_wal(conn)
            finally:
                self.wal_done.set()
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

    def _read_wal(self, conn: Any) -> None:
        """Primary only (this server just said it is not in recovery): the `wal` facts.
        Each statement's failure is data (its reason), never the probe's failure."""
        if not self.want_wal or self.row is None or self.row[0] is not False:
            return
        queries = build_wal_queries(self.server_version or 0)
        try:
            facts = wal_facts_from_row(conn.execute(queries.facts).fetchone())
        except Exception as exc:
            self.wal = WalFacts(error=_reason(exc))
            return
        parts: Dict[str, Any] = {}
        try:
            files, size = conn.execute(queries.waldir).fetchone()
            parts.update(waldir_files=int(files), waldir_bytes=int(size or 0))
        except Exception as exc:
            parts["waldir_error"] = _reason(exc)
        if facts.archiving:
            try:
                count, oldest = conn.execute(queries.ready).fetchone()
                parts.update(ready_count=int(count),
                             oldest_ready_age=None if oldest is None else float(oldest))
            except Exception as exc:
                parts["ready_error"] = _reason(exc)
        self.wal = dataclasses.replace(facts, **parts)

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
