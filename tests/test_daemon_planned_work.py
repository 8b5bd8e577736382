"""Planned work must not page (issue 11, items 14-15): real daemons, real PostgreSQL pairs.

- A planned failover (stop the primary's PostgreSQL, swap the DRBD roles, promote the
  standby, rebuild the old primary as its standby) sends ROLE CHANGE naming the grace, and
  no PROBLEM for `standbys` from the new primary; a standby still missing when that grace
  ends is paged then.
- A walsender reconnect (the walreceiver retries every wal_retrieve_retry_interval, here
  PostgreSQL's default 5 s) is ridden out; a stopped standby is still paged when
  `reconnect_grace` ends, by an extra cycle rather than the next regular one.
- Replay held back on the standby by a backup session (pg_dump's application name, a
  snapshot conflicting with the primary's lock) is judged by the secondary with its backup
  limits; the primary, which cannot see that backup, sends no WARNING for it.

`standbys` runs with its default debounce (`for` 0s: the setting the issue pages with; the
lab's is 1s) and the default graces (reconnect_grace 15s, role_change_grace 5m) unless a
test says otherwise. Times are printed (pytest -s) for the record, never asserted as speed: the
assertions are about which alerts arrived, and that a grace was not cut short.
"""

from __future__ import annotations

import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from lab.cluster import lab_node
from lab.drbdstate import DrbdStateFile
from lab.node import NodeDaemon
from lab.receivers import is_about

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

HEALTHY_SERVICES = [
    "sh",
    "-c",
    "echo '/service/hvmail-httpd: up (pid 100) 1000 seconds';"
    "echo '/service/hvmail-dnscache: down 1000 seconds'",
]


@pytest.fixture(scope="module")
def pg_defaults() -> Iterator[Any]:
    """A pair of its own with PostgreSQL's default reconnect pace (the lab uses 1 s), and a
    standby that waits for ever on a replay conflict (so a backup session holds replay)."""
    pytest.importorskip("psycopg")
    from lab.pgcluster import PgCluster, PgClusterError, find_bindir

    try:
        find_bindir()
    except PgClusterError as exc:
        pytest.skip(str(exc))
    cluster = PgCluster(
        tempfile.mkdtemp(prefix="ha-watchdog-pg-"),
        settings={"wal_retrieve_retry_interval": "5s"},
        standby_settings={"max_standby_streaming_delay": "-1"},
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pgd(pg_defaults: Any) -> Iterator[Any]:
    yield pg_defaults
    pg_defaults.heal()


# The shipped debounce of the checks a failover touches (the lab shortens them to 1-2 s).
DEFAULT_FOR = {"standbys": {"for": "0s"}, "postgres_role": {"for": "30s"},
               "replay_lag": {"for": "2m"}}


def make_node(
    tmp_path: Path,
    dsn: str,
    role: str,
    receiver: Any,
    name: str,
    overrides: Optional[Dict[str, Any]] = None,
    defaults: Optional[Dict[str, Any]] = None,
) -> Tuple[NodeDaemon, DrbdStateFile]:
    """A lab node with `standbys` timing at its defaults, then `defaults`, then `overrides`."""
    # Pinned to the shipped defaults (test_debounce checks they are), whatever the lab sets.
    merged: Dict[str, Dict[str, Any]] = {
        "standbys": {"for": "0s", "reconnect_grace": "15s", "role_change_grace": "5m"}}
    for layer in (defaults or {}, overrides or {}):
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    overrides = merged
    return lab_node(str(tmp_path / name), name, role, str(dsn),
                    services_command=HEALTHY_SERVICES,
                    targets=[{"name": "hook", "url": receiver.url}], overrides=overrides)


def titled(receiver: Any, title: str) -> List[Dict[str, Any]]:
    """Messages about `title` ("[p1] standbys"): chat titles carry a subject after the
    stable title ("[p1] standbys CRITICAL: ..."), which still starts them."""
    return [m for m in receiver.messages if is_about(m.get("title"), title)]


def kinds(messages: List[Dict[str, Any]]) -> List[str]:
    return [m["message"].split(":", 1)[0].split()[0] for m in messages]


def wait_cycles(node: NodeDaemon, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    start = node.cycles()
    while node.cycles() < start + count:
        assert node.running(), "\n".join(node.log()[-30:])
        assert time.monotonic() < deadline, "\n".join(node.log()[-30:])
        time.sleep(0.1)


def hold(node: NodeDaemon, seconds: float) -> None:
    """Let the daemon run for `seconds` (it must keep running)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert node.running(), "\n".join(node.log()[-30:])
        time.sleep(0.2)


def named_time(text: str) -> float:
    """The epoch of the first 'YYYY-MM-DD HH:MM:SS UTC' after 'still missing at' in `text`."""
    match = re.search(r"still missing at (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", text)
    assert match, text
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=timezone.utc).timestamp()


def summary(receiver: Any) -> List[str]:
    return [f"{m['title']}: {m['message'].splitlines()[0]}" for m in receiver.messages]


# ---------------------------------------------------------------- item 14: failover


# The new primary runs without a standby this long before the rebuild starts: longer than
# reconnect_grace (15s), so only role_change_grace can keep it quiet (a real rebuild of a
# large database takes minutes; the lab's takes about a second).
REBUILD_AFTER = 18.0


def planned_failover(pg: Any, old_drbd: DrbdStateFile, new_drbd: DrbdStateFile,
                     rebuild_after: Optional[float] = REBUILD_AFTER) -> None:
    """The runbook: stop the primary's PostgreSQL, swap DRBD, promote, rebuild the old one."""
    pg.stop_primary()
    old_drbd.secondary()
    new_drbd.primary()
    pg.promote_standby()
    if rebuild_after is not None:
        time.sleep(rebuild_after)
        pg.reattach_old_primary()  # pg_basebackup from the new primary, start, streaming


def test_planned_failover_sends_role_change_with_the_grace_and_no_standbys_problem(
    tmp_path, pg_private, http_receiver
):
    pg = pg_private
    p1, p1_drbd = make_node(tmp_path, pg.primary_dsn, "primary", http_receiver, "p1",
                            defaults=DEFAULT_FOR)
    s1, s1_drbd = make_node(tmp_path, pg.standby_dsn, "secondary", http_receiver, "s1",
                            defaults=DEFAULT_FOR)
    with p1, s1:
        wait_cycles(p1, 3)
        wait_cycles(s1, 3)
        started = time.monotonic()
        planned_failover(pg, p1_drbd, s1_drbd)
        took = time.monotonic() - started
        assert s1.wait_log(r"s1 primary .*standbys=ok", 30), "\n".join(s1.log()[-20:])
        hold(s1, 3)  # streaming again: a few more cycles, so a late PROBLEM would be here
        assert http_receiver.wait_for(lambda m: titled(http_receiver, "[s1] role"), 10)
    print(f"\nfailover took {took:.1f}s ({REBUILD_AFTER:g}s before the rebuild); "
          f"alerts: {summary(http_receiver)}")
    change = titled(http_receiver, "[s1] role")[0]
    assert "now primary (was secondary)" in change["message"]
    assert "standbys.role_change_grace" in change["message"] and "(5m00s," in change["message"]
    assert titled(http_receiver, "[s1] standbys") == [], summary(http_receiver)
    # With the shipped debounce the whole planned failover pages nobody: role changes only.
    # The stable title starts each chat title ("[p1] role CHANGE: now secondary ...").
    stable = {" ".join(str(m["title"]).split()[:2]) for m in http_receiver.messages}
    assert stable == {"[p1] role", "[s1] role"}, (
        summary(http_receiver))
    # The raw check saw the standby missing for longer than reconnect_grace: the
    # role-change grace, not luck, kept it quiet.
    missing = [line for line in s1.log() if "s1 primary" in line and "standbys=critical" in line]
    assert len(missing) > 15 / 0.5, f"{len(missing)} cycles saw the standby missing"


def test_standby_still_missing_when_the_named_grace_ends_is_paged_then(
    tmp_path, pg_private, http_receiver
):
    pg = pg_private
    grace = {"standbys": {"role_change_grace": "25s"}}  # longer than reconnect_grace (15s)
    p1, p1_drbd = make_node(tmp_path, pg.primary_dsn, "primary", http_receiver, "p1", grace)
    s1, s1_drbd = make_node(tmp_path, pg.standby_dsn, "secondary", http_receiver, "s1", grace)
    with s1:
        wait_cycles(s1, 3)
        planned_failover(pg, p1_drbd, s1_drbd, rebuild_after=None)  # the old one stays down
        assert http_receiver.wait_for(lambda m: titled(http_receiver, "[s1] role"), 20)
        assert http_receiver.wait_for(lambda m: titled(http_receiver, "[s1] standbys"), 40), (
            "\n".join(s1.log()[-20:]))
        paged = time.time()
    change = titled(http_receiver, "[s1] role")[0]["message"]
    due = named_time(change)
    problem = titled(http_receiver, "[s1] standbys")
    print(f"\nROLE CHANGE named {due:.0f}; PROBLEM arrived {paged - due:+.1f}s after it")
    assert kinds(problem) == ["PROBLEM"] and problem[0]["type"] == "failure"
    assert "Still missing 25s after this node's role change" in problem[0]["message"]
    # Not before the time the ROLE CHANGE named (it is printed to the second).
    assert paged >= due, (paged, due)


# ---------------------------------------------------------------- item 14: steady state


def walsender_pids(pg: Any) -> List[int]:
    return [row[0] for row in pg.query(
        "primary", "SELECT pid FROM pg_stat_replication WHERE state = 'streaming'")]


def kill_walsenders(pg: Any) -> None:
    """Terminate the walsenders; wait until the standby streams on a new one."""
    old = set(walsender_pids(pg))
    pg.query("primary", "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
    deadline = time.monotonic() + 20
    while not set(walsender_pids(pg)) - old:
        assert time.monotonic() < deadline, "the standby did not reconnect"
        time.sleep(0.05)


def test_walsender_reconnect_is_ridden_out(tmp_path, pgd, http_receiver):
    """The first reconnect after a long stream is immediate; a second connection loss
    within wal_retrieve_retry_interval waits that interval (5s), as after a network blip."""
    node, _ = make_node(tmp_path, pgd.primary_dsn, "primary", http_receiver, "p1")
    with node:
        wait_cycles(node, 3)
        kill_walsenders(pgd)
        mark = len(node.log())
        killed = time.monotonic()
        pgd.query("primary", "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
        assert node.wait_log(r"standbys=critical", 10, start=mark), "the gap was never seen"
        pgd.wait_streaming()
        back = time.monotonic() - killed
        # Past the default reconnect_grace (15s) from the kill, and then some cycles.
        hold(node, max(0.0, 17 - (time.monotonic() - killed)))
        assert node.wait_log(r"standbys=ok", 5, start=len(node.log()) - 3)
    print(f"\nwalsender killed: the standby streamed again after {back:.1f}s; "
          f"alerts: {summary(http_receiver)}")
    assert back > 1.0  # long enough for the old `for` (1s in the lab) to have paged
    assert titled(http_receiver, "[p1] standbys") == [], summary(http_receiver)


def test_stopped_standby_is_paged_when_the_reconnect_grace_ends(tmp_path, pg, http_receiver):
    node, _ = make_node(tmp_path, pg.primary_dsn, "primary", http_receiver, "p1")
    title = "[p1] standbys"
    with node:
        wait_cycles(node, 3)
        stopped = time.monotonic()
        pg.stop_standby()
        assert http_receiver.wait_for(lambda m: titled(http_receiver, title), 40), (
            "\n".join(node.log()[-20:]))
        after = time.monotonic() - stopped
        pg.start_standby()
        assert http_receiver.wait_for(lambda m: len(titled(http_receiver, title)) >= 2, 30)
    print(f"\nstopped standby paged {after:.1f}s after pg_ctl stop (interval 0.5s)")
    problem, recovery = titled(http_receiver, title)
    assert kinds([problem, recovery]) == ["PROBLEM", "RECOVERY"]
    assert problem["type"] == "failure"
    assert "Missing for longer than standbys.reconnect_grace (15s)" in problem["message"]
    assert after >= 15.0 - 0.1  # the grace was not cut short


def test_grace_end_runs_its_own_cycle_between_regular_ones(tmp_path, pg, http_receiver):
    """Interval 60s: the standby is down when the daemon starts; the first cycle sees it
    missing, and the PROBLEM comes from a cycle run when reconnect_grace (15s) ends, not
    from the next regular cycle a minute later."""
    node, _ = make_node(tmp_path, pg.primary_dsn, "primary", http_receiver, "p1",
                        {"daemon": {"interval": "60s"}})
    title = "[p1] standbys"
    pg.stop_standby()
    started = time.monotonic()
    with node:
        assert http_receiver.wait_for(lambda m: titled(http_receiver, title), 45), (
            "\n".join(node.log()[-20:]))
        after = time.monotonic() - started
        cycles = node.cycles()
    print(f"\nstandby down at start: paged {after:.1f}s after the daemon started, "
          f"after {cycles} cycles")
    assert cycles == 2, "\n".join(node.log())  # the first, then the one the grace asked for
    assert "Missing for longer than standbys.reconnect_grace" in titled(
        http_receiver, title)[0]["message"]


# ---------------------------------------------------------------- item 15: backup on the standby


def test_backup_on_the_standby_does_not_page_from_the_primary(tmp_path, pgd, http_receiver):
    limits = {"standbys": {"warning_bytes": "1MB"}, "replay_lag": {"warning_bytes": "1MB"}}
    p1, _ = make_node(tmp_path, pgd.primary_dsn, "primary", http_receiver, "p1", limits)
    s1, _ = make_node(tmp_path, pgd.standby_dsn, "secondary", http_receiver, "s1", limits)
    # A backup session on the standby (pg_dump's application name) holding a snapshot of
    # lab_writes; the primary's ACCESS EXCLUSIVE lock then cannot be replayed until it ends.
    dump = pgd.connect("standby", application_name="pg_dump", autocommit=False)
    lagged = 0
    try:
        dump.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        dump.execute("SELECT count(*) FROM lab_writes").fetchone()
        with p1, s1:
            wait_cycles(p1, 3)
            wait_cycles(s1, 3)
            with pgd.connect("primary", autocommit=False) as conn:
                conn.execute("LOCK TABLE lab_writes IN ACCESS EXCLUSIVE MODE")
                conn.commit()
            end = time.monotonic() + 10  # well past `for` (1s standbys, 2s replay_lag)
            while time.monotonic() < end:
                pgd.write(3000)
                lagged = int(pgd.scalar(
                    "primary",
                    "SELECT pg_current_wal_lsn() - replay_lsn FROM pg_stat_replication"))
                time.sleep(0.3)
            wait_cycles(p1, 3)
            p1_line = [line for line in p1.log() if "p1 primary" in line][-1]
            s1_line = [line for line in s1.log() if "s1 secondary" in line][-1]
    finally:
        dump.close()
    print(f"\nreplay held back by {lagged / 1024**2:.1f} MiB; p1: {p1_line}; "
          f"alerts: {summary(http_receiver)}")
    assert lagged > 2 * 1024**2, "replay was not held back beyond warning_bytes"
    assert "standbys=ok" in p1_line, p1_line
    assert "replay_lag=ok" in s1_line, s1_line  # the secondary applies its backup limits
    assert titled(http_receiver, "[p1] standbys") == [], summary(http_receiver)
    assert titled(http_receiver, "[s1] replay_lag") == [], summary(http_receiver)
