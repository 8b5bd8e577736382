"""Shared pytest fixtures. Each block below belongs to one part of the suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT))


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def is_root() -> bool:
    return os.geteuid() == 0

# ---- postgres fixtures (begin)
def read_psql_expanded(path: Path) -> list:
    """Records of a `psql -x` capture as dicts (NULL -> None); `(0 rows)` -> []."""
    records: list = []
    for line in path.read_text().splitlines():
        if line.startswith("-[ RECORD"):
            records.append({})
        elif "|" in line and records:
            key, _, value = line.partition("|")
            value = value[1:] if value.startswith(" ") else value
            records[-1][key.strip()] = value.rstrip() or None
    return records


@pytest.fixture
def pg_sample():
    """`pg_sample("09")`: the records of tests/fixtures/postgres/postgres15-09-*.txt."""

    def load(number: str) -> list:
        (path,) = sorted((FIXTURES / "postgres").glob(f"postgres15-{number}-*.txt"))
        return read_psql_expanded(path)

    return load


@pytest.fixture(scope="session")
def pg_cluster():
    """One real primary + streaming standby for the whole session (tests repair it, see `pg`)."""
    import tempfile

    pytest.importorskip("psycopg")
    from lab.pgcluster import PgCluster, PgClusterError, find_bindir

    try:
        find_bindir()
    except PgClusterError as exc:
        pytest.skip(str(exc))
    cluster = PgCluster(tempfile.mkdtemp(prefix="ha-watchdog-pg-"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg(pg_cluster):
    """The shared cluster; whatever a test froze, stopped or paused is undone afterwards."""
    yield pg_cluster
    pg_cluster.heal()


@pytest.fixture
def pg_private():
    """A cluster of its own, for tests that break it beyond `heal()` (promotion)."""
    import tempfile

    pytest.importorskip("psycopg")
    from lab.pgcluster import PgCluster, PgClusterError, find_bindir

    try:
        find_bindir()
    except PgClusterError as exc:
        pytest.skip(str(exc))
    with PgCluster(tempfile.mkdtemp(prefix="ha-watchdog-pg-")) as cluster:
        yield cluster


# PostgreSQL version matrix: every test that takes `pg_version` (or pgv_cluster / pgv /
# pgv_private) runs once per version of lab.pgversions.tested_versions(). Builds come
# from .ci/pg-builds; a version that is not installed skips with the reason.
def _pg_matrix() -> list:
    from lab.pgversions import tested_versions

    return tested_versions()


@pytest.fixture(scope="session", params=_pg_matrix(), ids=lambda v: f"pg{v}")
def pg_version(request) -> str:
    """One major version of the matrix ("9.5", "10", ... "18"); skips if it is not installed."""
    pytest.importorskip("psycopg")
    from lab.pgcluster import PgClusterError
    from lab.pgversions import PgVersionMissing, bindir_for

    try:
        bindir_for(request.param)
    except (PgVersionMissing, PgClusterError) as exc:
        pytest.skip(f"PostgreSQL {request.param} tier skipped: {exc}")
    return request.param


@pytest.fixture(scope="session")
def pgv_cluster(pg_version):
    """A primary + streaming standby of `pg_version`, shared by that version's tests."""
    import tempfile

    from lab.pgcluster import PgCluster

    cluster = PgCluster(tempfile.mkdtemp(prefix=f"ha-watchdog-pg{pg_version}-"),
                        version=pg_version)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pgv(pgv_cluster):
    """The version's shared cluster, healed after each test (like `pg`)."""
    yield pgv_cluster
    pgv_cluster.heal()


@pytest.fixture
def pgv_private(pg_version):
    """A cluster of `pg_version` of its own, for tests that break it beyond `heal()`."""
    import tempfile

    from lab.pgcluster import PgCluster

    with PgCluster(tempfile.mkdtemp(prefix=f"ha-watchdog-pg{pg_version}-"),
                   version=pg_version) as cluster:
        yield cluster


def pytest_collection_modifyitems(config, items):
    """Mark the matrix tests `pgmatrix`, so a pass can select or leave them out."""
    for item in items:
        if "pg_version" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.pgmatrix)
# ---- postgres fixtures (end)

# ---- daemontools fixtures (begin)
@pytest.fixture
def daemontools_fixtures() -> Path:
    """Recorded svstat outputs (provenance in tests/fixtures/SOURCES.md)."""
    return FIXTURES / "daemontools"


@pytest.fixture
def service_tree(tmp_path):
    """Factory for real svscan service trees (lab.services), closed at teardown.

    Skips the test when daemontools (svscan, supervise, svstat, svc) is not installed.
    """
    from lab.services import ServiceTree, missing_tools

    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    trees = []

    def make(services, **kwargs):
        tree = ServiceTree(str(tmp_path), services, **kwargs)
        tree.open()
        trees.append(tree)
        return tree

    yield make
    for tree in trees:
        tree.close()
# ---- daemontools fixtures (end)

# ---- alerts fixtures (begin)
@pytest.fixture
def http_receiver():
    """A real HTTP server on loopback that records what apprise's json:// posts."""
    from lab.receivers import HttpReceiver

    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def smtp_receiver():
    """A real SMTP server (aiosmtpd) on loopback for apprise's mailto://."""
    from lab.receivers import SmtpReceiver

    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def make_notification():
    """Build a Notification the way the decision core does: stable title per node and check."""
    import itertools

    from watchdog.alerts import notification as nt

    counter = itertools.count()
    kinds = {
        nt.SEV_CRITICAL: nt.PROBLEM,
        nt.SEV_WARNING: nt.PROBLEM,
        nt.SEV_RECOVERY: nt.RECOVERY,
        nt.SEV_INFO: nt.INFO,
    }

    def make(check="drbd", severity=nt.SEV_CRITICAL, body=None, created=None, node="mail1",
             kind=None, problem_severity=None):
        seq = next(counter)
        kind = kind or kinds[severity]
        created = 1_700_000_000.0 + seq if created is None else created
        return nt.Notification(
            id=nt.make_id(node, check, kind, created, seq),
            kind=kind,
            severity=severity,
            notify_type=nt.notify_type_for(severity),
            title=nt.title_for(node, check),
            body=body or f"{check} {kind} ({severity}) #{seq}",
            node=node,
            created=created,
            check=check,
            problem_severity=problem_severity,
        )

    return make


@pytest.fixture
def alerts_config():
    """A Config with the given alert targets and fast retries (tests talk to loopback)."""
    from watchdog.config import AlertsConfig, AlertTarget, Config, NodeConfig

    def make(*targets, retries=2, retry_max_wait=0.05, send_timeout=5.0, expire=86400.0):
        built = tuple(
            t if isinstance(t, AlertTarget) else AlertTarget(**t) for t in targets
        )
        return Config(
            node=NodeConfig(name="mail1"),
            alerts=AlertsConfig(
                retries=retries,
                retry_max_wait=retry_max_wait,
                send_timeout=send_timeout,
                expire=expire,
                targets=built,
            ),
        )

    return make
# ---- alerts fixtures (end)


# ---- password role fixtures (begin)
@pytest.fixture
def password_role(pg):
    """(cluster, role, password): a login role of the shared primary that must send its
    password (scram-sha-256) over the unix socket and TCP loopback, with pg_monitor; the
    hba lines go first, and everything is undone afterwards."""
    import time

    role, password = "hw_password_test", "s3cret-Passfile-42"
    hba = Path(pg.node("primary").datadir) / "pg_hba.conf"
    original = hba.read_text()
    pg.query("primary", f"DROP ROLE IF EXISTS {role}")
    pg.query("primary", "SET password_encryption = 'scram-sha-256'")
    pg.query("primary", f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg.query("primary", f"GRANT pg_monitor TO {role}")
    lines = f"local all {role} scram-sha-256\nhost all {role} 127.0.0.1/32 scram-sha-256\n"
    with open(hba, "r+") as handle:  # in place: the file stays the postgres user's
        handle.write(lines + original)
    pg.query("primary", "SELECT pg_reload_conf()")
    time.sleep(0.5)
    try:
        yield pg, role, password
    finally:
        with open(hba, "w") as handle:
            handle.write(original)
        pg.query("primary", "SELECT pg_reload_conf()")
        pg.query("primary", f"DROP ROLE IF EXISTS {role}")
# ---- password role fixtures (end)
