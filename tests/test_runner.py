"""The runner: probe, then the relaxation decided once, then the registry's checks."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from watchdog.config import parse_config
from watchdog.core.windows import Relaxation
from watchdog.model import Role, Status
from watchdog.probes.postgres import PgSnapshot, WalReceiver, parse_lsn
from watchdog.runner import Probes, check_cycle, once_cycle, probe_cycle

SECONDARY = Path(__file__).parent / "fixtures/drbd/proc-drbd-8.4-standalone-secondary-peer-outdated.txt"
NOW = datetime(2024, 6, 3, 1, 0, tzinfo=timezone.utc).timestamp()  # a Monday, 01:00 UTC
WINDOW = '[[backup_windows]]\nstart = "00:00"\nend = "06:00"\nchecks = ["replay_lag"]\n'


def lagging_standby(cfg) -> PgSnapshot:
    """Streaming, but 64 MiB received and not replayed: over warning_bytes (16 MiB), under
    the backup limits."""
    return PgSnapshot(
        reachable=True, in_recovery=True, server_version=150020,
        receive_lsn=parse_lsn("0/7000000"), replay_lsn=parse_lsn("0/3000000"),
        replay_paused="not paused", last_replay_age=1.0,
        walreceiver=WalReceiver(pid=100, status="streaming", sender_host="10.0.0.1",
                                sender_port=5432, received_lsn=parse_lsn("0/7000000"),
                                last_msg_receipt_age=0.3),
    )


def config(extra: str = ""):
    return parse_config(
        f'[drbd]\nformat = "proc"\npath = "{SECONDARY}"\n'
        '[replay_lag]\nwarning_bytes = "16MiB"\ncritical_bytes = "1GiB"\n' + extra)


def probes() -> Probes:
    def no_services(cfg):
        raise AssertionError("a secondary does not probe services")

    return Probes(postgres=lagging_standby, services=no_services)


def replay_lag(cycle):
    (result,) = [c for c in cycle.report.checks if c.name == "replay_lag"]
    return result


def test_once_applies_a_backup_window_to_the_checks_it_lists():
    relaxed = replay_lag(once_cycle(config(WINDOW), probes(), wall=lambda: NOW))
    assert relaxed.details["relaxed"] is True
    assert relaxed.summary.endswith("[backup limits applied]")
    normal = replay_lag(once_cycle(config(), probes(), wall=lambda: NOW))
    assert normal.details["relaxed"] is False
    assert normal.status == Status.WARNING and relaxed.status == Status.OK


def test_probe_then_check_takes_the_relaxation_decided_in_between():
    probed = probe_cycle(config(), probes())
    assert probed.role == Role.SECONDARY
    assert probed.names == ("drbd", "postgres_role", "replay_lag", "storage")
    assert "services" not in probed.snapshots  # only what the role's checks need
    cycle = check_cycle(probed, config(), {"replay_lag": Relaxation(True, "test", NOW)})
    assert replay_lag(cycle).details["relaxed"] is True
    assert replay_lag(check_cycle(probed, config())).details["relaxed"] is False
