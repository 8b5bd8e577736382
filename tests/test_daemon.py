"""The daemon end to end: real `ha-watchdog` processes, real PostgreSQL, real receivers.

Intervals are 0.5 s and debounce a few seconds, so each scenario takes seconds. Every
assertion is about which alerts arrived (or did not), never about speed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from lab.cluster import lab_node
from lab.node import NodeDaemon
from lab.receivers import is_about

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

HEALTHY_SERVICES = [
    "sh",
    "-c",
    "echo '/service/hvmail-httpd: up (pid 100) 1000 seconds';"
    "echo '/service/hvmail-dnscache: down 1000 seconds'",
]


def make_node(
    tmp_path: Path,
    pg: Any,
    role: str,
    targets: List[Dict[str, Any]],
    overrides: Optional[Dict[str, Any]] = None,
    name: str = "",
) -> tuple:
    name = name or ("p1" if role == "primary" else "s1")
    dsn = pg.primary_dsn if role == "primary" else pg.standby_dsn
    # A stopped standby pages after the lab's short debounce, not the shipped 15 s
    # reconnect_grace (the graces themselves: tests/test_daemon_planned_work.py).
    merged: Dict[str, Any] = {"standbys": {"reconnect_grace": "1s"}}
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values
    return lab_node(str(tmp_path / name), name, role, str(dsn),
                    services_command=HEALTHY_SERVICES, targets=targets, overrides=merged)


def hook(receiver: Any, **extra: Any) -> Dict[str, Any]:
    return {"name": "hook", "url": receiver.url, **extra}


def titled(receiver: Any, title: str) -> List[Dict[str, Any]]:
    """Messages about `title` ("[p1] standbys"): since issue 14 chat titles carry a subject
    after the stable title ("[p1] standbys CRITICAL: ..."), which still starts them."""
    return [m for m in receiver.messages if is_about(m.get("title"), title)]


def kinds(messages: List[Dict[str, Any]]) -> List[str]:
    return [m["message"].split(":", 1)[0].split()[0] for m in messages]


def wait_cycles(node: NodeDaemon, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    start = node.cycles()
    while node.cycles() < start + count:
        assert node.running(), "\n".join(node.log()[-30:])
        assert time.monotonic() < deadline, "\n".join(node.log()[-30:])
        time.sleep(0.1)


def keep_writing(pg: Any, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pg.write(1)
        time.sleep(0.2)


def fresh_replay(pg: Any) -> None:
    """A replayed commit just now, so lag measures from here (not from an idle stretch)."""
    pg.write(1)
    pg.wait_replayed()


# ---------------------------------------------------------------- replay lag


def test_lag_spike_shorter_than_for_is_not_alerted(tmp_path, pg, http_receiver):
    node, _ = make_node(
        tmp_path, pg, "secondary", [hook(http_receiver)],
        {"replay_lag": {"warning": "1s", "critical": "30s", "for": "5s"}},
    )
    with node:
        wait_cycles(node, 2)
        fresh_replay(pg)
        pg.pause_replay()
        keep_writing(pg, 2.5)
        assert node.wait_log(r"replay_lag=(warning|critical)", 5), "the spike was never seen raw"
        pg.resume_replay()
        pg.wait_replayed()
        wait_cycles(node, 8)
    assert http_receiver.messages == []


def test_sustained_lag_one_problem_then_one_recovery(tmp_path, pg, http_receiver):
    node, _ = make_node(
        tmp_path, pg, "secondary", [hook(http_receiver)],
        {"replay_lag": {"warning": "1s", "critical": "60s", "for": "2s", "recover_for": "1s"}},
    )
    title = "[s1] replay_lag"
    with node:
        wait_cycles(node, 2)
        fresh_replay(pg)
        pg.pause_replay()
        deadline = time.monotonic() + 20
        while not titled(http_receiver, title) and time.monotonic() < deadline:
            pg.write(1)
            time.sleep(0.2)
        problem = titled(http_receiver, title)
        assert problem, "\n".join(node.log()[-20:])
        assert problem[0]["type"] == "warning" and "PROBLEM WARNING" in problem[0]["message"]
        assert "paused" in problem[0]["message"]
        keep_writing(pg, 2)  # more cycles while still lagging: no second PROBLEM
        pg.resume_replay()
        assert http_receiver.wait_for(lambda msgs: len(titled(http_receiver, title)) >= 2, 20)
        wait_cycles(node, 4)
    messages = titled(http_receiver, title)
    assert kinds(messages) == ["PROBLEM", "RECOVERY"], [m["message"] for m in messages]
    assert messages[1]["type"] == "success" and "OK again after" in messages[1]["message"]


def test_idle_primary_for_a_minute_pages_nobody(tmp_path, pg, http_receiver):
    """The naive now()-pg_last_xact_replay_timestamp() would read ~60 s against a 5 s limit.

    With the canary off: really idle (the canary commits every cycle; the canary's own idle
    test is in test_pg_versions.py)."""
    targets = [hook(http_receiver)]
    lag = {"replay_lag": {"warning": "5s", "critical": "10s", "for": "2s"},
           "canary": {"enabled": False}}
    primary, _ = make_node(tmp_path, pg, "primary", targets, lag)
    secondary, _ = make_node(tmp_path, pg, "secondary", targets, lag)
    # Earlier tests wrote to lab_writes: an autoanalyze of it during the minute commits, and
    # the replayed commit would make the naive lag small (the premise of this test).
    pg.query("primary", "ALTER TABLE lab_writes SET (autovacuum_enabled = off)")
    try:
        fresh_replay(pg)
        naive = 0.0  # the most the naive lag read during the minute
        with primary, secondary:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                naive = max(naive, float(pg.scalar(
                    "standby",
                    "SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())")))
                time.sleep(1)
            assert primary.running() and secondary.running()
            last = [line for line in secondary.log() if "cycle" in line][-1]
    finally:
        pg.query("primary", "ALTER TABLE lab_writes RESET (autovacuum_enabled)")
    # Far over the 10 s critical limit (a stray catalog commit may restart it once).
    assert naive > 20, naive
    assert "replay_lag=ok" in last and "s1 secondary ok" in last, last
    assert http_receiver.messages == []


def test_backup_window_holds_but_hard_ceiling_alerts(tmp_path, pg, http_receiver):
    node, _ = make_node(
        tmp_path, pg, "secondary", [hook(http_receiver)],
        {
            "replay_lag": {
                "warning": "1s", "critical": "2s", "backup_warning": "9s",
                "backup_critical": "9s", "for": "1s",
            },
            "backup_windows": [{"start": "00:00", "end": "24:00", "timezone": "UTC"}],
            # an all-day window has been running for hours: lift the default 8 h ceiling
            "backup": {"max_duration": "1d"},
        },
    )
    title = "[s1] replay_lag"
    with node:
        wait_cycles(node, 2)
        fresh_replay(pg)
        pg.pause_replay()
        keep_writing(pg, 4.5)
        # 4.5 s of lag is over the normal critical (2 s + for 1 s) but under backup_warning.
        assert titled(http_receiver, title) == [], "held limits were not applied"
        deadline = time.monotonic() + 25
        while not titled(http_receiver, title) and time.monotonic() < deadline:
            pg.write(1)
            time.sleep(0.2)
        pg.resume_replay()
    alerts = titled(http_receiver, title)
    assert alerts, "\n".join(node.log()[-20:])
    first = alerts[0]
    assert first["type"] == "failure", first  # the ceiling: CRITICAL even inside the window
    assert "backup window" in first["message"]


def test_running_pg_dump_relaxes_replay_lag(tmp_path, pg, http_receiver):
    node, _ = make_node(
        tmp_path, pg, "secondary", [hook(http_receiver)],
        {
            "replay_lag": {
                "warning": "1s", "critical": "2s", "backup_warning": "1m",
                "backup_critical": "2m", "for": "1s",
            },
        },
    )
    title = "[s1] replay_lag"
    dump = pg.connect("standby", application_name="pg_dump")
    try:
        with node:
            wait_cycles(node, 2)
            fresh_replay(pg)
            pg.pause_replay()
            keep_writing(pg, 5)
            assert titled(http_receiver, title) == []
            assert node.wait_log(r"replay_lag=ok", 1), "\n".join(node.log()[-10:])
            dump.close()  # the backup ends: normal limits return
            deadline = time.monotonic() + 15
            while not titled(http_receiver, title) and time.monotonic() < deadline:
                pg.write(1)
                time.sleep(0.2)
            pg.resume_replay()
    finally:
        dump.close()
    alerts = titled(http_receiver, title)
    assert alerts and alerts[0]["type"] == "failure", "\n".join(node.log()[-20:])


# ---------------------------------------------------------------- standbys, delivery, restart


def test_standby_stopped_and_started(tmp_path, pg, http_receiver, smtp_receiver):
    targets = [
        hook(http_receiver),
        {"name": "email", "url": smtp_receiver.mailto_url()},
    ]
    overrides = {"heartbeat": {"url": http_receiver.http_url + "/hb", "timeout": "2s"}}
    node, _ = make_node(tmp_path, pg, "primary", targets, overrides)
    title = "[p1] standbys"
    with node:
        wait_cycles(node, 2)
        pg.stop_standby()
        assert http_receiver.wait_for(lambda m: titled(http_receiver, title), 20)
        pg.start_standby()
        assert http_receiver.wait_for(lambda m: len(titled(http_receiver, title)) >= 2, 20)
        assert smtp_receiver.wait_for(lambda m: len(m) >= 2, 20)
        wait_cycles(node, 2)
    messages = titled(http_receiver, title)
    assert kinds(messages) == ["PROBLEM", "RECOVERY"]
    assert messages[0]["type"] == "failure" and "pg_stat_replication" in messages[0]["message"]
    subjects = [mail.subject for mail in smtp_receiver.messages]
    # Issue 14: the email subject says what is wrong (it was just "[p1] standbys" twice).
    assert subjects[0] == f"{title} CRITICAL: no standby connected (0 of 1 required standbys streaming)"
    assert subjects[1].startswith(f"{title} RECOVERED after "), subjects
    assert "RECOVERY" in smtp_receiver.messages[1].body
    heartbeats = [r for r in http_receiver.requests if r.path.endswith("/hb")]
    assert len(heartbeats) >= 2


def test_receiver_down_then_back_delivers_each_alert_once(tmp_path, pg, http_receiver):
    node, _ = make_node(tmp_path, pg, "primary", [hook(http_receiver)])
    with node:
        wait_cycles(node, 2)
        http_receiver.set_down(True)
        pg.stop_standby()
        assert node.wait_log(r"alert PROBLEM: \[p1\] standbys", 20)
        pg.start_standby()
        assert node.wait_log(r"alert RECOVERY: \[p1\] standbys", 20)
        # A failed round that held both (not just the first failure of the PROBLEM alone).
        assert node.wait_log(r"2 notification\(s\) kept in the outbox", 30)
        assert http_receiver.rejected > 0 and http_receiver.messages == []
        http_receiver.set_down(False)
        assert http_receiver.wait_for(lambda m: len(m) >= 1, 60), "\n".join(node.log()[-20:])
        wait_cycles(node, 6)
    messages = http_receiver.messages
    assert len(messages) == 1, messages  # one digest, not a flood, nothing doubled
    digest = messages[0]
    assert digest["title"] == "[p1] ha-watchdog digest"
    assert "standbys" in digest["message"] and "RECOVERY" in digest["message"]
    assert "PROBLEM" in digest["message"]
    assert digest["type"] == "success"  # everything in it recovered


def test_sigkill_with_open_problem_then_restart(tmp_path, pg, http_receiver):
    node, _ = make_node(tmp_path, pg, "primary", [hook(http_receiver)])
    title = "[p1] standbys"
    node.start()
    try:
        wait_cycles(node, 2)
        pg.stop_standby()
        assert http_receiver.wait_for(lambda m: titled(http_receiver, title), 20)
        wait_cycles(node, 2)
        node.kill()
        assert node.proc is not None and node.proc.returncode == -signal.SIGKILL
        restarted = NodeDaemon(node.name, node.workdir, node.sections).start()
        try:
            wait_cycles(restarted, 6)
            assert len(titled(http_receiver, title)) == 1, "the restart re-paged an open problem"
            pg.start_standby()
            assert http_receiver.wait_for(lambda m: len(titled(http_receiver, title)) >= 2, 20)
            wait_cycles(restarted, 3)
        finally:
            restarted.stop()
    finally:
        node.stop()
    assert kinds(titled(http_receiver, title)) == ["PROBLEM", "RECOVERY"]


def test_drbd_switch_secondary_to_primary_is_a_role_change(tmp_path, pg, http_receiver):
    node, drbd = make_node(
        tmp_path, pg, "secondary", [hook(http_receiver)], {"drbd": {"for": "1s"}}
    )
    with node:
        wait_cycles(node, 3)
        drbd.primary()
        assert http_receiver.wait_for(lambda m: titled(http_receiver, "[s1] role"), 20)
        # PostgreSQL is still a standby under a DRBD primary: split brain risk, paged.
        assert http_receiver.wait_for(lambda m: titled(http_receiver, "[s1] postgres_role"), 20)
    role = titled(http_receiver, "[s1] role")
    assert len(role) == 1 and role[0]["type"] == "info"
    assert "secondary" in role[0]["message"] and "primary" in role[0]["message"]
    mismatch = titled(http_receiver, "[s1] postgres_role")[0]
    assert mismatch["type"] == "failure" and "recovery" in mismatch["message"]


def test_hung_standby_is_caught_between_regular_cycles(tmp_path, pg, http_receiver):
    """SIGSTOP of the walreceiver: TCP stays open and the primary's view says `streaming`.

    With a 90 s interval the next regular cycle is far away; the standbys check reports
    when its replies go stale (max_reply_age 15 s) and the loop re-checks then.
    """
    node, _ = make_node(
        tmp_path, pg, "primary", [hook(http_receiver)],
        {"daemon": {"interval": "90s"}, "standbys": {"for": "0s", "max_reply_age": "15s"}},
    )
    title = "[p1] standbys"
    with node:
        wait_cycles(node, 1)
        pg.freeze_walreceiver()
        arrived = http_receiver.wait_for(lambda m: titled(http_receiver, title), 60)
        assert node.running()
        cycles = node.cycles()
    assert arrived, "\n".join(node.log()[-20:])
    problem = titled(http_receiver, title)[0]
    assert problem["type"] == "failure" and "no reply for" in problem["message"]
    assert cycles >= 2  # extra cycles ran: the next regular one was 90 s away


# ---------------------------------------------------------------- maintenance


def cli(node: NodeDaemon, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "watchdog", "--config", node.config_path, *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_maintenance_holds_a_stopped_standby_then_pages_after_expiry(tmp_path, pg, http_receiver):
    node, _ = make_node(tmp_path, pg, "primary", [hook(http_receiver)])
    title, quiet = "[p1] standbys", "[p1] maintenance"
    with node:
        wait_cycles(node, 2)
        on = cli(node, "maintenance", "on", "--for", "15s", "--reason", "failover test")
        assert on.returncode == 0, on.stdout + on.stderr
        assert "the running daemon applied it" in on.stdout
        assert http_receiver.wait_for(lambda m: titled(http_receiver, quiet), 10)
        started = titled(http_receiver, quiet)[0]
        assert started["type"] == "info" and "MAINTENANCE ON" in started["message"]
        assert "failover test" in started["message"]
        assert node.wait_log(r"MAINTENANCE until", 5)

        pg.stop_standby()
        assert node.wait_log(r"standbys=critical", 10)
        once = cli(node, "--once", "--json")
        assert json.loads(once.stdout)["maintenance"]["active"] is True
        assert "maintenance: ON until" in cli(node, "--once").stdout
        # Held back: confirmed (for 1s) but not paged.
        assert node.wait_log(r"standbys=critical.*1 open", 10)
        status = cli(node, "maintenance", "status")
        assert "PROBLEM CRITICAL: standbys on p1 (primary) [held back]" in status.stdout, status.stdout
        assert titled(http_receiver, title) == []

        # Expiry (15 s after `on`): one summary, then the still-open problem pages.
        assert http_receiver.wait_for(lambda m: titled(http_receiver, title), 30)
        wait_cycles(node, 2)
        pg.start_standby()
        assert http_receiver.wait_for(lambda m: len(titled(http_receiver, title)) >= 2, 20)
    ended = titled(http_receiver, quiet)
    assert len(ended) == 2 and "MAINTENANCE OVER" in ended[1]["message"], ended
    assert "expired" in ended[1]["message"]
    assert "PROBLEM CRITICAL: standbys on p1 (primary) [held back]" in ended[1]["message"]
    assert "standbys critical since" in ended[1]["message"] and "paging now" in ended[1]["message"]
    pages = titled(http_receiver, title)
    assert kinds(pages) == ["PROBLEM", "RECOVERY"]
    assert "Held back by maintenance (failover test)" in pages[0]["message"]
    order = [m["title"].split(" ", 2)[0] + " " + m["title"].split(" ", 2)[1]
             for m in http_receiver.messages]  # the stable title, without the subject
    assert order.index(quiet, 1) < order.index(title)  # the summary comes first


def test_maintenance_off_early_lists_what_recovered_meanwhile(tmp_path, pg, http_receiver):
    node, _ = make_node(tmp_path, pg, "primary", [hook(http_receiver)])
    title, quiet = "[p1] standbys", "[p1] maintenance"
    with node:
        wait_cycles(node, 2)
        assert cli(node, "maintenance", "on", "--for", "1h", "--reason", "pg upgrade").returncode == 0
        pg.stop_standby()
        assert node.wait_log(r"standbys=critical.*1 open", 15)
        mark = len(node.log())
        pg.start_standby()
        assert node.wait_log(r"standbys=ok.*, 0 open", 15, start=mark)
        off = cli(node, "maintenance", "off")
        assert off.returncode == 0 and "the running daemon applied it" in off.stdout, off.stdout
        assert http_receiver.wait_for(lambda m: len(titled(http_receiver, quiet)) >= 2, 10)
        wait_cycles(node, 3)
    assert titled(http_receiver, title) == []  # began and ended inside: nobody paged
    end = titled(http_receiver, quiet)[1]["message"]
    assert "turned off by" in end and "pg upgrade" in end
    assert "PROBLEM CRITICAL: standbys" in end and "RECOVERY: standbys" in end
    assert "Still open: nothing." in end


def test_maintenance_needs_a_duration_and_respects_the_cap(tmp_path, pg):
    node, _ = make_node(tmp_path, pg, "primary", [], {"maintenance": {"max_duration": "1h"}})
    missing = cli(node, "maintenance", "on", "--reason", "x")
    # argparse marks --for and --reason required (issue 14: shown as required in --help).
    assert missing.returncode == 3 and "required: --for" in missing.stderr
    too_long = cli(node, "maintenance", "on", "--for", "2h", "--reason", "x")
    assert too_long.returncode == 3 and "max_duration (1h00m)" in too_long.stderr
    no_reason = cli(node, "maintenance", "on", "--for", "10m")
    assert no_reason.returncode == 3 and "--reason" in no_reason.stderr
    assert not (Path(node.workdir) / "state" / "maintenance.json").exists()
    # No daemon running: recorded, but said plainly that nobody confirmed it.
    lonely = cli(node, "maintenance", "on", "--for", "10m", "--reason", "x", "--wait", "2")
    assert lonely.returncode == 1 and "NOT confirmed by a running daemon" in lonely.stdout


def test_damaged_request_file_silences_nothing(tmp_path, pg, http_receiver):
    node, _ = make_node(tmp_path, pg, "primary", [hook(http_receiver)])
    with node:
        wait_cycles(node, 2)
        (Path(node.workdir) / "state" / "maintenance.json").write_text('{"version": 1, "id": ')
        assert node.wait_log(r"ERROR.*maintenance: .*not a valid maintenance request", 10)
        pg.stop_standby()
        assert http_receiver.wait_for(lambda m: titled(http_receiver, "[p1] standbys"), 20)
        wait_cycles(node, 3)
    errors = [line for line in node.log() if "not a valid maintenance request" in line]
    assert len(errors) == 1, errors  # said once, not every cycle


# ---------------------------------------------------------------- the daily report


def test_daily_report_fires_at_its_time_once(tmp_path, pg, http_receiver):
    node, _ = make_node(tmp_path, pg, "primary", [hook(http_receiver)])
    daily = "[p1] daily report"
    with node:
        wait_cycles(node, 2)
        pg.stop_standby()
        assert http_receiver.wait_for(lambda m: titled(http_receiver, "[p1] standbys"), 20)
        pg.start_standby()
        assert http_receiver.wait_for(lambda m: len(titled(http_receiver, "[p1] standbys")) >= 2, 20)
        # A near time: the report is due a few seconds after the reload that sets it.
        at = datetime.now(timezone.utc) + timedelta(seconds=8)
        node.write_config({**node.sections, "digest": {"at": at.strftime("%H:%M:%S")}})
        node.reload()
        assert node.wait_log(r"configuration reloaded", 10)
        assert titled(http_receiver, daily) == []
        assert http_receiver.wait_for(lambda m: titled(http_receiver, daily), 30)
        arrived = datetime.now(timezone.utc)
        wait_cycles(node, 6)
    (report,) = titled(http_receiver, daily)
    assert arrived >= at.replace(microsecond=0)
    text = report["message"]
    assert report["type"] == "success", text
    assert text.startswith("DAILY REPORT: p1 is the primary; all checks OK"), text
    assert "Checks now: drbd ok, postgres_role ok, services ok, standbys ok" in text
    assert "Last 24 hours: 1 incident(s) closed:" in text and "- standbys critical, " in text
    assert "Alerts that failed to deliver: none." in text


# ---------------------------------------------------------------- metrics


def scrape(port: int) -> Dict[str, float]:
    """`name{label="v",...}` -> value, from a real scrape parsed by prometheus_client's parser."""
    from urllib.request import urlopen


    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return samples_of(text)


def samples_of(text: str) -> Dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()) if k != "node")
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


CODES = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}


def assert_matches_once(metrics: Dict[str, float], once: Dict[str, Any]) -> None:
    """The scrape says what `--once --json` says about the same (healthy, idle) pair."""
    for role in ("primary", "secondary", "unknown"):
        assert metrics[f'ha_watchdog_role{{role="{role}"}}'] == (role == once["role"])
    for check in once["checks"]:
        key = f'{{check="{check["name"]}"}}'
        assert metrics["ha_watchdog_check_status" + key] == CODES[check["status"]], check
        assert metrics["ha_watchdog_check_confirmed_status" + key] == CODES[check["status"]]
    checks = {c["name"]: c["details"] for c in once["checks"]}
    (resource,) = checks["drbd"]["resources"]
    info = (
        f'ha_watchdog_drbd_resource_info{{connection="{resource["cstate"]}",'
        f'disk="{resource["disk"]}",peer_disk="{resource["peer_disk"]}",'
        f'peer_role="{resource["peer_role"]}",resource="{resource["name"]}",'
        f'role="{resource["role"]}"}}'
    )
    assert metrics[info] == 1, sorted(metrics)
    assert metrics[f'ha_watchdog_drbd_connected{{resource="{resource["name"]}"}}'] == 1
    assert metrics[f'ha_watchdog_drbd_sync_percent{{resource="{resource["name"]}"}}'] == 100
    if once["role"] == "primary":
        assert metrics["ha_watchdog_standbys_streaming{}"] == checks["standbys"]["streaming"] == 1
        assert "ha_watchdog_replay_lag_bytes{}" not in metrics
    else:
        lag = checks["replay_lag"]
        assert metrics["ha_watchdog_replay_lag_bytes{}"] == lag["lag_bytes"] == 0
        assert abs(metrics["ha_watchdog_replay_lag_seconds{}"] - lag["lag_seconds"]) < 1.0
        assert "ha_watchdog_standbys_streaming{}" not in metrics
    assert metrics["ha_watchdog_maintenance_active{}"] == once["maintenance"]["active"]


def test_metrics_scraped_from_both_nodes_match_once(tmp_path, pg, http_receiver):
    from lab.receivers import free_port

    ports = {"primary": free_port(), "secondary": free_port()}
    textfile = tmp_path / "ha_watchdog.prom"
    nodes = {
        role: make_node(tmp_path, pg, role, [hook(http_receiver)], {
            "metrics": {"listen": f"127.0.0.1:{ports[role]}",
                        "textfile": str(textfile) if role == "secondary" else None},
        })[0]
        for role in ports
    }
    primary, secondary = nodes["primary"], nodes["secondary"]
    fresh_replay(pg)
    with primary, secondary:
        wait_cycles(primary, 4)
        wait_cycles(secondary, 4)
        for role, node in nodes.items():
            once = json.loads(cli(node, "--once", "--json").stdout)
            assert once["role"] == role and once["status"] == "ok", once
            assert_matches_once(scrape(ports[role]), once)
        from_file = samples_of(textfile.read_text())
        assert from_file['ha_watchdog_role{role="secondary"}'] == 1
        assert from_file["ha_watchdog_replay_lag_bytes{}"] == 0

        # A problem: raw and confirmed status, the open incident, the delivery counted.
        pg.stop_standby()
        assert http_receiver.wait_for(lambda m: titled(http_receiver, "[p1] standbys"), 20)
        wait_cycles(primary, 2)
        metrics = scrape(ports["primary"])
        once = json.loads(cli(primary, "--once", "--json").stdout)
        standbys = next(c for c in once["checks"] if c["name"] == "standbys")
        assert metrics['ha_watchdog_check_status{check="standbys"}'] == CODES[standbys["status"]] == 2
        assert metrics['ha_watchdog_check_confirmed_status{check="standbys"}'] == 2
        assert metrics["ha_watchdog_standbys_streaming{}"] == standbys["details"]["streaming"] == 0
        assert metrics["ha_watchdog_incidents_open{}"] == 1
        assert metrics['ha_watchdog_deliveries_total{outcome="delivered",target="hook"}'] >= 1
        assert metrics["ha_watchdog_outbox_length{}"] == 0
        pg.start_standby()

        # Maintenance shows, with its end.
        assert cli(primary, "maintenance", "on", "--for", "1h", "--reason", "m").returncode == 0
        metrics = scrape(ports["primary"])
        until = json.loads(cli(primary, "maintenance", "status", "--json").stdout)["until"]
        assert metrics["ha_watchdog_maintenance_active{}"] == 1
        assert metrics["ha_watchdog_maintenance_end_timestamp_seconds{}"] == until
        cycles = metrics["ha_watchdog_cycles_total{}"]
        assert time.time() - metrics["ha_watchdog_last_cycle_timestamp_seconds{}"] < 5
        wait_cycles(primary, 2)
        assert scrape(ports["primary"])["ha_watchdog_cycles_total{}"] > cycles


def test_advice_a_check_gives_is_logged_once(tmp_path, caplog):
    """A check that cannot reach a verdict on this server (e.g. 9.5 without the canary)
    names what to enable in details["advice"]: the daemon logs it the first time only."""
    import logging

    from watchdog.config import Config, DaemonConfig
    from watchdog.daemon import Daemon
    from watchdog.model import CheckResult, Report, Role, Status

    daemon = Daemon(Config(daemon=DaemonConfig(state_dir=str(tmp_path))))
    advised = CheckResult("replay_lag", Status.UNKNOWN, "cannot tell whether WAL arrives",
                          {"advice": "turn [canary] on"})
    report = Report("s1", Role.SECONDARY, [advised, CheckResult("drbd", Status.OK, "fine")])
    with caplog.at_level(logging.WARNING, logger="watchdog.daemon"):
        daemon._log_advice(report)
        daemon._log_advice(report)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["replay_lag cannot reach a verdict: cannot tell whether WAL arrives"]
