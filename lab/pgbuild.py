"""How lab.pgcluster builds its pair: initdb, the primary's roles, the standby from a base
backup (pg_basebackup, or a low-level backup for servers without it), the config files,
all as the PostgreSQL OS user. A mixin of PgCluster: it uses the cluster's _run, _wait,
_bin and settings."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
from typing import Any, Dict, Mapping

from lab.pgbase import (
    BASE_SETTINGS,
    REPLICATION_USER,
    SUPERUSER,
    PgClusterError,
    _conf_value,
    _Node,
    _version_settings,
)


class _Building:
    """PgCluster's setup steps."""

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
        # -N is --no-sync (10+) and --nosync (9.x) alike.
        self._run([self._bin("initdb"), "-D", node.datadir, "-N", "-A", "trust",
                   "-U", SUPERUSER, "-E", "UTF8", "--locale=C"], timeout=max(self.timeout, 60))
        settings = dict(BASE_SETTINGS)
        settings.update(_version_settings(self.server_version_num))
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
            # No autovacuum on it: an autoanalyze after a test's writes commits, and a commit
            # during an "idle primary" test voids its premise (the naive lag must grow).
            "CREATE TABLE lab_writes (id bigserial PRIMARY KEY, payload text,"
            " at timestamptz NOT NULL DEFAULT now()) WITH (autovacuum_enabled = off)",
        )

    def _make_standby(self, node: _Node, source: _Node) -> None:
        conninfo = (f"host=127.0.0.1 port={source.port} user={REPLICATION_USER} "
                    f"application_name={self.application_name}")
        if os.path.exists(self._bin("pg_basebackup")):
            modern = self.server_version_num >= 100000
            # 9.5's `-X stream` waits ~10 s for its WAL stream to end: fetch the WAL there.
            wal = ["-X", "stream", "--no-sync"] if modern else ["-X", "fetch"]
            self._run([self._bin("pg_basebackup"), "-D", node.datadir, *wal, "-c", "fast",
                       "-d", conninfo], timeout=max(self.timeout, 60))
        else:
            self._low_level_backup(node, source)
        settings: Dict[str, Any] = dict(self.standby_settings)
        settings["port"] = node.port
        recovery = {"primary_conninfo": conninfo, "recovery_target_timeline": "latest"}
        if self.server_version_num >= 120000:
            settings.update(recovery)
            self._write_owned(os.path.join(node.datadir, "standby.signal"), "")
        else:
            recovery["standby_mode"] = "on"
            self._write_owned(os.path.join(node.datadir, "recovery.conf"),
                              "".join(f"{k} = {_conf_value(v)}\n" for k, v in recovery.items()))
        self._append_conf(os.path.join(node.datadir, "postgresql.conf"), settings)

    def _low_level_backup(self, node: _Node, source: _Node) -> None:
        """A base backup without pg_basebackup (the npm builds ship none): start a backup on
        `source`, copy its data directory (no WAL: the standby streams it), stop the backup
        and write its backup_label into the copy. Non-exclusive from 9.6, exclusive on 9.5.
        """
        import psycopg

        version = self.server_version_num
        dsn = f"host=127.0.0.1 port={source.port} user={SUPERUSER} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            if version >= 150000:
                conn.execute("SELECT pg_backup_start('ha-watchdog-lab', true)")
            elif version >= 90600:
                conn.execute("SELECT pg_start_backup('ha-watchdog-lab', true, false)")
            else:
                conn.execute("SELECT pg_start_backup('ha-watchdog-lab', true)")
            try:
                self._copy_datadir(source.datadir, node.datadir)
            finally:
                if version >= 150000:
                    row = conn.execute("SELECT labelfile FROM pg_backup_stop(false)").fetchone()
                elif version >= 90600:
                    row = conn.execute(
                        "SELECT labelfile FROM pg_stop_backup(false, false)").fetchone()
                else:
                    conn.execute("SELECT pg_stop_backup()")
                    row = None  # the exclusive backup_label was copied with the files
        if row is not None:
            self._write_owned(os.path.join(node.datadir, "backup_label"), row[0])

    def _copy_datadir(self, source: str, target: str) -> None:
        """Copy a running server's data directory: skip WAL, pid files and vanished files."""
        skip_contents = {"pg_wal", "pg_xlog", "pg_replslot", "pg_stat_tmp", "pg_dynshmem",
                         "pg_notify", "pg_serial", "pg_snapshots", "pg_subtrans"}
        skip_files = {"postmaster.pid", "postmaster.opts"}
        owner = pwd.getpwnam(self.os_user) if os.geteuid() == 0 else None
        for dirpath, _dirnames, filenames in os.walk(source):
            rel = os.path.relpath(dirpath, source)
            dest = target if rel == "." else os.path.join(target, rel)
            os.makedirs(dest, mode=0o700, exist_ok=True)
            os.chmod(dest, 0o700)
            if owner is not None:
                os.chown(dest, owner.pw_uid, owner.pw_gid)
            if rel.split(os.sep)[0] in skip_contents:
                continue
            for name in filenames:
                if rel == "." and name in skip_files:
                    continue
                src = os.path.join(dirpath, name)
                try:
                    mode = os.lstat(src).st_mode
                    if not stat.S_ISREG(mode):
                        continue
                    shutil.copyfile(src, os.path.join(dest, name))
                except OSError as exc:
                    if exc.errno == errno.ENOENT:  # a temp file the server removed meanwhile
                        continue
                    raise
                os.chmod(os.path.join(dest, name), 0o600)
                if owner is not None:
                    os.chown(os.path.join(dest, name), owner.pw_uid, owner.pw_gid)

    def _write_owned(self, path: str, text: str) -> None:
        """Write a file in a data directory, owned by the servers' OS user."""
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o600)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _append_conf(self, path: str, settings: Mapping[str, Any]) -> None:
        lines = [f"{key} = {_conf_value(value)}\n" for key, value in settings.items()]
        with open(path, "a") as handle:  # appending keeps the file's owner
            handle.write("\n# ha-watchdog lab\n" + "".join(lines))

    def _pg_ctl_start(self, node: _Node) -> None:
        try:
            # Its own session: run_command kills what is left in the command's process
            # group, and before 12 pg_ctl leaves the postmaster in its group.
            self._run(["setsid", "-w", self._bin("pg_ctl"), "-D", node.datadir, "-l", node.log,
                       "-w", "-t", str(int(self.timeout)), "start"], timeout=self.timeout + 5)
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
