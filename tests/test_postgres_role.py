"""postgres_role: every verdict from hand-built snapshots, then against the real pair."""

from __future__ import annotations

import time

import pytest

from watchdog.checks.postgres_role import check_postgres_role
from watchdog.config import PostgresConfig
from watchdog.model import Role, Status
from watchdog.probes.postgres import PgSnapshot, probe_postgres

PRIMARY = PgSnapshot(reachable=True, in_recovery=False, server_version=150020)
STANDBY = PgSnapshot(reachable=True, in_recovery=True, server_version=150020)


@pytest.mark.parametrize("role,snap", [(Role.PRIMARY, PRIMARY), (Role.SECONDARY, STANDBY)])
def test_matching_roles_are_ok(role, snap):
    result = check_postgres_role(snap, role)
    assert result.status == Status.OK
    assert f"as a DRBD {role.value} should" in result.summary
    assert result.details["drbd_role"] == role.value


def test_drbd_primary_with_postgres_in_recovery_is_critical():
    result = check_postgres_role(STANDBY, Role.PRIMARY)
    assert result.status == Status.CRITICAL
    assert result.summary.startswith("role mismatch: DRBD is primary but PostgreSQL is in recovery")


def test_drbd_secondary_with_postgres_primary_is_split_brain():
    result = check_postgres_role(PRIMARY, Role.SECONDARY)
    assert result.status == Status.CRITICAL
    assert "split brain at the database level" in result.summary


def test_unknown_role_reports_reachability_and_recovery_state():
    assert check_postgres_role(PRIMARY, Role.UNKNOWN).summary == (
        "PostgreSQL answers, not in recovery (primary); DRBD role unknown")
    assert check_postgres_role(STANDBY, Role.UNKNOWN).status == Status.OK
    down = PgSnapshot(reachable=False, error="boom")
    assert check_postgres_role(down, Role.UNKNOWN).status == Status.CRITICAL


@pytest.mark.parametrize("role", list(Role))
def test_cannot_connect_is_critical_with_libpq_reason(role):
    reason = ('connection failed: connection to server at "127.0.0.1", port 5 failed: '
              "Connection refused")
    result = check_postgres_role(PgSnapshot(reachable=False, error=reason), role)
    assert result.status == Status.CRITICAL
    assert result.summary == f"cannot connect to PostgreSQL: {reason}"
    assert result.details["reachable"] is False and result.details["error"] == reason


def test_connected_but_no_answer_is_critical():
    snap = PgSnapshot(reachable=True, error="connected, but no answer within query_timeout 2.0s")
    result = check_postgres_role(snap, Role.SECONDARY)
    assert result.status == Status.CRITICAL
    assert result.summary.startswith("PostgreSQL does not answer: connected, but no answer")


# ------------------------------------------------------------ the real pair


def _probe(dsn: str, connect_timeout: float = 2.0) -> PgSnapshot:
    return probe_postgres(PostgresConfig(dsn=dsn, connect_timeout=connect_timeout,
                                         query_timeout=3.0))


@pytest.mark.postgres
def test_real_roles_match_and_mismatch(pg):
    primary, standby = _probe(pg.primary_dsn), _probe(pg.standby_dsn)
    assert check_postgres_role(primary, Role.PRIMARY).status == Status.OK
    assert check_postgres_role(standby, Role.SECONDARY).status == Status.OK
    # DRBD says primary, but this PostgreSQL is in recovery; and the reverse.
    mismatch = check_postgres_role(standby, Role.PRIMARY)
    assert mismatch.status == Status.CRITICAL and "in recovery" in mismatch.summary
    split = check_postgres_role(primary, Role.SECONDARY)
    assert split.status == Status.CRITICAL and "split brain" in split.summary


@pytest.mark.postgres
def test_real_frozen_standby_is_critical_within_connect_timeout(pg):
    pg.freeze("standby")
    start = time.monotonic()
    snap = _probe(pg.standby_dsn, connect_timeout=1.0)
    result = check_postgres_role(snap, Role.SECONDARY)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0 + 1.0  # a deadline, not a speed test
    assert result.status == Status.CRITICAL
    assert "no answer within connect_timeout 1.0s" in result.summary
    pg.thaw("standby")
    assert check_postgres_role(_probe(pg.standby_dsn), Role.SECONDARY).status == Status.OK


@pytest.mark.postgres
def test_real_stopped_server_gives_libpq_reason(pg):
    pg.stop_standby()
    result = check_postgres_role(_probe(pg.standby_dsn), Role.SECONDARY)
    assert result.status == Status.CRITICAL
    assert "Connection refused" in result.summary
    assert "\n" not in result.summary
