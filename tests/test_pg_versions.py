"""The PostgreSQL tier on every tested major version (9.5 - 18): same checks, same levels.

Each test runs once per version of the lab's matrix (`pgv*` fixtures, ids like `[pg9.5]`)
against a real primary + streaming standby of that version. A node is simulated the way
production runs: a DRBD state file saying primary or secondary, the real probes (the primary
writes the canary), `run_cycle` with the previous cycle passed in as the daemon does. Limits
are short (interval 1 s, max_reply_age 3 s, max_receive_age 4 s) so every scenario crosses
them in seconds; what is asserted is the check levels, and that they are the same on 9.5 as
on 15, plus the evidence each version used.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from lab.drbdstate import DrbdStateFile
from watchdog.config import (
    CanaryConfig,
    Config,
    DaemonConfig,
    DrbdConfig,
    NodeConfig,
    PostgresConfig,
    ReplayLagConfig,
    ServicesConfig,
    StandbysConfig,
)
from watchdog.model import POSTGRES_ROLE, REPLAY_LAG, STANDBYS, Status
from watchdog.probes.postgres import probe_postgres
from watchdog.runner import Cycle, run_cycle

pytestmark = pytest.mark.postgres

INTERVAL = 1.0
MAX_REPLY_AGE = 3.0
MAX_RECEIVE_AGE = 4.0


def server_version(cluster: Any, which: str = "primary") -> int:
    return int(cluster.scalar(which, "SELECT current_setting('server_version_num')::int"))


class Node:
    """One simulated node: its DRBD role in a state file, its config, its last cycle."""

    def __init__(self, tmp: Path, name: str, dsn: str, role: str, canary: bool = True,
                 max_reply_age: float = MAX_REPLY_AGE):
        work = tmp / name
        work.mkdir(parents=True, exist_ok=True)
        self.drbd = DrbdStateFile(str(work / "proc_drbd"))
        self.drbd.primary() if role == "primary" else self.drbd.secondary()
        self.cfg = Config(
            node=NodeConfig(name=name),
            daemon=DaemonConfig(interval=INTERVAL, state_dir=str(work / "state")),
            drbd=DrbdConfig(path=self.drbd.path, format="proc"),
            services=ServicesConfig(command=("true",), timeout=3.0),
            postgres=PostgresConfig(dsn=dsn, connect_timeout=2.0, query_timeout=3.0),
            canary=CanaryConfig(enabled=canary, timeout=2.0),
            standbys=StandbysConfig(max_reply_age=max_reply_age),
            replay_lag=ReplayLagConfig(warning=2.0, critical=6.0,
                                       max_receive_age=MAX_RECEIVE_AGE),
        )
        self.previous: Optional[Cycle] = None

    def cycle(self) -> Dict[str, Any]:
        """One cycle as the daemon runs it: {check name: CheckResult}."""
        self.previous = run_cycle(self.cfg, previous=self.previous)
        return {c.name: c for c in self.previous.report.checks}


@pytest.fixture
def nodes(tmp_path):
    def make(cluster: Any, canary: bool = True, max_reply_age: float = MAX_REPLY_AGE
             ) -> List[Node]:
        return [Node(tmp_path, "p1", str(cluster.primary_dsn), "primary", canary,
                     max_reply_age),
                Node(tmp_path, "s1", str(cluster.standby_dsn), "secondary", canary)]

    return make


def run_for(seconds: float, primary: Node, secondary: Node) -> List[Dict[str, Any]]:
    """Both nodes' cycles every INTERVAL for `seconds`: [{"p": checks, "s": checks}]."""
    out = []
    deadline = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        out.append({"p": primary.cycle(), "s": secondary.cycle()})
        if started + INTERVAL >= deadline:
            return out
        time.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))


def until(node: Node, check: str, status: Status, cycles: int) -> List[Any]:
    """Cycle `node` every INTERVAL until `check` has `status`; the results seen, in order."""
    seen = []
    for _ in range(cycles):
        started = time.monotonic()
        seen.append(node.cycle()[check])
        if seen[-1].status == status:
            return seen
        time.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))
    raise AssertionError(f"{check} never {status.label} in {cycles} cycles: "
                         f"{[r.summary for r in seen[-3:]]}")


def levels(checks: Dict[str, Any]) -> Dict[str, str]:
    return {name: c.status.label for name, c in checks.items()
            if name in (POSTGRES_ROLE, STANDBYS, REPLAY_LAG)}


# ------------------------------------------------------------ the probe


def test_probe_reads_every_field_and_writes_the_canary(pgv):
    version = server_version(pgv)
    cfg = PostgresConfig(dsn=str(pgv.primary_dsn), connect_timeout=2.0, query_timeout=3.0)
    deadline = time.monotonic() + 5
    while True:  # a walsender shows NULL positions for a moment after the standby connects
        primary = probe_postgres(cfg, canary=CanaryConfig())
        if time.monotonic() > deadline or all(
                w.flush_lsn is not None for w in primary.walsenders):
            break
        time.sleep(0.2)
    assert primary.answered, primary.error
    assert primary.server_version == version and primary.in_recovery is False
    assert primary.current_lsn is not None
    (sender,) = [w for w in primary.walsenders if w.application_name == "standby1"]
    assert sender.state == "streaming" and sender.flush_lsn is not None
    assert (sender.reply_age is not None) == (version >= 120000)
    assert primary.canary is not None and primary.canary.ok, primary.canary
    assert primary.canary.xid and primary.canary.before_lsn >= primary.current_lsn

    pgv.wait_replayed()  # the canary reached the standby (9.5 titles "streaming" from then)
    cfg = PostgresConfig(dsn=str(pgv.standby_dsn), connect_timeout=2.0, query_timeout=3.0)
    standby = probe_postgres(cfg, canary=CanaryConfig())  # asked, but it is in recovery
    deadline = time.monotonic() + 5
    while (standby.receiver_process is not None and standby.receiver_process.status is None
           and time.monotonic() < deadline):
        # 9.5 sets "streaming X/Y" in the title just after the flush that lets replay go on.
        time.sleep(0.1)
        standby = probe_postgres(cfg)
    assert standby.answered, standby.error
    assert standby.in_recovery is True and standby.canary is None
    assert standby.receive_lsn is not None and standby.replay_lsn is not None
    assert standby.replay_paused == "not paused"
    assert standby.server_age is not None and standby.server_age > 0
    if version >= 90600:
        assert standby.walreceiver is not None and standby.walreceiver.status == "streaming"
        assert standby.receiver_process is None
    else:
        assert standby.walreceiver is None
        process = standby.receiver_process
        assert process is not None and process.found, process
        assert process.status == "streaming" and process.state in ("S", "R")
        assert "wal receiver process" in process.title


# ------------------------------------------------------------ scenarios


def test_idle_primary_stays_ok_with_the_canary(pgv, nodes):
    """Idle for well past every limit (naive replay age, max_reply_age, max_receive_age):
    the canary keeps the evidence fresh on every version."""
    primary, secondary = nodes(pgv)
    version = server_version(pgv)
    rounds = run_for(4 * MAX_RECEIVE_AGE, primary, secondary)
    for number, both in enumerate(rounds[1:], 2):
        assert levels(both["p"]) == {POSTGRES_ROLE: "ok", STANDBYS: "ok"}, (
            number, both["p"][STANDBYS].summary)
        assert levels(both["s"]) == {POSTGRES_ROLE: "ok", REPLAY_LAG: "ok"}, (
            number, both["s"][REPLAY_LAG].summary)
    last = rounds[-1]
    entry = last["p"][STANDBYS].details["standbys"][0]
    assert entry["evidence"] == ("reply_time" if version >= 120000 else "flush position moved")
    lag = last["s"][REPLAY_LAG].details
    assert lag["evidence"].startswith("canary")
    assert lag["canary_age"] is not None and 0 <= lag["canary_age"] < 2 * INTERVAL + 1
    assert last["p"][POSTGRES_ROLE].details["canary"]["written"] is True


def test_replay_paused_while_writing(pgv, nodes):
    primary, secondary = nodes(pgv)
    run_for(0, primary, secondary)
    pgv.pause_replay()
    for _ in range(3):
        pgv.write(200)
    result = secondary.cycle()[REPLAY_LAG]
    assert result.status == Status.WARNING, result.summary
    assert "replay paused by an operator" in result.summary
    assert result.details["lag_bytes"] > 0
    assert primary.cycle()[STANDBYS].status == Status.OK


def test_standby_stopped(pgv, nodes):
    primary, secondary = nodes(pgv)
    run_for(0, primary, secondary)
    pgv.stop_standby()
    checks = primary.cycle()
    assert checks[STANDBYS].status == Status.CRITICAL
    assert "no standby connected" in checks[STANDBYS].summary
    checks = secondary.cycle()
    assert levels(checks) == {POSTGRES_ROLE: "critical", REPLAY_LAG: "unknown"}


def test_standby_hung_with_tcp_open(pgv, nodes):
    """Seen within max_reply_age + one interval on every version (reply_time from 12,
    the flush position before)."""
    primary, secondary = nodes(pgv)
    version = server_version(pgv)
    run_for(2 * INTERVAL, primary, secondary)
    pgv.freeze_walreceiver()
    seen = until(primary, STANDBYS, Status.CRITICAL, cycles=12)
    # Cycles 1 s apart: the hang shows within max_reply_age + 1 interval (+1 for jitter).
    assert len(seen) <= MAX_REPLY_AGE / INTERVAL + 2, [r.summary for r in seen]
    entry = seen[-1].details["standbys"][0]
    if version >= 120000:
        assert entry["evidence"] == "reply_time" and "no reply for" in entry["reason"]
    else:
        assert entry["evidence"] == "flush position stalled", entry
        assert "flush position stalled" in entry["reason"]
    lag = until(secondary, REPLAY_LAG, Status.CRITICAL, cycles=10)[-1]
    assert "not receiving WAL" in lag.summary


def test_wal_receiver_gone(pgv, nodes):
    """The standby cannot reconnect (its replication role may no longer log in): no WAL
    receiver streams; caught on 9.5 too (process titles, the canary)."""
    primary, secondary = nodes(pgv)
    run_for(2 * INTERVAL, primary, secondary)
    (user,) = pgv.query("primary", "SELECT DISTINCT usename::text FROM pg_stat_replication")[0]
    pgv.query("primary", f'ALTER ROLE "{user}" NOLOGIN')
    try:
        pgv.query("primary", "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
        lag = until(secondary, REPLAY_LAG, Status.CRITICAL, cycles=int(MAX_RECEIVE_AGE) + 6)
        assert "not receiving WAL" in lag[-1].summary
        standbys = until(primary, STANDBYS, Status.CRITICAL, cycles=5)[-1]
        assert "no standby connected" in standbys.summary
    finally:
        pgv.query("primary", f'ALTER ROLE "{user}" LOGIN')


def test_standby_promoted(pgv_private, nodes):
    primary, secondary = nodes(pgv_private)
    run_for(0, primary, secondary)
    pgv_private.promote_standby()
    deadline = time.monotonic() + 30
    while pgv_private.scalar("standby", "SELECT pg_is_in_recovery()"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    xact = "txid_current()" if server_version(pgv_private) < 130000 else "pg_current_xact_id()"
    before = int(str(pgv_private.scalar("standby", f"SELECT {xact}")))
    checks = secondary.cycle()
    assert levels(checks) == {POSTGRES_ROLE: "critical", REPLAY_LAG: "unknown"}
    assert "second primary" in checks[POSTGRES_ROLE].summary
    assert "canary" not in checks[POSTGRES_ROLE].details  # DRBD secondary: never writes
    after = int(str(pgv_private.scalar("standby", f"SELECT {xact}")))
    assert after == before + 1  # only our own txid query took one
    result = until(primary, STANDBYS, Status.CRITICAL, cycles=5)[-1]
    assert "no standby connected" in result.summary


def test_canary_off(pgv, nodes):
    """Without the canary an idle pair gives what each version can: OK with reply_time and
    pg_stat_wal_receiver, otherwise UNKNOWN naming what to enable, never CRITICAL."""
    # An idle standby replies every wal_receiver_status_interval (10 s): the default limit.
    primary, secondary = nodes(pgv, canary=False, max_reply_age=15.0)
    version = server_version(pgv)
    time.sleep(MAX_RECEIVE_AGE + 1)  # no commit since: the last replayed one is old
    rounds = run_for(2 * INTERVAL, primary, secondary)
    last = rounds[-1]
    assert "canary" not in last["p"][POSTGRES_ROLE].details
    standbys = last["p"][STANDBYS]
    assert standbys.status != Status.CRITICAL, standbys.summary
    evidence = standbys.details["standbys"][0]["evidence"]
    if version >= 120000:
        assert evidence == "reply_time" and standbys.status == Status.OK
    elif evidence == "no WAL moved":
        assert standbys.status == Status.UNKNOWN and "[canary]" in standbys.summary
    else:  # a checkpoint or running-xacts record moved the WAL meanwhile
        assert evidence == "flush position moved" and standbys.status == Status.OK
    lag = last["s"][REPLAY_LAG]
    if version >= 90600:
        # Keepalives reach the standby every wal_sender_timeout/2 (30 s): with these short
        # limits only the view's status is compared here.
        assert lag.details["evidence"] == "pg_stat_wal_receiver"
    else:
        assert lag.status == Status.UNKNOWN, lag.summary
        assert "PostgreSQL 9.5 has no pg_stat_wal_receiver" in lag.summary
        assert "[canary]" in lag.details["advice"]
    # Turned on: the same pair is OK on every version within two cycles.
    primary, secondary = nodes(pgv, canary=True)
    last = run_for(2 * INTERVAL, primary, secondary)[-1]
    assert levels(last["s"]) == {POSTGRES_ROLE: "ok", REPLAY_LAG: "ok"}, (
        last["s"][REPLAY_LAG].summary)
    assert last["s"][REPLAY_LAG].details["evidence"].startswith("canary")


def test_once_on_a_healthy_pair(pgv, tmp_path):
    """`ha-watchdog --once` on each node of a healthy pair, primary first (its canary is
    what the secondary's run sees): the PostgreSQL checks OK on both, on every version."""
    from lab.node import node_sections, render_config

    outputs = {}
    for name, dsn, role in (("p1", pgv.primary_dsn, "primary"),
                            ("s1", pgv.standby_dsn, "secondary")):
        work = tmp_path / name
        work.mkdir()
        drbd = DrbdStateFile(str(work / "proc_drbd"))
        drbd.primary() if role == "primary" else drbd.secondary()
        path = work / "config.toml"
        path.write_text(render_config(node_sections(name, str(work / "state"), drbd.path,
                                                    str(dsn))))
        path.chmod(0o600)
        argv = [sys.executable, "-m", "watchdog", "--config", str(path), "--once", "--json"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.stdout, result.stderr
        outputs[role] = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    primary, secondary = outputs["primary"], outputs["secondary"]
    assert primary[POSTGRES_ROLE]["status"] == "ok", primary[POSTGRES_ROLE]["summary"]
    assert primary[POSTGRES_ROLE]["details"]["canary"]["written"] is True
    assert primary[STANDBYS]["status"] == "ok", primary[STANDBYS]["summary"]
    assert secondary[POSTGRES_ROLE]["status"] == "ok", secondary[POSTGRES_ROLE]["summary"]
    assert secondary[REPLAY_LAG]["status"] == "ok", secondary[REPLAY_LAG]["summary"]
    assert secondary[REPLAY_LAG]["details"]["evidence"].startswith("canary")


def test_daemon_sees_a_hung_standby_within_max_reply_age_plus_one_interval(pgv, tmp_path):
    """The real daemon, with an interval longer than max_reply_age: its re-check cycle
    (after the canary before 12, on the reply's age from 12) catches a standby that hangs
    with its TCP connection open within max_reply_age + one interval."""
    from lab.node import NodeDaemon, node_sections

    interval, max_reply_age = 6.0, 3.0
    work = tmp_path / "p1"
    work.mkdir()
    drbd = DrbdStateFile(str(work / "proc_drbd"))
    drbd.primary()
    sections = node_sections("p1", str(work / "state"), drbd.path, str(pgv.primary_dsn),
                             interval=f"{interval:g}s",
                             overrides={"standbys": {"max_reply_age": f"{max_reply_age:g}s"},
                                        # read from its log here: no target on purpose
                                        "alerts": {"allow_silent": True}})
    with NodeDaemon("p1", str(work), sections) as node:
        # OK first (an idle standby's reply may be up to 10 s old until the canary's WAL
        # makes it reply: the first cycles may see it stale under load).
        assert node.wait_log(r"cycle \d+: .*standbys=ok", timeout=5 * interval), (
            node.log()[-5:])
        start = len(node.log())
        pgv.freeze_walreceiver()
        hung_at = time.monotonic()
        line = node.wait_log(r"standbys=critical", timeout=max_reply_age + 3 * interval,
                             start=start)
        seen_after = time.monotonic() - hung_at
    assert line is not None, node.log()[-8:]
    # + 2 s: the daemon's re-check margin (0.5 s), a cycle's own time, this loop's polling.
    assert seen_after <= max_reply_age + interval + 2.0, (seen_after, node.log()[start:])
