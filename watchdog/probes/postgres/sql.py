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
    BackupSession,
    PgSnapshot,
    WalReceiver,
    WalSender,
    parse_lsn,
)
from watchdog.probes.postgres.versions import (
    BACKEND_TYPE,
    PAUSE_STATE,
    REPLY_TIME,
    SENDER_HOST,
    WAL_NAMES,
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
