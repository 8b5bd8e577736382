"""The PostgreSQL probe: one connection, one query, a deadline enforced from outside.

What it collects (everything three checks and the backup logic need, in one round trip):
recovery state and server version; on a primary the current WAL LSN and one row per
walsender (pg_stat_replication); on a standby the receive/replay LSNs, the replay pause
state, the age of the last replayed transaction and the WAL receiver (pg_stat_wal_receiver);
and backup sessions (pg_dump & co. by application_name, walsenders in state `backup`);
on a primary also the `wal` check's facts (replication slots, pg_stat_archiver, the WAL
directory's size and the segments waiting for archiving), by three small statements on
the same connection within the same deadline.

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

One module per job: `model` (the snapshot types, LSNs, `track`), `versions` (which
server version brought which name), `sql` (the query and the canary built for a version,
and the row read back), `proc` (9.5's WAL receiver found in /proc), `worker` (the
database work in its thread) and `probe` (`probe_postgres`, the deadlines). Every public
name is re-exported here: import from `watchdog.probes.postgres`.
"""

from __future__ import annotations

from watchdog.probes.postgres.model import (
    APPLICATION_NAME,
    SESSION,
    WALSENDER,
    Archiver,
    BackupSession,
    CanaryWrite,
    PgSnapshot,
    ReceiverProcess,
    WalFacts,
    WalReceiver,
    WalSender,
    WalSlot,
    format_lsn,
    parse_lsn,
    snapshot_details,
    track,
)
from watchdog.probes.postgres.probe import (
    probe_postgres,
)
from watchdog.probes.postgres.proc import (
    PROC_CHILDREN_LIMIT,
    PROC_READ_LIMIT,
    PROC_SCAN_LIMIT,
    find_receiver_process,
    parse_receiver_title,
)
from watchdog.probes.postgres.sql import (
    SqlNames,
    WalQueries,
    build_canary,
    build_query,
    build_wal_queries,
    sql_names,
    wal_facts_from_row,
)
from watchdog.probes.postgres.versions import (
    ARCHIVE_LIBRARY,
    ARCHIVE_STATUSDIR,
    BACKEND_TYPE,
    PAUSE_STATE,
    REPLY_TIME,
    SENDER_HOST,
    SLOT_INACTIVE_SINCE,
    SLOT_WAL_STATUS,
    WAL_NAMES,
    WALDIR_FUNCTION,
    WALRECEIVER_VIEW,
    WRITTEN_FLUSHED,
    XACT_ID,
)
from watchdog.probes.postgres.worker import (
    RESAMPLE_AFTER,
    RESAMPLE_MIN_AGE,
    _replay_gap_suspect,
)

__all__ = [
    "APPLICATION_NAME",
    "BackupSession",
    "CanaryWrite",
    "PgSnapshot",
    "ReceiverProcess",
    "SESSION",
    "WALSENDER",
    "WalReceiver",
    "WalSender",
    "Archiver",
    "WalFacts",
    "WalSlot",
    "WalQueries",
    "build_wal_queries",
    "wal_facts_from_row",
    "format_lsn",
    "parse_lsn",
    "snapshot_details",
    "track",
    "probe_postgres",
    "PROC_CHILDREN_LIMIT",
    "PROC_READ_LIMIT",
    "PROC_SCAN_LIMIT",
    "find_receiver_process",
    "parse_receiver_title",
    "SqlNames",
    "build_canary",
    "build_query",
    "sql_names",
    "BACKEND_TYPE",
    "PAUSE_STATE",
    "REPLY_TIME",
    "SENDER_HOST",
    "WALRECEIVER_VIEW",
    "WAL_NAMES",
    "WRITTEN_FLUSHED",
    "XACT_ID",
    "ARCHIVE_LIBRARY",
    "ARCHIVE_STATUSDIR",
    "SLOT_INACTIVE_SINCE",
    "SLOT_WAL_STATUS",
    "WALDIR_FUNCTION",
    "RESAMPLE_AFTER",
    "RESAMPLE_MIN_AGE",
    "_replay_gap_suspect",
]
