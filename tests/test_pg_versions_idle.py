"""An idle pair for a whole minute, on every PostgreSQL version of the matrix at once.

The naive lag (`now() - pg_last_xact_replay_timestamp()`) grows without bound on an idle
primary, and before 12 there is no reply_time: the classic false page. Here each version's
pair sits idle for 60 s with the *shipped* limits (max_reply_age 15 s, max_receive_age 45 s,
replay_lag 1m/5m, the canary on) while both nodes cycle every 5 s, as the daemon does; every
cycle after the first must be OK on both nodes. The versions run side by side (one pair
each, one thread each), so the minute is spent once, not once per version.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from lab.drbdstate import DrbdStateFile
from lab.pgcluster import PgCluster, PgClusterError
from lab.pgversions import PgVersionMissing, bindir_for
from lab.pgversions import tested_versions as matrix_versions
from watchdog.config import Config, DaemonConfig, DrbdConfig, NodeConfig, PostgresConfig
from watchdog.model import POSTGRES_ROLE, REPLAY_LAG, STANDBYS, Status
from watchdog.runner import Cycle, run_cycle

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.pgmatrix]

IDLE_SECONDS = 60.0
INTERVAL = 5.0


def _config(work: Path, name: str, dsn: str, role: str) -> Config:
    work.mkdir(parents=True, exist_ok=True)
    drbd = DrbdStateFile(str(work / "proc_drbd"))
    drbd.primary() if role == "primary" else drbd.secondary()
    # Everything else is the shipped default (limits, canary, debounce).
    return Config(
        node=NodeConfig(name=name),
        daemon=DaemonConfig(interval=INTERVAL, state_dir=str(work / "state")),
        drbd=DrbdConfig(path=drbd.path, format="proc"),
        postgres=PostgresConfig(dsn=dsn),
    )


def _watch(cluster: PgCluster, work: Path, out: Dict[str, Any]) -> None:
    """Both nodes' cycles every INTERVAL for IDLE_SECONDS; every non-OK result kept."""
    configs = {
        "primary": _config(work / "p1", "p1", str(cluster.primary_dsn), "primary"),
        "secondary": _config(work / "s1", "s1", str(cluster.standby_dsn), "secondary"),
    }
    previous: Dict[str, Optional[Cycle]] = {"primary": None, "secondary": None}
    bad: List[str] = []
    cycles = 0
    deadline = time.monotonic() + IDLE_SECONDS
    try:
        while True:
            started = time.monotonic()
            for role, cfg in configs.items():
                previous[role] = run_cycle(cfg, previous=previous[role])
                for check in previous[role].report.checks:
                    wanted = {POSTGRES_ROLE, STANDBYS} if role == "primary" else {
                        POSTGRES_ROLE, REPLAY_LAG}
                    if check.name in wanted and check.status != Status.OK and cycles > 0:
                        bad.append(f"{role} cycle {cycles}: {check.name} "
                                   f"{check.status.label}: {check.summary}")
            cycles += 1
            if started + INTERVAL >= deadline:
                break
            time.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))
        out["naive"] = cluster.scalar(
            "standby", "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())")
        standbys = next(c for c in previous["primary"].report.checks if c.name == STANDBYS)
        lag = next(c for c in previous["secondary"].report.checks if c.name == REPLAY_LAG)
        out["evidence"] = {
            "standbys": [e.get("evidence") for e in standbys.details.get("standbys", [])],
            "replay_lag": lag.details.get("evidence"),
        }
    except Exception as exc:  # noqa: BLE001 - reported by the test below
        bad.append(f"{type(exc).__name__}: {exc}")
    out["bad"], out["cycles"] = bad, cycles


def test_every_version_idle_for_a_minute_pages_nothing(tmp_path):
    versions = []
    for version in matrix_versions():
        try:
            bindir_for(version)
            versions.append(version)
        except (PgVersionMissing, PgClusterError) as exc:
            print(f"PostgreSQL {version} skipped: {exc}")
    if not versions:
        pytest.skip("no PostgreSQL build of the matrix is installed (run .ci/pg-builds)")
    clusters: Dict[str, PgCluster] = {}
    try:
        for version in versions:
            cluster = PgCluster(tempfile.mkdtemp(prefix=f"ha-watchdog-pg{version}-"),
                                version=version)
            clusters[version] = cluster
            cluster.start()
            # Nothing but the canary writes for the minute (no autoanalyze commit either).
            cluster.query("primary", "ALTER TABLE lab_writes SET (autovacuum_enabled = off)")
        results: Dict[str, Dict[str, Any]] = {v: {} for v in versions}
        threads = [threading.Thread(target=_watch, args=(clusters[v], tmp_path / f"pg{v}",
                                                         results[v]), daemon=True)
                   for v in versions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(IDLE_SECONDS + 120)
    finally:
        for cluster in clusters.values():
            cluster.close()
    for version in versions:
        got = results[version]
        assert got.get("cycles", 0) >= IDLE_SECONDS / INTERVAL - 1, (version, got)
        assert got["bad"] == [], (version, got["bad"])
        # The canary is why it stays OK: it is the evidence on every version.
        assert str(got["evidence"]["replay_lag"]).startswith("canary"), (version, got)
        assert got["evidence"]["standbys"] in (["reply_time"], ["flush position moved"]), (
            version, got)
