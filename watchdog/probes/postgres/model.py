"""What the PostgreSQL probe returns: the snapshot types, LSN text, and what only a
comparison with the previous cycle shows (`track`, pure)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from watchdog.probes.postgres.versions import REPLY_TIME, WALRECEIVER_VIEW

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
class WalSlot:
    """One row of pg_replication_slots (primary; the `wal` check's facts)."""

    name: str
    slot_type: Optional[str] = None  # physical / logical
    database: Optional[str] = None  # logical slots only
    active: Optional[bool] = None
    active_pid: Optional[int] = None
    restart_lsn: Optional[int] = None  # None: the slot reserves no WAL (yet)
    retained_bytes: Optional[int] = None  # current LSN - restart_lsn: WAL kept for this slot
    wal_status: Optional[str] = None  # 13+: reserved / extended / unreserved / lost
    safe_wal_size: Optional[int] = None  # 13+: bytes until the slot would lose WAL
    inactive_age: Optional[float] = None  # 17+: s since inactive_since (server's clock)
    # Filled in by track() on the probe's clock: since when this slot has been seen
    # inactive (None: active, or first look without an earlier cycle).
    inactive_since: Optional[float] = None


@dataclass(frozen=True)
class Archiver:
    """pg_stat_archiver (ages in seconds on the server's clock; None: never)."""

    archived_count: Optional[int] = None
    last_archived_wal: Optional[str] = None
    last_archived_age: Optional[float] = None
    failed_count: Optional[int] = None
    last_failed_wal: Optional[str] = None
    last_failed_age: Optional[float] = None
    stats_reset_age: Optional[float] = None


@dataclass(frozen=True)
class WalFacts:
    """The primary's WAL retention and archiving (read only when not in recovery).

    `error`: the statement for slots and archiver failed (the rest is then empty). The
    WAL directory size and the archive status files are read by statements of their own
    that need more privilege (pg_monitor 10+, superuser before): each failure is its own
    `*_error`, never the whole snapshot's. The archive command's text is never read (it may
    hold credentials): only whether one is set.
    """

    error: Optional[str] = None
    archive_mode: Optional[str] = None  # off / on / always
    archive_command_set: Optional[bool] = None  # archive_command or archive_library; None: hidden
    current_walfile: Optional[str] = None  # the segment being written
    archiver: Optional[Archiver] = None
    slots: Tuple[WalSlot, ...] = ()  # at most sql.SLOT_LIMIT, those holding the most WAL
    slot_count: Optional[int] = None  # all slots on the server
    waldir_bytes: Optional[int] = None
    waldir_files: Optional[int] = None
    waldir_error: Optional[str] = None
    ready_count: Optional[int] = None  # segments waiting for archive_command (.ready files)
    oldest_ready_age: Optional[float] = None  # s since the oldest of them was ready
    ready_error: Optional[str] = None

    @property
    def archiving(self) -> bool:
        return self.archive_mode in ("on", "always")


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
    wal: Optional[WalFacts] = None  # primary: slots, archiver, WAL directory (the `wal` check)

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


# ---------------------------------------------------------------- across cycles


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
    current = _track_slots(current, previous)
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


def _track_slots(current: PgSnapshot, previous: Optional[PgSnapshot]) -> PgSnapshot:
    """Each inactive slot's `inactive_since` (probe clock): carried from the previous
    cycle's look at the same slot, else the time it was first seen inactive (a lower
    bound: it went inactive since the previous look). None on a first look, unless the
    server tells (17+: inactive_since). Servers before 17 do not say since when."""
    if current.wal is None or not current.wal.slots:
        return current
    prev_wal = previous.wal if previous is not None else None
    before = {s.name: s for s in (prev_wal.slots if prev_wal is not None else ())}
    now = current.taken_at
    slots = []
    for slot in current.wal.slots:
        since: Optional[float] = None
        if slot.active is False and now is not None:
            old = before.get(slot.name)
            if slot.inactive_age is not None:
                since = now - slot.inactive_age
            elif old is not None and old.active is False and old.inactive_since is not None:
                since = old.inactive_since
            elif old is not None and old.active is False and previous is not None:
                since = previous.taken_at  # inactive on the first look already
            elif prev_wal is not None and prev_wal.error is None:
                since = now  # active (or absent) at the previous look: inactive since then
        slots.append(dataclasses.replace(slot, inactive_since=since))
    wal = dataclasses.replace(current.wal, slots=tuple(slots))
    return dataclasses.replace(current, wal=wal)


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
