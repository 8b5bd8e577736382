"""`--check-config --connect`: each probe tried once, with its deadline (see preflight).

Why apart from `watchdog.preflight`: that module finds what the config says (static
findings, URLs); this one asks the world (DRBD, the services command, PostgreSQL and the
privileges each check needs, the watched filesystems, the backup log), each call bounded
by its own deadline and ours around it. Its names are also importable from
`watchdog.preflight`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, List, Optional, Tuple

from watchdog.config import Config
from watchdog.preflight import (
    ERROR,
    OK,
    WARNING,
    Finding,
    _Out,
    _scrub_dsn,
    dsn_problem,
    privilege_findings,
    read_privileges,
)

log = logging.getLogger("watchdog.preflight")


def _in_thread(fn: Callable[[], Any], deadline: float, what: str = "probe"
               ) -> Tuple[Any, Optional[BaseException]]:
    import time

    from watchdog.runner import _in_thread as run

    started = time.monotonic()
    value, error = run(fn, deadline)
    log.debug("%s: %.0f ms (deadline %gs)%s", what, (time.monotonic() - started) * 1000,
              deadline, f": {type(error).__name__}" if error is not None else "")
    return value, error


def connect_findings(cfg: Config, text: str = "",
                     probe_drbd: Optional[Callable[[], Any]] = None,
                     probe_services: Optional[Callable[[], Any]] = None,
                     probe_postgres: Optional[Callable[[], Any]] = None,
                     probe_storage: Optional[Callable[[], Any]] = None,
                     probe_backup_log: Optional[Callable[[], Any]] = None) -> List[Finding]:
    """Each probe once, bounded by its own deadline (and ours around it)."""
    out = _Out(text)
    _drbd(cfg, out, probe_drbd)
    _services(cfg, out, probe_services)
    _postgres(cfg, out, probe_postgres)
    _storage(cfg, out, probe_storage)
    _backup_log(cfg, out, probe_backup_log)
    return out.findings


def _storage(cfg: Config, out: _Out, probe: Optional[Callable[[], Any]]) -> None:
    """Every watched filesystem read once (no sample history kept): an unreadable
    configured path is an error here rather than an UNKNOWN in production."""
    from watchdog.checks.storage import check_storage
    from watchdog.model import STORAGE

    section = cfg.check(STORAGE)
    if probe is None:
        from watchdog.probes.storage import probe_storage

        def probe() -> Any:
            return probe_storage(section, None)

    snap, error = _in_thread(probe, section.timeout + 2.0, "storage probe")
    if error is not None:
        out.add(ERROR, "storage.paths", f"storage: the probe failed: {error}")
        return
    bad = [fs for fs in snap.filesystems if fs.error is not None]
    for fs in bad:
        key = "storage.paths" if fs.path in section.paths else "storage"
        out.add(ERROR, key, f"storage: {fs.error}",
                "fix or remove the path in [storage] paths (a mount point that only the DRBD "
                "primary has is found by itself: leave it out)")
    if not bad:
        result = check_storage(snap, section)
        out.add(OK, "storage", f"storage: {len(snap.filesystems)} filesystem(s) read; "
                f"{result.status.label.upper()}: {result.summary}")


def _drbd(cfg: Config, out: _Out, probe: Optional[Callable[[], Any]]) -> None:
    from watchdog.checks.drbd import check_drbd, detect_role

    if probe is None:
        from watchdog.probes.drbd import probe_drbd

        def probe() -> Any:
            return probe_drbd(cfg.drbd)

    source = " ".join(cfg.drbd.command) if cfg.drbd.command else cfg.drbd.path
    key = "drbd.command" if cfg.drbd.command else "drbd.path"
    snap, error = _in_thread(probe, cfg.drbd.timeout + 2.0, "DRBD probe")
    reason = str(error) if error is not None else getattr(snap, "error", None)
    if reason:
        shown = reason if source in reason else f"{source}: {reason}"
        out.add(ERROR, key, f"DRBD: {shown}",
                "point [drbd] path at /proc/drbd (DRBD 8) or set [drbd] command / format "
                "(drbdadm status, drbdsetup status --json for DRBD 9)")
        return
    result = check_drbd(snap)
    role = detect_role(snap)
    level = OK if result.status.label in ("ok", "warning") else WARNING
    out.add(level, key, f"DRBD: read {source}: role {role.value}; {result.status.label.upper()}: "
            f"{result.summary}",
            "" if level == OK else "the source is readable; the drbd check reports this state")


def _services(cfg: Config, out: _Out, probe: Optional[Callable[[], Any]]) -> None:
    if probe is None:
        from watchdog.probes.daemontools import probe_services

        def probe() -> Any:
            return probe_services(cfg.services)

    command = " ".join(cfg.services.command)
    snap, error = _in_thread(probe, cfg.services.timeout + 10.0, "services probe")
    reason = str(error) if error is not None else getattr(snap, "error", None)
    if reason:
        out.add(ERROR, "services.command", f"services: `{command}` failed: {reason}",
                "set [services] command to what lists GreenArrow's services here, e.g. "
                '["service", "greenarrow", "status"] or ["svstat", "/service/hvmail-..."] '
                "(it runs only on the primary)")
        return
    from watchdog.checks.services import check_services

    result = check_services(snap, cfg.services)
    if result.status.label == "unknown":
        out.add(ERROR, "services.command",
                f"services: `{command}` gave nothing the check can read: {result.summary}",
                "set [services] command to what prints svstat lines here, e.g. "
                '["service", "greenarrow", "status"] on GreenArrow, or '
                '["svstat", "/service/hvmail-..."] (it runs only on the primary)')
        return
    out.add(OK, "services.command",
            f"services: `{command}` ran; {result.status.label.upper()}: {result.summary}")


def _backup_log(cfg: Config, out: _Out, probe: Optional[Callable[[], Any]]) -> None:
    """The backup log read once, as the check will: a path that cannot work shows now."""
    from watchdog.checks.backup_log import BackupLogConfig, check_backup_log

    section = cfg.check("backup_log", default=BackupLogConfig)
    if not section.enabled:
        return
    if probe is None:
        from watchdog.runner import _default_probe_backup_log

        def probe() -> Any:
            return _default_probe_backup_log(cfg)

    snap, error = _in_thread(probe, 5.0, "backup log probe")
    fix = ("set [backup_log] path to the log the backup writes (or enabled = false where "
           "no backup runs)")
    if error is not None:
        out.add(ERROR, "backup_log.path", f"backup log: {section.log_path}: {error}", fix)
        return
    result = check_backup_log(snap, section)
    if not snap.exists and not snap.configured:
        out.add(OK, "backup_log.path", f"backup log: {result.summary}")
    elif not snap.exists or snap.error is not None:
        out.add(ERROR, "backup_log.path", f"backup log: {result.summary}", fix)
    else:
        level = OK if result.status.label == "ok" else WARNING
        out.add(level, "backup_log.path", f"backup log: read {snap.path}; "
                f"{result.status.label.upper()}: {result.summary}",
                "" if level == OK else "the log is readable; the backup_log check reports this")


def _postgres(cfg: Config, out: _Out, probe: Optional[Callable[[], Any]]) -> None:
    if dsn_problem(cfg.postgres.dsn):
        return  # already an error of its own
    budget = cfg.postgres.connect_timeout + cfg.postgres.query_timeout + 2.0
    probe_is_default = probe is None
    if probe is None:
        def probe() -> Any:
            return read_privileges(cfg.postgres.dsn, cfg.postgres.connect_timeout)
    priv, error = _in_thread(probe, budget, "PostgreSQL privileges")
    if error is not None:
        reason = _scrub_dsn(" ".join(str(error).split()), cfg.postgres.dsn)
        out.add(ERROR, "postgres.dsn", f"PostgreSQL: cannot connect and query: {reason}",
                "check host (GreenArrow: the socket directory), port, user and dbname in "
                "[postgres] dsn, the password (a passfile, see the README) and pg_hba.conf")
        return
    for finding in privilege_findings(priv):
        out.add(finding.level, finding.key, finding.message, finding.fix)
    if probe_is_default:
        _postgres_probe(cfg, out)


def _postgres_probe(cfg: Config, out: _Out) -> None:
    """The daemon's own probe, once: its query must work on this server version."""
    from watchdog.probes.postgres import probe_postgres

    budget = cfg.postgres.connect_timeout + cfg.postgres.query_timeout + 2.0
    snap, error = _in_thread(lambda: probe_postgres(cfg.postgres, cfg.backup), budget,
                             "PostgreSQL probe")
    reason = str(error) if error is not None else getattr(snap, "error", None)
    if reason:
        out.add(ERROR, "postgres.dsn",
                "PostgreSQL: the watchdog's probe failed: "
                + _scrub_dsn(" ".join(reason.split()), cfg.postgres.dsn),
                "raise [postgres] connect_timeout / query_timeout if the server is slow; "
                "otherwise run ha-watchdog --once -v and report the message")
        return
    role = "a standby (in recovery)" if snap.in_recovery else "a primary"
    out.add(OK, "postgres.dsn", f"PostgreSQL: the watchdog's probe answered in "
            f"{snap.duration * 1000:.0f} ms; this server is {role}")
    _wal_findings(snap, out)


def _wal_findings(snap: Any, out: _Out) -> None:
    """On a primary: what the `wal` check will not see with this role (a warning: the
    check still judges the rest and says what it lacks)."""
    wal = getattr(snap, "wal", None)
    if wal is None:
        return
    old = (snap.server_version or 0) < 100000
    if wal.error:
        out.add(WARNING, "postgres.dsn", "wal: cannot read replication slots and "
                f"pg_stat_archiver: {wal.error}; the wal check will say UNKNOWN")
    if wal.waldir_error:
        out.add(WARNING, "postgres.dsn", f"wal: the WAL directory cannot be listed "
                f"({wal.waldir_error}); its size is not judged",
                "connect as a superuser (PostgreSQL 9.x)" if old
                else "as a superuser: GRANT pg_monitor TO the watchdog's role;")
    if wal.ready_error:
        out.add(WARNING, "postgres.dsn", f"wal: archive_status cannot be listed "
                f"({wal.ready_error}); archiving is judged from segment names only",
                "a superuser may list it (pg_monitor does from PostgreSQL 12)")
