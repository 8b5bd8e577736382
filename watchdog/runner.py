"""One cycle: detect the role from DRBD, probe what that role needs, run its checks.

Used by `--once` and by the daemon loop, in two steps so the daemon can work out the
backup relaxation between them (it needs the backups the PostgreSQL probe saw, and the
checks need the relaxation): `probe_cycle` (DRBD first, it decides the role; then the
snapshots the role's checks need, concurrently, each bounded by its own deadline, so a slow
PostgreSQL does not delay the services check) and `check_cycle` (the role's checks, pure
functions of the snapshots, in the order of `watchdog.checks.registry.CHECKS`).
`run_cycle` does both with given relaxations (tests, tools).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from watchdog.checks import registry
from watchdog.checks.registry import Check, CheckContext
from watchdog.config import Config
from watchdog.core.windows import NOT_RELAXED, Relaxation
from watchdog.model import DRBD, CheckResult, Report, Role, Status

log = logging.getLogger(__name__)

# The checks each role runs, in display order (public: documented in the README); derived
# from the registry.
ROLE_CHECKS: Dict[Role, Tuple[str, ...]] = {
    role: registry.names(registry.for_role(role)) for role in Role
}


def _default_probe_drbd(cfg: Config) -> Any:
    from watchdog.probes.drbd import probe_drbd

    return probe_drbd(cfg.drbd)


def _default_probe_services(cfg: Config) -> Any:
    from watchdog.probes.daemontools import probe_services

    return probe_services(cfg.services)


def _default_probe_postgres(cfg: Config, canary: bool = False) -> Any:
    """`canary=True` (the DRBD primary with [canary] on): write the canary if PostgreSQL
    confirms it is not in recovery (see probes.postgres.build_canary)."""
    from watchdog.probes.postgres import probe_postgres

    return probe_postgres(cfg.postgres, cfg.backup, canary=cfg.canary if canary else None)


def _default_probe_storage(cfg: Config) -> Any:
    from watchdog.model import STORAGE
    from watchdog.probes.storage import probe_storage

    return probe_storage(cfg.check(STORAGE), cfg.daemon.state_dir)
def _default_probe_backup_log(cfg: Config) -> Any:
    """The backup log's tail, without this config's secrets: its lines are quoted in
    alerts, JSON and the state file, and a backup may print a connection string."""
    from watchdog.alerts.secrets import redact
    from watchdog.checks.backup_log import BackupLogConfig
    from watchdog.probes.backup_log import probe_backup_log
    from watchdog.redaction import dsn_secrets, scrub, url_secrets

    section = cfg.check("backup_log", default=BackupLogConfig)
    snap = probe_backup_log(section.log_path, configured=section.path is not None)
    secrets = set(dsn_secrets(cfg.postgres.dsn))
    for url in [t.url for t in cfg.alerts.targets] + [cfg.heartbeat.url]:
        if url:
            secrets |= url_secrets(url)
    return replace(snap, tail=redact(scrub(snap.tail, secrets)))


@dataclass(frozen=True)
class Probes:
    """The outside world, injectable: each takes the Config and returns a snapshot."""

    drbd: Callable[[Config], Any] = _default_probe_drbd
    services: Callable[[Config], Any] = _default_probe_services
    postgres: Callable[[Config], Any] = _default_probe_postgres
    storage: Callable[[Config], Any] = _default_probe_storage
    backup_log: Callable[[Config], Any] = _default_probe_backup_log


def _postgres_job(cfg: Config, probes: Probes, role: Role) -> Tuple[Callable[[], Any], float]:
    budget = cfg.postgres.connect_timeout + cfg.postgres.query_timeout + 2.0
    # The canary only from the node DRBD says is primary (the probe then also needs
    # PostgreSQL to say it is not in recovery); an injected probe writes nothing.
    if role == Role.PRIMARY and cfg.canary.enabled and probes.postgres is _default_probe_postgres:
        return (lambda: _default_probe_postgres(cfg, canary=True)), budget + cfg.canary.timeout
    return (lambda: probes.postgres(cfg)), budget


def _services_job(cfg: Config, probes: Probes, role: Role) -> Tuple[Callable[[], Any], float]:
    return (lambda: probes.services(cfg)), cfg.services.timeout + 2.0


def _storage_job(cfg: Config, probes: Probes, role: Role) -> Tuple[Callable[[], Any], float]:
    from watchdog.model import STORAGE

    # Two rounds of stats (finding PostgreSQL's directories, then every filesystem), each
    # bounded by [storage] timeout; then the history write.
    return (lambda: probes.storage(cfg)), 2 * cfg.check(STORAGE).timeout + 5.0
def _backup_log_job(cfg: Config, probes: Probes, role: Role) -> Tuple[Callable[[], Any], float]:
    # A stat and a read of at most 64 KiB: seconds only if the file system hangs (NFS).
    return (lambda: probes.backup_log(cfg)), 5.0


# The snapshots checks may need (registry `needs`), other than "drbd" (probed first, always):
# name -> (what a failure calls the probe, the job: a call and its deadline).
SNAPSHOTS: Dict[str, Tuple[str, Callable[[Config, Probes, Role], Tuple[Callable[[], Any], float]]]] = {
    "postgres": ("PostgreSQL probe", _postgres_job),
    "services": ("services probe", _services_job),
    "storage": ("storage probe", _storage_job),
    "backup_log": ("backup log probe", _backup_log_job),
}
_PROBE_LABELS = {"drbd": "DRBD probe", **{k: v[0] for k, v in SNAPSHOTS.items()}}


@dataclass(frozen=True)
class Cycle:
    """A finished cycle: the report plus the snapshots (the daemon keeps the last one)."""

    report: Report
    snapshots: Dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0

    def backups_seen(self) -> Sequence[Any]:
        return _backups(self.snapshots)


@dataclass(frozen=True)
class Probed:
    """A cycle's first half: the role, its checks, the snapshots and why any is missing."""

    role: Role
    checks: Tuple[Check, ...]
    snapshots: Dict[str, Any]
    errors: Dict[str, BaseException]
    previous: Mapping[str, Any]
    started: float
    # A check that could not even start (the role detection raised): its result.
    early: Dict[str, CheckResult] = field(default_factory=dict)

    @property
    def names(self) -> Tuple[str, ...]:
        return registry.names(self.checks)

    def backups_seen(self) -> Sequence[Any]:
        """The backup sessions the PostgreSQL probe saw (backup relaxation's input)."""
        return _backups(self.snapshots)


def _backups(snapshots: Mapping[str, Any]) -> Sequence[Any]:
    pg = snapshots.get("postgres")
    return tuple(getattr(pg, "backups", ()) or ()) if pg is not None else ()


def _unknown(name: str, what: str, exc: BaseException) -> CheckResult:
    log.debug("%s failed", what, exc_info=exc)
    return CheckResult(
        name,
        Status.UNKNOWN,
        f"{what} failed: {type(exc).__name__}: {exc}",
        {"error": f"{type(exc).__name__}: {exc}"},
    )


def _in_thread(fn: Callable[[], Any], deadline: float) -> Tuple[Any, Optional[BaseException]]:
    """Run fn in a daemon thread, wait at most `deadline` s (the probe has its own too)."""
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - reported as a result
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        return None, TimeoutError(f"no answer within {deadline:g}s")
    return box.get("value"), box.get("error")


def probe_cycle(
    cfg: Config,
    probes: Optional[Probes] = None,
    previous: Optional[Cycle] = None,
    clock: Callable[[], float] = time.monotonic,
    checks: Optional[Sequence[Check]] = None,
) -> Probed:
    """Detect the role, then take the snapshots its checks need. Never raises for a probe."""
    from watchdog.checks.drbd import detect_role

    probes = probes or Probes()
    start = clock()
    snapshots: Dict[str, Any] = {}
    errors: Dict[str, BaseException] = {}
    early: Dict[str, CheckResult] = {}

    # 1. DRBD decides the role.
    drbd_snap, error = _in_thread(lambda: probes.drbd(cfg), cfg.drbd.timeout + 2.0)
    if error is not None:
        role = Role.UNKNOWN
        errors["drbd"] = error
    else:
        snapshots["drbd"] = drbd_snap
        try:
            role = detect_role(drbd_snap)
        except Exception as exc:  # noqa: BLE001
            role = Role.UNKNOWN
            early[DRBD] = _unknown(DRBD, "drbd check", exc)
    wanted = registry.for_role(role, checks)

    # 2. The snapshots the role's checks need, concurrently.
    needed = [k for k in SNAPSHOTS if any(k in c.needs for c in wanted)]
    outcomes: Dict[str, Tuple[Any, Optional[BaseException]]] = {}
    threads = []
    for key in needed:
        fn, budget = SNAPSHOTS[key][1](cfg, probes, role)

        def work(key: str = key, fn: Callable[[], Any] = fn, budget: float = budget) -> None:
            outcomes[key] = _in_thread(fn, budget)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    for key in needed:
        value, error = outcomes.get(key, (None, RuntimeError("no result")))
        if error is None:
            snapshots[key] = value
        else:
            errors[key] = error
            log.warning("%s probe failed: %s", key, error)

    before = dict(previous.snapshots) if previous is not None else {}
    if "postgres" in snapshots:
        snapshots["postgres"] = _track_postgres(snapshots["postgres"], before.get("postgres"))
    return Probed(role, wanted, snapshots, errors, before, start, early)


def check_cycle(
    probed: Probed,
    cfg: Config,
    relaxations: Optional[Mapping[str, Relaxation]] = None,
    clock: Callable[[], float] = time.monotonic,
) -> Cycle:
    """Run the role's checks over the snapshots. Never raises for a failing check."""
    relaxations = relaxations or {}
    results = []
    for check in probed.checks:
        results.append(_run_check(check, probed, cfg, relaxations.get(check.name)))
    report = Report(node=cfg.node_name, role=probed.role, checks=results)
    return Cycle(report=report, snapshots=probed.snapshots, duration=clock() - probed.started)


def _run_check(check: Check, probed: Probed, cfg: Config,
               relaxation: Optional[Relaxation]) -> CheckResult:
    if check.name in probed.early:
        return probed.early[check.name]
    missing = [k for k in check.needs if probed.snapshots.get(k) is None]
    if missing:
        key = missing[0]
        error = probed.errors.get(key) or RuntimeError("no result")
        return _unknown(check.name, _PROBE_LABELS.get(key, f"{key} probe"), error)
    context = CheckContext(
        role=probed.role,
        relaxation=relaxation or NOT_RELAXED,
        previous=probed.previous,
        cfg=cfg,
    )
    snaps = {k: probed.snapshots[k] for k in check.needs}
    try:
        return check.evaluate(snaps, section_of(cfg, check), context)
    except Exception as exc:  # noqa: BLE001 - a bug in a check must not stop the others
        log.exception("check %s raised", check.name)
        return _unknown(check.name, f"{check.name} check", exc)


def section_of(cfg: Config, check: Check) -> Any:
    """The check's config section (its defaults when the Config has none for it)."""
    return cfg.check(check.name, default=check.section)


def run_cycle(
    cfg: Config,
    probes: Optional[Probes] = None,
    previous: Optional[Cycle] = None,
    relaxations: Optional[Mapping[str, Relaxation]] = None,
    clock: Callable[[], float] = time.monotonic,
    checks: Optional[Sequence[Check]] = None,
) -> Cycle:
    """Probe and check in one call, with relaxations decided beforehand (none by default)."""
    probed = probe_cycle(cfg, probes, previous, clock, checks)
    return check_cycle(probed, cfg, relaxations, clock)


def once_cycle(
    cfg: Config,
    probes: Optional[Probes] = None,
    wall: Callable[[], float] = time.time,
    clock: Callable[[], float] = time.monotonic,
) -> Cycle:
    """`--once`: relaxation from backup windows and running backups, without daemon memory."""
    from watchdog.core.windows import relaxations

    probed = probe_cycle(cfg, probes, clock=clock)
    relaxed = relaxations(wall(), probed.names, cfg, probed.backups_seen(), {})
    return check_cycle(probed, cfg, relaxed, clock)


def _track_postgres(pg: Any, prev_pg: Any) -> Any:
    """Compare with the previous cycle (probes.postgres.track) and report the canary."""
    from watchdog.probes.postgres import PgSnapshot, track

    if not isinstance(pg, PgSnapshot):
        return pg
    canary = pg.canary
    if canary is not None and not canary.ok:
        before = getattr(prev_pg, "canary", None)
        # Once per failing stretch at WARNING (each cycle tries once, never in a loop).
        level = logging.DEBUG if before is not None and not before.ok else logging.WARNING
        log.log(level, "canary write failed: %s", canary.error)
    return track(pg, prev_pg if isinstance(prev_pg, PgSnapshot) else None)
