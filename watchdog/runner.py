"""One cycle: detect the role from DRBD, probe what that role needs, run its checks.

Used by `--once` and by the daemon loop. The registry below is the whole list of checks
per role; probes run concurrently (each bounded by its own deadline) so a slow PostgreSQL
does not delay the services check, and the checks are pure functions of the snapshots.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from watchdog.config import Config
from watchdog.model import (
    DRBD,
    POSTGRES_ROLE,
    REPLAY_LAG,
    SERVICES,
    STANDBYS,
    CheckResult,
    Report,
    Role,
    Status,
)

log = logging.getLogger(__name__)

# The checks each role runs, in display order (public: documented in the README).
ROLE_CHECKS: Dict[Role, Tuple[str, ...]] = {
    Role.PRIMARY: (DRBD, POSTGRES_ROLE, SERVICES, STANDBYS),
    Role.SECONDARY: (DRBD, POSTGRES_ROLE, REPLAY_LAG),
    Role.UNKNOWN: (DRBD, POSTGRES_ROLE),
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


@dataclass(frozen=True)
class Probes:
    """The outside world, injectable: each takes the Config and returns a snapshot."""

    drbd: Callable[[Config], Any] = _default_probe_drbd
    services: Callable[[Config], Any] = _default_probe_services
    postgres: Callable[[Config], Any] = _default_probe_postgres


@dataclass(frozen=True)
class Cycle:
    """A finished cycle: the report plus the snapshots (the daemon keeps the last one)."""

    report: Report
    snapshots: Dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0

    def backups_seen(self) -> Sequence[Any]:
        pg = self.snapshots.get("postgres")
        return tuple(getattr(pg, "backups", ()) or ()) if pg is not None else ()


# A function deciding whether a check runs with relaxed (backup) limits this cycle.
Relax = Callable[[str, Sequence[Any]], bool]


def _no_relax(check: str, backups: Sequence[Any]) -> bool:
    return False


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


def run_cycle(
    cfg: Config,
    probes: Optional[Probes] = None,
    previous: Optional[Cycle] = None,
    relax: Relax = _no_relax,
    clock: Callable[[], float] = time.monotonic,
) -> Cycle:
    """Detect the role, probe, check. Never raises for a failing probe or check."""
    from watchdog.checks.drbd import check_drbd, detect_role

    probes = probes or Probes()
    start = clock()
    node = cfg.node_name
    snapshots: Dict[str, Any] = {}
    results: Dict[str, CheckResult] = {}

    # 1. DRBD decides the role.
    drbd_snap, error = _in_thread(lambda: probes.drbd(cfg), cfg.drbd.timeout + 2.0)
    if error is not None:
        role = Role.UNKNOWN
        results[DRBD] = _unknown(DRBD, "DRBD probe", error)
    else:
        snapshots["drbd"] = drbd_snap
        try:
            role = detect_role(drbd_snap)
            results[DRBD] = check_drbd(drbd_snap)
        except Exception as exc:  # noqa: BLE001
            role = Role.UNKNOWN
            results[DRBD] = _unknown(DRBD, "drbd check", exc)

    wanted = ROLE_CHECKS[role]

    # 2. The role's probes, concurrently.
    jobs: Dict[str, Tuple[Callable[[], Any], float]] = {}
    if POSTGRES_ROLE in wanted or STANDBYS in wanted or REPLAY_LAG in wanted:
        pg_budget = cfg.postgres.connect_timeout + cfg.postgres.query_timeout + 2.0
        probe_pg: Callable[[], Any] = lambda: probes.postgres(cfg)  # noqa: E731
        # The canary only from the node DRBD says is primary (the probe then also needs
        # PostgreSQL to say it is not in recovery); an injected probe writes nothing.
        if role == Role.PRIMARY and cfg.canary.enabled and probes.postgres is _default_probe_postgres:
            pg_budget += cfg.canary.timeout
            probe_pg = lambda: _default_probe_postgres(cfg, canary=True)  # noqa: E731
        jobs["postgres"] = (probe_pg, pg_budget)
    if SERVICES in wanted:
        jobs["services"] = (lambda: probes.services(cfg), cfg.services.timeout + 2.0)
    outcomes: Dict[str, Tuple[Any, Optional[BaseException]]] = {}
    threads = []
    for key, (fn, budget) in jobs.items():

        def work(key: str = key, fn: Callable[[], Any] = fn, budget: float = budget) -> None:
            outcomes[key] = _in_thread(fn, budget)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    for key, (value, error) in outcomes.items():
        if error is None:
            snapshots[key] = value
        else:
            log.warning("%s probe failed: %s", key, error)

    # 3. Pure checks over the snapshots.
    pg = snapshots.get("postgres")
    prev_pg = previous.snapshots.get("postgres") if previous is not None else None
    pg = _track_postgres(pg, prev_pg)
    if pg is not None:
        snapshots["postgres"] = pg
    for name in wanted:
        if name == DRBD:
            continue
        try:
            if name in (POSTGRES_ROLE, STANDBYS, REPLAY_LAG) and pg is None:
                err = outcomes.get("postgres", (None, None))[1]
                results[name] = _unknown(name, "PostgreSQL probe", err or RuntimeError("no result"))
            elif name == POSTGRES_ROLE:
                from watchdog.checks.postgres_role import check_postgres_role

                results[name] = check_postgres_role(pg, role)
            elif name == STANDBYS:
                from watchdog.checks.standbys import check_standbys

                results[name] = check_standbys(pg, cfg.standbys, previous=prev_pg)
            elif name == REPLAY_LAG:
                from watchdog.checks.replay_lag import check_replay_lag

                relaxed = relax(REPLAY_LAG, tuple(getattr(pg, "backups", ()) or ()))
                results[name] = check_replay_lag(pg, cfg.replay_lag, relaxed=relaxed,
                                                 canary=cfg.canary.enabled)
            elif name == SERVICES:
                snap = snapshots.get("services")
                if snap is None:
                    err = outcomes.get("services", (None, None))[1]
                    results[name] = _unknown(name, "services probe", err or RuntimeError("no result"))
                else:
                    from watchdog.checks.services import check_services

                    prev = previous.snapshots.get("services") if previous else None
                    results[name] = check_services(snap, cfg.services, previous=prev)
        except Exception as exc:  # noqa: BLE001 - a bug in a check must not stop the others
            log.exception("check %s raised", name)
            results[name] = _unknown(name, f"{name} check", exc)

    report = Report(node=node, role=role, checks=[results[n] for n in wanted])
    return Cycle(report=report, snapshots=snapshots, duration=clock() - start)


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


def stateless_relax(cfg: Config, wall: Callable[[], float] = time.time) -> Relax:
    """Relaxation for `--once`: backup windows and running backups, without daemon memory."""
    from watchdog.core.windows import relaxation

    memory: Dict[str, Any] = {}

    def relax(check: str, backups: Sequence[Any]) -> bool:
        return relaxation(wall(), check, cfg, backups, memory).active

    return relax
