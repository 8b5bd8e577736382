"""`probe_postgres`: the caller's side of the worker, with the deadlines enforced from
outside the driver (connect_timeout, query_timeout, the canary's timeout)."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable, Dict, Optional

from watchdog.config import BackupConfig, CanaryConfig, PostgresConfig
from watchdog.probes.postgres.model import CanaryWrite, PgSnapshot, WalFacts
from watchdog.probes.postgres.sql import _snapshot_from_row
from watchdog.probes.postgres.worker import (
    RESAMPLE_AFTER,
    _Attempt,
    _connect_kwargs,
    _default_connect,
    _reason,
)
from watchdog.redaction import scrub_dsn
from watchdog.units import format_duration

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
        if snapshot.wal is not None:
            wal = snapshot.wal
            snapshot = dataclasses.replace(snapshot, wal=dataclasses.replace(
                wal, **{key: scrub_dsn(getattr(wal, key), cfg.dsn)
                        for key in ("error", "waldir_error", "ready_error")
                        if getattr(wal, key)}))
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
    wal: bool = True,
) -> PgSnapshot:
    """Snapshot of the local PostgreSQL; returns within connect_timeout + query_timeout
    (+ canary.timeout when a canary is written): the main query and the `wal` statements
    share query_timeout.

    `connect(dsn, **kwargs)` must return a psycopg-like connection (`execute`, `info`,
    `fileno`, `close`); the default is psycopg.connect. `backup_cfg` names the backup
    applications (default: BackupConfig()); with `detect = false` no backups are collected.
    `resample_after=None` never reads a standby twice (see RESAMPLE_AFTER). `canary`: write
    the canary (build_canary) if this server turns out not to be in recovery; the caller
    asks only on the node DRBD says is primary. `proc_root`: where a 9.5 standby's WAL
    receiver is looked up (None: not at all). `wal`: on a server not in recovery, also
    read the `wal` check's facts (replication slots, pg_stat_archiver, WAL directory).
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
                       resample_after, cfg.query_timeout, want_canary, proc_root, wal)
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

    query_start = clock()
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
    cut = False  # the connection was shut down at the canary's deadline
    primary = attempt.row[0] is False
    if want_canary and primary:
        assert canary is not None
        if attempt.canary_done.wait(canary.timeout):
            written = attempt.canary
        else:
            attempt.interrupt()  # one attempt per cycle, never a retry loop
            cut = True
            written = CanaryWrite(
                ok=False, duration=canary.timeout,
                error=f"no answer within [canary] timeout {format_duration(canary.timeout)} "
                "(connection shut down)")
    facts: Optional[WalFacts] = None
    if wal and primary:
        if cut:
            facts = WalFacts(error="not read: the connection was shut down at the "
                             "[canary] timeout")
        else:
            facts = _wal_facts(attempt, cfg, cfg.query_timeout - (answered_at - query_start))
    snapshot = _snapshot_from_row(attempt.row, backup_cfg, answered_at - start, attempt.resampled)
    return dataclasses.replace(snapshot, receiver_process=attempt.receiver_process,
                               canary=written, taken_at=answered_at, wal=facts)


def _wal_facts(attempt: _Attempt, cfg: PostgresConfig, left: float) -> Optional[WalFacts]:
    """The `wal` facts, waited for at most what is `left` of query_timeout (the main
    query's facts are already in hand: a listing that hangs costs only these)."""
    if attempt.wal_done.wait(max(0.0, left)):
        return attempt.wal
    attempt.interrupt()
    return WalFacts(error=f"no answer within query_timeout {format_duration(cfg.query_timeout)}"
                    " (connection shut down)")
