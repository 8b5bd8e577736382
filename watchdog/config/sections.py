"""The configuration's sections and the whole `Config` (schema: watchdog.config.schema).

The five checks' sections inherit the shared debounce keys from `CheckTiming`; a new check
declares its section in its own module (see watchdog.checks.registry).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import time as dtime
from typing import Any, Dict, Optional, Tuple

from watchdog.config.schema import (
    _DEBOUNCE_LIMIT,
    _DEBOUNCE_WHY,
    ALERT_KINDS,
    DAYS,
    CheckTiming,
    _dur,
    _f,
    _timeout,
    check_section,
)


@dataclass(frozen=True)
class NodeConfig:
    # Empty: the host name. Set, it is a label in every alert: printable, one line.
    name: str = _f("str", "", label=True, optional_label=True, max_length=64)


@dataclass(frozen=True)
class DaemonConfig:
    interval: float = _dur("30s", "10ms", "1h", why_low="a tighter loop only burns CPU",
                           why_high="problems would go unseen for longer than an hour")
    state_dir: str = _f("str", "/var/lib/ha-watchdog")
    log_level: str = _f("choice", "info", choices=("debug", "info", "warning", "error"))
    flap_changes: int = _f("int", 4, minimum=2, maximum=1000)
    flap_window: float = _dur("30m", "1s", "7d", positive=True,
                              why_high="a week of state changes is history, not flapping")


@check_section(for_="30s", recover_for="30s", unknown_as="critical")
class DrbdConfig(CheckTiming):
    format: str = _f(
        "choice", "auto", choices=("auto", "proc", "drbd-overview", "drbdadm-status", "drbdsetup-json")
    )
    path: str = _f("str", "/proc/drbd")
    command: Optional[Tuple[str, ...]] = _f("argv", None, optional=True)
    resources: Optional[Tuple[str, ...]] = _f(
        "strlist", None, optional=True,
        empty="must name at least one resource (leave the key out to watch all of them)",
    )
    timeout: float = _timeout("5s")


@check_section(for_="1m", recover_for="30s", unknown_as="warning")
class ServicesConfig(CheckTiming):
    command: Tuple[str, ...] = _f("argv", ("service", "greenarrow", "status"))
    expected_down: Tuple[str, ...] = _f("strlist", ("hvmail-qmail-smtpd3", "hvmail-dnscache"))
    timeout: float = _timeout("10s")
    min_uptime: float = _dur("4s", "0s", "1h",
                             why_high="every restart within it reads as a crash loop")


@dataclass(frozen=True)
class PostgresConfig:
    dsn: str = _f("str", "")
    connect_timeout: float = _timeout("3s")
    query_timeout: float = _timeout("5s")


@dataclass(frozen=True)
class CanaryConfig:
    """The replication canary (see README "The canary"): on by default, because without it
    an idle pair gives a standby nothing to prove it still receives WAL, and on 9.5-11 the
    watchdog has no other way to tell a hung standby (or a dead link) from an idle one."""

    enabled: bool = _f("bool", True)
    timeout: float = _timeout("2s")


@check_section(for_="30s", recover_for="30s", unknown_as="critical")
class PostgresRoleConfig(CheckTiming):
    """postgres_role has no keys of its own, only the debounce ones."""


# unknown_for 2m: PostgreSQL unreachable already pages through postgres_role: give that a
# head start.
@check_section(for_="0s", recover_for="30s", unknown_as="warning", unknown_for="2m")
class StandbysConfig(CheckTiming):
    min_streaming: int = _f("int", 1, minimum=0, maximum=100)
    max_reply_age: float = _dur("15s", "1s", "1d", why_low="standbys reply every 10s by default",
                                why_high="a standby silent for a day is long gone")
    warning_bytes: int = _f("size", 64 * 1024**2, minimum=1)
    # Too few standbys streaming because one is missing (not connected, or not yet
    # `streaming`) waits this long before it counts: a walreceiver reconnects within
    # wal_retrieve_retry_interval (5 s by default). A hung one (reply stale) does not wait.
    reconnect_grace: float = _dur("15s", "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY)
    # ... and until this long after this node's role change (a standby being rebuilt).
    role_change_grace: float = _dur("5m", "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY)


@check_section(for_="2m", recover_for="1m", unknown_as="warning")
class ReplayLagConfig(CheckTiming):
    warning: float = _dur("1m", "0s", "30d", positive=True, why_low="any lag would alert")
    critical: float = _dur("5m", "0s", "30d", positive=True, why_low="any lag would alert")
    warning_bytes: int = _f("size", 64 * 1024**2, minimum=1)
    critical_bytes: int = _f("size", 1024**3, minimum=1)
    max_receive_age: float = _dur("45s", "1s", "1d", why_low="WAL arrives in bursts",
                                  why_high="a day without WAL is a dead standby")
    backup_warning: float = _dur("2h", "0s", "30d", positive=True, why_low="any lag would alert")
    backup_critical: float = _dur("6h", "0s", "30d", positive=True, why_low="any lag would alert")


@dataclass(frozen=True)
class BackupConfig:
    detect: bool = _f("bool", True)
    max_duration: float = _dur("8h", "1s", "7d", positive=True,
                               why_high="a backup held as running for a week hides real lag")
    checks: Tuple[str, ...] = _f("strlist", ("replay_lag",))
    application_names: Tuple[str, ...] = _f("strlist", ("pg_dump", "pg_dumpall", "pg_basebackup"))


@dataclass(frozen=True)
class BackupWindow:
    days: Tuple[str, ...] = _f("days", DAYS)
    start: dtime = _f("clock", None, required=True)
    end: dtime = _f("clock", None, required=True)
    timezone: str = _f("timezone", "UTC")
    checks: Tuple[str, ...] = _f("strlist", ("replay_lag",))


@dataclass(frozen=True)
class AlertTarget:
    name: str = _f("str", "", required=True, label=True, max_length=64)
    url: Optional[str] = _f("str", None, optional=True, secret=True)
    url_file: Optional[str] = _f("str", None, optional=True)
    severities: Tuple[str, ...] = _f("kinds", ALERT_KINDS)


@dataclass(frozen=True)
class AlertsConfig:
    renotify: float = _dur("4h", "0s", "30d",  # 0s: no reminders
                           why_high="a reminder once a month reminds nobody")
    expire: float = _dur("24h", "1m", "30d",
                         why_low="undelivered alerts would be dropped before a channel can recover",
                         why_high="the outbox would keep month-old pages")
    retries: int = _f("int", 3, minimum=0, maximum=20)
    retry_max_wait: float = _dur("30s", "0s", "10m",
                                 why_high="a send round would outlast many cycles")
    send_timeout: float = _dur("30s", "1s", "10m", why_low="every send would time out",
                               why_high="a hung channel would hold deliveries that long")
    targets: Tuple[AlertTarget, ...] = _f("targets", ())
    # The daemon refuses to start when nothing would ever hear from it (no target, no
    # metrics, no heartbeat; see watchdog.preflight.silent_reason) unless this is true.
    allow_silent: bool = _f("bool", False)


@dataclass(frozen=True)
class HeartbeatConfig:
    url: Optional[str] = _f("str", None, optional=True, secret=True)
    timeout: float = _timeout("10s", "a ping that slow is a failed ping")


@dataclass(frozen=True)
class MetricsConfig:
    # Empty: off. "host:port"; a bare ":port" or "port" listens on loopback only.
    listen: Optional[Tuple[str, int]] = _f("listen", None, optional=True)
    textfile: Optional[str] = _f("str", None, optional=True)


@dataclass(frozen=True)
class MaintenanceConfig:
    max_duration: float = _dur("8h", "0s", "30d", positive=True,
                               why_high="a month-long maintenance is a silenced node")


@dataclass(frozen=True)
class DigestConfig:
    at: Optional[dtime] = _f("clock", None, optional=True)
    timezone: str = _f("timezone", "UTC")


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. `source` is the file it came from."""

    node: NodeConfig = field(default_factory=NodeConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    drbd: DrbdConfig = field(default_factory=DrbdConfig)
    services: ServicesConfig = field(default_factory=ServicesConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    postgres_role: PostgresRoleConfig = field(default_factory=PostgresRoleConfig)
    standbys: StandbysConfig = field(default_factory=StandbysConfig)
    replay_lag: ReplayLagConfig = field(default_factory=ReplayLagConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)
    backup_windows: Tuple[BackupWindow, ...] = ()
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    digest: DigestConfig = field(default_factory=DigestConfig)
    source: str = "<defaults>"
    warnings: Tuple[str, ...] = ()
    # Sections of checks that are not fields above (see `check`), by check name.
    extra_checks: Dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def node_name(self) -> str:
        return self.node.name or socket.gethostname().split(".")[0]

    def check(self, name: str, default: Optional[type] = None) -> Any:
        """The config section of a check: a field of this Config (the five first checks)
        or one of `extra_checks` (a check added through the registry alone); else the
        defaults of `default` or of the check's registered section; None for no check."""
        if name in _CHECK_FIELDS:
            return getattr(self, name)
        if name in self.extra_checks:
            return self.extra_checks[name]
        if default is None:
            from watchdog.checks.registry import find

            entry = find(name)
            default = entry.section if entry is not None else None
        return default() if default is not None else None


# The checks whose sections are Config fields (typed access: cfg.replay_lag); a check added
# later lives in Config.extra_checks, found by name through Config.check.
_CHECK_FIELDS = ("drbd", "services", "postgres_role", "standbys", "replay_lag")
# The sections that are not checks' (those come from the check registry).
_BASE_SECTIONS: Dict[str, type] = {
    "node": NodeConfig,
    "daemon": DaemonConfig,
    "postgres": PostgresConfig,
    "canary": CanaryConfig,
    "backup": BackupConfig,
    "alerts": AlertsConfig,
    "heartbeat": HeartbeatConfig,
    "metrics": MetricsConfig,
    "maintenance": MaintenanceConfig,
    "digest": DigestConfig,
}
