"""The checks, one entry each: the only list of them (runner, config, alerts, CLI read it).

Why: before, adding a check touched six places (check names, config sections, the runner's
role table and if/elif chain, the alerts' runbook lines, metrics). Now a check is one entry
here, and everything that needs the list of checks loops over `CHECKS`.

Adding a check (the next issue's disk/WAL, archiving and backup checks land this way):

1. Write `watchdog/checks/<name>.py` with
   - its config section: a frozen dataclass decorated with `@check_section(for_=...,
     recover_for=..., unknown_as=..., unknown_for=...)` (from `watchdog.config`): the
     decorator adds the shared debounce keys (`for`, `recover_for`, `unknown_as`,
     `unknown_for`, see `watchdog.config.CheckTiming`) with this check's defaults; declare
     its own keys with the field helpers of `watchdog.config.schema` (`_f`, `_dur`, ...), so
     the TOML table `[<name>]` is validated (file, key path, line) like every other; values
     that parse but cannot work together: a method `problems() -> [(key, reason)]` on the
     section (the loader reports each, located);
   - a pure function `evaluate(snapshots, section, context) -> CheckResult`: `snapshots` maps
     the snapshot names the entry `needs` (all present when it is called) to the probes'
     snapshots; `context` is a `CheckContext` (role, relaxation, previous snapshots, the
     whole Config). No I/O, no clock: everything comes in through the three arguments.
     Put a deadline the daemon must re-check at in `CheckResult.recheck_in` and the kind of a
     failure in `CheckResult.failure`.
2. Add one `Check(...)` line to `CHECKS` below: name (a public interface: never renamed),
   the roles it runs for, the snapshots it needs (keys of `watchdog.runner.SNAPSHOTS`: a
   check needing a new kind of snapshot also needs its probe there), its section class, its
   first-look runbook line (the command a person runs first; alerts print it), and its
   metrics: a function `(result or None) -> [Family]` (`watchdog.families`; the names are
   a public interface, listed in README "Metrics"), usually `_lazy("<name>",
   "metric_families")` (its module's function, imported at the first call).
   `perfdata`: a function `result -> ["label=value;warn;crit", ...]` for `--once --nagios`
   (`watchdog.nagios.perf`), usually `_lazy("<name>", "perfdata")`; None: the check adds none.
   `relaxes_itself=True` only for a check that applies its own relaxed limits (and its own
   hard ceiling) when `context.relaxation` is active: the engine then never holds its
   results; every other relaxed check's warning/unknown is held by the engine instead.
3. Document the check and its keys in README.md and config.example.toml; test the check
   function (tests/test_<name>.py) and, if it does something new, a cycle through it.

Nothing else changes: the runner runs it for its roles, a missing snapshot becomes UNKNOWN
with the probe's reason, a raising check becomes UNKNOWN, the config loader accepts its
section, `backup.checks` and windows accept its name, the engine debounces it with its
section's timing, alerts name its first look, and the exporter shows its families.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Mapping, Optional, Sequence, Tuple

from watchdog.checks.backup_log import BackupLogConfig
from watchdog.checks.storage import StorageConfig
from watchdog.checks.wal import WalConfig
from watchdog.config import (
    Config,
    DrbdConfig,
    PostgresRoleConfig,
    ReplayLagConfig,
    ServicesConfig,
    StandbysConfig,
)
from watchdog.core.windows import NOT_RELAXED, Relaxation
from watchdog.model import (
    BACKUP_LOG,
    DRBD,
    POSTGRES_ROLE,
    REPLAY_LAG,
    SERVICES,
    STANDBYS,
    STORAGE,
    WAL,
    CheckResult,
    Role,
)

ALL_ROLES: FrozenSet[Role] = frozenset(Role)


@dataclass(frozen=True)
class CheckContext:
    """What a check may know besides its snapshots and section.

    role: this node's role as DRBD says (this cycle). relaxation: whether backup limits
    apply to this check now (computed once per cycle, before the checks). previous: the
    previous cycle's snapshots (checks that compare with the last sample). cfg: the whole
    configuration, for the rare fact outside the check's own section ([canary] enabled).
    """

    role: Role = Role.UNKNOWN
    relaxation: Relaxation = NOT_RELAXED
    previous: Mapping[str, Any] = field(default_factory=dict)
    cfg: Config = field(default_factory=Config)


Evaluate = Callable[[Mapping[str, Any], Any, CheckContext], CheckResult]
#: This cycle's result of the check (None when it did not run) -> its metric families
#: (`watchdog.families`); a family without samples is left out of the exposition.
Metrics = Callable[[Optional[CheckResult]], Sequence[Any]]
#: This cycle's result of the check -> its Nagios performance data (`watchdog.nagios`).
Perfdata = Callable[[CheckResult], Sequence[str]]


@dataclass(frozen=True)
class Check:
    """One check: see the module docstring for what each field means."""

    name: str
    roles: FrozenSet[Role]
    needs: Tuple[str, ...]
    section: type
    first_look: str
    evaluate: Evaluate
    metrics: Optional[Metrics] = None
    relaxes_itself: bool = False
    perfdata: Optional[Perfdata] = None

    def runs_for(self, role: Role) -> bool:
        return role in self.roles


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """`watchdog.checks.<module>.<name>`, imported at its first call: a metrics or
    perfdata entry without an adapter of its own, and `import registry` stays light."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"watchdog.checks.{module}"), name)(*args,
                                                                                   **kwargs)

    call.__name__ = f"{module}.{name}"
    return call


# ---------------------------------------------------------------- adapters
# The check modules keep their own signatures (tests call them directly); these adapters
# are the registry's uniform `(snapshots, section, context)` call.


def _drbd(snaps: Mapping[str, Any], section: Any, ctx: CheckContext) -> CheckResult:
    from watchdog.checks.drbd import check_drbd

    return check_drbd(snaps["drbd"])


def _postgres_role(snaps: Mapping[str, Any], section: Any, ctx: CheckContext) -> CheckResult:
    from watchdog.checks.postgres_role import check_postgres_role

    return check_postgres_role(snaps["postgres"], ctx.role)


def _services(snaps: Mapping[str, Any], section: Any, ctx: CheckContext) -> CheckResult:
    from watchdog.checks.services import check_services

    return check_services(snaps["services"], section, previous=ctx.previous.get("services"))


def _standbys(snaps: Mapping[str, Any], section: Any, ctx: CheckContext) -> CheckResult:
    from watchdog.checks.standbys import check_standbys

    return check_standbys(snaps["postgres"], section, previous=ctx.previous.get("postgres"))


def _replay_lag(snaps: Mapping[str, Any], section: Any, ctx: CheckContext) -> CheckResult:
    from watchdog.checks.replay_lag import check_replay_lag

    return check_replay_lag(snaps["postgres"], section, relaxed=ctx.relaxation.active,
                            canary=ctx.cfg.canary.enabled)


def _storage(snaps: Mapping[str, Any], section: Any, ctx: CheckContext) -> CheckResult:
    from watchdog.checks.storage import check_storage

    return check_storage(snaps["storage"], section, relaxed=ctx.relaxation.active)


def _backup_log(snaps: Mapping[str, Any], section: Any, ctx: CheckContext) -> CheckResult:
    from watchdog.checks.backup_log import check_backup_log

    return check_backup_log(snaps["backup_log"], section)


def _wal(snaps: Mapping[str, Any], section: Any, ctx: CheckContext) -> CheckResult:
    from watchdog.checks.wal import check_wal

    return check_wal(snaps["postgres"], section, previous=ctx.previous.get("postgres"))


# ---------------------------------------------------------------- runbook lines

_DRBD_LOOK = (
    "drbd-overview (DRBD 8.4; expect Connected Primary/Secondary UpToDate/UpToDate), "
    "or drbdadm status, or cat /proc/drbd; StandAlone means the nodes are not connected "
    "(split brain?)"
)
#: The first look for a role change (not a check): both nodes' DRBD, then the services.
ROLE_CHANGE_LOOK = (
    "on both nodes: " + _DRBD_LOOK + "; then service greenarrow status on the primary"
)

# ---------------------------------------------------------------- the registry

PRIMARY = frozenset({Role.PRIMARY})
SECONDARY = frozenset({Role.SECONDARY})

#: Every check, in display order (a role's checks are shown in this order).
CHECKS: Tuple[Check, ...] = (
    Check(DRBD, ALL_ROLES, ("drbd",), DrbdConfig, _DRBD_LOOK, _drbd,
          _lazy("drbd", "metric_families"), perfdata=_lazy("drbd", "perfdata")),
    Check(POSTGRES_ROLE, ALL_ROLES, ("postgres",), PostgresRoleConfig,
          'psql -c "SELECT pg_is_in_recovery()" (t on the secondary, f on the primary) and the '
          "PostgreSQL log (GreenArrow: /var/hvmail/log/postgres/)", _postgres_role),
    Check(SERVICES, PRIMARY, ("services",), ServicesConfig,
          "service greenarrow status (abnormal services are shown in red; hvmail-qmail-smtpd3 "
          "and hvmail-dnscache are down by default)", _services,
          perfdata=_lazy("services", "perfdata")),
    Check(STANDBYS, PRIMARY, ("postgres",), StandbysConfig,
          'on the primary: psql -x -c "SELECT application_name, client_addr, state, sent_lsn, '
          'flush_lsn, replay_lsn, reply_time FROM pg_stat_replication" (one streaming row per '
          'standby)', _standbys, _lazy("standbys", "metric_families"),
          perfdata=_lazy("standbys", "perfdata")),
    Check(REPLAY_LAG, SECONDARY, ("postgres",), ReplayLagConfig,
          'on the secondary: psql -c "SELECT EXTRACT(EPOCH FROM now() - '
          'pg_last_xact_replay_timestamp())" and psql -x -c "SELECT * FROM pg_stat_wal_receiver" '
          "(no row: not connected to the primary; compare received and replayed LSNs)",
          _replay_lag, _lazy("replay_lag", "metric_families"), relaxes_itself=True,
          perfdata=_lazy("replay_lag", "perfdata")),
    Check(STORAGE, ALL_ROLES, ("storage",), StorageConfig,
          "df -h <path> and df -i <path> (bytes and inodes); du -xh --max-depth=2 <path> | "
          "sort -h | tail shows what grew (GreenArrow: greenarrow disk_usage --details; "
          "PostgreSQL's pg_wal/pg_xlog kept by an inactive replication slot)", _storage,
          _lazy("storage", "metric_families"), relaxes_itself=True,
          perfdata=_lazy("storage", "perfdata")),
    Check(WAL, PRIMARY, ("postgres",), WalConfig,
          'on the primary: psql -x -c "SELECT slot_name, active, restart_lsn FROM '
          'pg_replication_slots" (an inactive slot keeps WAL: drop it with SELECT '
          "pg_drop_replication_slot('name') once its standby is gone for good) and psql -x -c "
          '"SELECT * FROM pg_stat_archiver" (failures: the PostgreSQL log shows '
          "archive_command's error)", _wal, _lazy("wal", "metric_families"),
          perfdata=_lazy("wal", "perfdata")),
    Check(BACKUP_LOG, ALL_ROLES, ("backup_log",), BackupLogConfig,
          "tail -n 60 /var/backup/greenarrow-backup.log (or [backup_log] path; a good run ends "
          'with "The backup is finished. No errors were detected.") and ls -l --time-style='
          "full-iso on it (when the newest run ended)", _backup_log,
          _lazy("backup_log", "metric_families"), perfdata=_lazy("backup_log", "perfdata")),
)


# The helpers read CHECKS when called (not at definition), so a test can extend it.


def names(checks: Optional[Sequence[Check]] = None) -> Tuple[str, ...]:
    return tuple(c.name for c in (CHECKS if checks is None else checks))


def for_role(role: Role, checks: Optional[Sequence[Check]] = None) -> Tuple[Check, ...]:
    """The checks `role` runs, in display order."""
    return tuple(c for c in (CHECKS if checks is None else checks) if c.runs_for(role))


def find(name: Optional[str], checks: Optional[Sequence[Check]] = None) -> Optional[Check]:
    for check in CHECKS if checks is None else checks:
        if check.name == name:
            return check
    return None


def self_relaxing(checks: Optional[Sequence[Check]] = None) -> FrozenSet[str]:
    """The names of the checks that apply relaxed limits themselves (`relaxes_itself`)."""
    return frozenset(c.name for c in (CHECKS if checks is None else checks) if c.relaxes_itself)


def sections(checks: Optional[Sequence[Check]] = None) -> Dict[str, type]:
    """TOML table name -> section class of every check (the config loader reads these)."""
    return {c.name: c.section for c in (CHECKS if checks is None else checks)}
