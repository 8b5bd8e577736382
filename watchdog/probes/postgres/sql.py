"""The one query, built for the server's version (names and views moved between 9.5 and
18), the canary write, and the row the query returns read back into a snapshot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from watchdog.config import BackupConfig
from watchdog.probes.postgres.model import (
    SESSION,
    WALSENDER,
    Archiver,
    BackupSession,
    PgSnapshot,
    WalFacts,
    WalReceiver,
    WalSender,
    WalSlot,
    parse_lsn,
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

# ---------------------------------------------------------------- the query


def _age(expr: str) -> str:
    return f"extract(epoch FROM clock_timestamp() - {expr})::float8"


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


# ---------------------------------------------------------------- the WAL facts


@dataclass(frozen=True)
class WalQueries:
    """The `wal` check's statements for one server version (primary only).

    `facts` (slots, archiver, settings) needs no privilege; `waldir` and `ready` list
    directories, which needs pg_monitor (10+: pg_ls_waldir, 12+: pg_ls_archive_statusdir)
    or a superuser (pg_ls_dir before), so each runs alone: a refusal costs only its part.
    All three aggregate on the server: one row each, however many files pg_wal holds.
    """

    facts: str
    waldir: str
    ready: str


#: At most this many slots are read, those holding the most WAL (the oldest restart_lsn):
#: the read stays bounded on a server with max_replication_slots in the thousands.
SLOT_LIMIT = 100


def build_wal_queries(server_version: int) -> WalQueries:
    n = sql_names(server_version)
    if server_version >= WAL_NAMES:
        diff, walfile, waldir = "pg_wal_lsn_diff", "pg_walfile_name", "pg_wal"
    else:
        diff, walfile, waldir = "pg_xlog_location_diff", "pg_xlogfile_name", "pg_xlog"
    if server_version >= SLOT_WAL_STATUS:
        wal_status, safe = "wal_status", "safe_wal_size"
    else:
        wal_status, safe = "NULL::text", "NULL::bigint"
    inactive = (_age("inactive_since") if server_version >= SLOT_INACTIVE_SINCE
                else "NULL::float8")
    # With archive_mode off the setting reads '(disabled)' (its show hook), whatever it is.
    target = ("(SELECT setting NOT IN ('', '(disabled)') FROM pg_settings "
              "WHERE name = 'archive_command')")
    if server_version >= ARCHIVE_LIBRARY:
        # A hidden setting (no pg_read_all_settings) gives NULL, not false.
        target = (f"({target} OR (SELECT setting <> '' FROM pg_settings "
                  "WHERE name = 'archive_library'))")
    current = n.current_lsn
    facts = f"""SELECT
        current_setting('archive_mode') AS archive_mode,
        {target} AS archive_command_set,
        CASE WHEN NOT pg_is_in_recovery() THEN {walfile}({current}) END AS current_walfile,
        (SELECT json_build_object(
            'archived_count', archived_count, 'last_archived_wal', last_archived_wal,
            'last_archived_age', {_age('last_archived_time')},
            'failed_count', failed_count, 'last_failed_wal', last_failed_wal,
            'last_failed_age', {_age('last_failed_time')},
            'stats_reset_age', {_age('stats_reset')})
         FROM pg_stat_archiver) AS archiver,
        (SELECT json_agg(json_build_object(
            'name', slot_name, 'slot_type', slot_type, 'database', database,
            'active', active, 'active_pid', active_pid, 'restart_lsn', restart_lsn::text,
            'retained_bytes', CASE WHEN NOT pg_is_in_recovery()
                THEN {diff}({current}, restart_lsn)::float8 END,
            'wal_status', {wal_status}, 'safe_wal_size', {safe},
            'inactive_age', {inactive}) ORDER BY slot_name)
         FROM (SELECT * FROM pg_replication_slots ORDER BY restart_lsn NULLS LAST, slot_name
               LIMIT {SLOT_LIMIT}) AS s) AS slots,
        (SELECT count(*) FROM pg_replication_slots) AS slot_count"""
    if server_version >= WALDIR_FUNCTION:
        waldir_sql = "SELECT count(*), sum(size)::float8 FROM pg_ls_waldir()"
    else:
        waldir_sql = (f"SELECT count(*), sum(s.size)::float8 FROM pg_ls_dir('{waldir}') AS f, "
                      f"LATERAL pg_stat_file('{waldir}/' || f, true) AS s WHERE NOT s.isdir")
    if server_version >= ARCHIVE_STATUSDIR:
        ready_sql = (f"SELECT count(*), {_age('min(modification)')} "
                     "FROM pg_ls_archive_statusdir() WHERE right(name, 6) = '.ready'")
    else:
        status = f"{waldir}/archive_status"
        ready_sql = (f"SELECT count(*), {_age('min(s.modification)')} "
                     f"FROM pg_ls_dir('{status}') AS f, "
                     f"LATERAL pg_stat_file('{status}/' || f, true) AS s "
                     "WHERE right(f, 6) = '.ready' AND s.modification IS NOT NULL")
    return WalQueries(facts=facts, waldir=waldir_sql, ready=ready_sql)


def _int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


def wal_facts_from_row(row: Sequence[Any]) -> WalFacts:
    """The `facts` row read back (the directory parts are added by the worker)."""
    mode, command_set, walfile, archiver_json, slots_json = row[:5]
    slot_count = row[5] if len(row) > 5 else None
    archiver = None
    a = json.loads(archiver_json) if isinstance(archiver_json, (str, bytes)) else archiver_json
    if isinstance(a, dict):
        archiver = Archiver(
            archived_count=_int(a.get("archived_count")),
            last_archived_wal=a.get("last_archived_wal"),
            last_archived_age=_num(a.get("last_archived_age")),
            failed_count=_int(a.get("failed_count")),
            last_failed_wal=a.get("last_failed_wal"),
            last_failed_age=_num(a.get("last_failed_age")),
            stats_reset_age=_num(a.get("stats_reset_age")),
        )
    slots = []
    for item in _json(slots_json):
        retained = item.get("retained_bytes")
        slots.append(WalSlot(
            name=str(item.get("name")),
            slot_type=item.get("slot_type"),
            database=item.get("database"),
            active=item.get("active"),
            active_pid=item.get("active_pid"),
            restart_lsn=parse_lsn(item.get("restart_lsn")),
            retained_bytes=None if retained is None else max(0, int(retained)),
            wal_status=item.get("wal_status"),
            safe_wal_size=_int(item.get("safe_wal_size")),
            inactive_age=_num(item.get("inactive_age")),
        ))
    return WalFacts(
        archive_mode=None if mode is None else str(mode),
        archive_command_set=None if command_set is None else bool(command_set),
        current_walfile=walfile,
        archiver=archiver,
        slots=tuple(slots),
        slot_count=len(slots) if slot_count is None else int(slot_count),
    )


# ---------------------------------------------------------------- the row


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
