"""Which server_version_num brought each name or view the probe uses (9.5 to 18)."""

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
# The `wal` check's facts (primary only; see sql.build_wal_queries):
WALDIR_FUNCTION = 100000  # pg_ls_waldir() (pg_monitor); before: pg_ls_dir('pg_xlog') (superuser)
ARCHIVE_STATUSDIR = 120000  # pg_ls_archive_statusdir() (pg_monitor); before: pg_ls_dir
SLOT_WAL_STATUS = 130000  # pg_replication_slots.wal_status, safe_wal_size
ARCHIVE_LIBRARY = 150000  # archive_library (an alternative to archive_command)
SLOT_INACTIVE_SINCE = 170000  # pg_replication_slots.inactive_since
