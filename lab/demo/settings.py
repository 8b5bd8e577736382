"""What the demo runs: exit codes, the nodes and services, its debounce, the scenario
timings."""

from __future__ import annotations

from typing import Any, Dict

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MISSING = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

NODES = ("mail1", "mail2")
CRASH_SERVICE = "hvmail-httpd"
# hvmail-like services (names from GreenArrow's docs); the last two are down by default.
SERVICES: Dict[str, str] = {
    "hvmail-httpd": "up",
    "hvmail-studio-worker": "up",
    "hvmail-qmail-smtpd3": "normally_down",
    "hvmail-dnscache": "normally_down",
}

# Per-check debounce for the demo (the lab defaults are 1-2 s). replay_lag's `for` is longer
# than the lag spike, so the spike is absorbed; postgres_role and standbys ride out the
# second or two a planned failover usually takes (standbys also by its role_change_grace);
# a stopped standby pages after 3 s, not the shipped 15 s reconnect_grace. A standby whose
# PostgreSQL is down pages once, through postgres_role: replay_lag's UNKNOWN (nothing to
# measure) waits 30 s, so a slow planned restart does not page it as well.
DEMO_OVERRIDES: Dict[str, Dict[str, Any]] = {
    "postgres_role": {"for": "4s", "recover_for": "1s"},
    "standbys": {"for": "3s", "recover_for": "1s", "reconnect_grace": "3s"},
    "replay_lag": {"warning": "2s", "critical": "6s", "for": "5s", "recover_for": "1s",
                   "unknown_for": "30s"},
}
SPIKE_SECONDS = 2.5  # shorter than replay_lag's `for`
BACKUP_PAUSE_SECONDS = 9.0  # past critical (6 s) and for (5 s): would page outside a window
# Long enough for mail2's restart and mail1's held PROBLEM and RECOVERY (6-7 s) with a
# margin, short enough to watch it end on its own.
MAINTENANCE_FOR = "15s"
MAINTENANCE_REASON = "planned standby restart"
# The filling disk: a tmpfs of DISK_MIB on mail1, written at DISK_MIB_PER_S. The forecast
# over a minute of samples pages CRITICAL once it says "full within 2 minutes", while the
# disk is still mostly free (the shipped forecast looks at 2 hours and pages within 3 h).
DISK_MIB = 64
DISK_MIB_PER_S = 2.0
DISK_STORAGE: Dict[str, Any] = {
    "drbd_mounts": False, "postgres_data": "", "forecast_window": "1m", "forecast_min": "3s",
    "warning_full_in": "0s", "critical_full_in": "2m", "for": "2s", "recover_for": "2s",
}
# mail1 publishes metrics; what the demo prints of a scrape, per metric name.
METRICS_SHOWN = ("ha_watchdog_role", "ha_watchdog_check_status")

# Environment a daemon must not inherit from whatever runs the demo (a systemd unit, say).
_PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "LISTEN_FDS")
