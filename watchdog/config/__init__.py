"""The TOML configuration: `from watchdog.config import ...` is the public import path.

Modules: `schema` (field helpers, bounds, the shared check timing `CheckTiming`),
`sections` (the section dataclasses and `Config`), `errors` (located problems),
`convert` (one value to its typed form), `load` (tables to sections, cross-checks,
warnings, `load_config` / `parse_config`).
"""

from __future__ import annotations

from watchdog.config.convert import parse_listen
from watchdog.config.errors import MAX_NESTING, ConfigError, ConfigProblem, locate
from watchdog.config.load import (
    CONFIG_LIMIT,
    DEFAULT_PATH,
    all_sections,
    effective_unknown_for,
    load_config,
    load_timezone,
    pagerduty_warnings,
    parse_config,
)
from watchdog.config.schema import ALERT_KINDS, DAYS, SEVERITIES, CheckTiming, check_section
from watchdog.config.sections import (
    AlertsConfig,
    AlertTarget,
    BackupConfig,
    BackupWindow,
    CanaryConfig,
    Config,
    DaemonConfig,
    DigestConfig,
    DrbdConfig,
    HeartbeatConfig,
    MaintenanceConfig,
    MetricsConfig,
    NodeConfig,
    PostgresConfig,
    PostgresRoleConfig,
    ReplayLagConfig,
    ServicesConfig,
    StandbysConfig,
)

__all__ = [
    "ALERT_KINDS", "CONFIG_LIMIT", "DAYS", "DEFAULT_PATH", "MAX_NESTING", "SEVERITIES",
    "AlertTarget", "AlertsConfig", "BackupConfig", "BackupWindow", "CanaryConfig",
    "CheckTiming", "Config", "ConfigError", "ConfigProblem", "DaemonConfig", "DigestConfig",
    "DrbdConfig", "HeartbeatConfig", "MaintenanceConfig", "MetricsConfig", "NodeConfig",
    "PostgresConfig", "PostgresRoleConfig", "ReplayLagConfig", "ServicesConfig",
    "StandbysConfig", "all_sections", "check_section", "effective_unknown_for", "load_config",
    "load_timezone", "locate", "pagerduty_warnings", "parse_config", "parse_listen",
]
