"""`MetricsExporter`: a real HTTP listener on loopback and a real textfile, scraped and parsed
with prometheus_client's own parser (and linted by promtool when it is installed)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
import urllib.request
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, Tuple

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lab.receivers import LOOPBACK, free_port
from watchdog import __version__
from watchdog.config import MetricsConfig
from watchdog.exporter import TEXTFILE_MODE, MetricsExporter
from watchdog.metrics import MetricsView
from watchdog.model import DRBD, REPLAY_LAG, STANDBYS, CheckResult, Status

Labels = FrozenSet[Tuple[str, str]]

DRBD_OK = CheckResult(DRBD, Status.OK, "r0: Connected Primary/Secondary UpToDate/UpToDate", {
    "resources": [{"name": "r0", "cstate": "Connected", "role": "Secondary",
                   "peer_role": "Primary", "disk": "UpToDate", "peer_disk": "UpToDate",
                   "sync_percent": None}]})
LAGGING = CheckResult(REPLAY_LAG, Status.WARNING, "replay lag 95s",
                      {"lag_seconds": 95.0, "lag_bytes": 4096})
STREAMING = CheckResult(STANDBYS, Status.OK, "1 standby streaming", {"streaming": 1})


def secondary_view(**kw) -> MetricsView:
    base = dict(node="ga-b", version="0.1.0", role="secondary", checks=[DRBD_OK, LAGGING],
                confirmed={"drbd": "ok", "replay_lag": "warning"},
                deliveries={("ops", "delivered"): 4, ("ops", "failed"): 1},
                cycles=10, cycle_duration=0.02, last_cycle=1_700_000_000.0)
    base.update(kw)
    return MetricsView(**base)


def primary_view() -> MetricsView:
    return secondary_view(role="primary", checks=[DRBD_OK, STREAMING],
                          confirmed={"drbd": "ok", "standbys": "ok"}, cycles=11)


def parse(text: str) -> Dict[str, Dict[Tuple[str, Labels], float]]:
    """family name -> {(sample name, labels): value}."""
    return {
        fam.name: {(s.name, frozenset(s.labels.items())): s.value for s in fam.samples}
        for fam in text_string_to_metric_families(text)
    }


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def labels(**kw: str) -> Labels:
    return frozenset(kw.items())


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def exporter(port: int) -> Iterator[MetricsExporter]:
    exp = MetricsExporter(MetricsConfig(listen=(LOOPBACK, port)), "ga-b")
    yield exp
    exp.close()


@pytest.fixture
def mlog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="watchdog.metrics")
    return caplog


def records(caplog: pytest.LogCaptureFixture, level: int) -> list:
    return [r.getMessage() for r in caplog.records
            if r.name == "watchdog.metrics" and r.levelno == level]


def test_serves_the_latest_view(exporter: MetricsExporter, port: int, mlog):
    exporter.update(secondary_view())
    assert exporter.address == (LOOPBACK, port)
    assert records(mlog, logging.INFO) == [f"metrics: serving http://{LOOPBACK}:{port}/metrics"]
    got = parse(scrape_text(port))
    node = {"node": "ga-b"}
    assert got["ha_watchdog_info"] == {("ha_watchdog_info", labels(version="0.1.0", **node)): 1}
    assert got["ha_watchdog_role"] == {
        ("ha_watchdog_role", labels(role="primary", **node)): 0,
        ("ha_watchdog_role", labels(role="secondary", **node)): 1,
        ("ha_watchdog_role", labels(role="unknown", **node)): 0,
    }
    assert got["ha_watchdog_check_status"] == {
        ("ha_watchdog_check_status", labels(check="drbd", **node)): 0,
        ("ha_watchdog_check_status", labels(check="replay_lag", **node)): 1,
    }
    assert got["ha_watchdog_replay_lag_seconds"] == {
        ("ha_watchdog_replay_lag_seconds", labels(**node)): 95.0}
    assert got["ha_watchdog_drbd_resource_info"] == {("ha_watchdog_drbd_resource_info", labels(
        resource="r0", connection="Connected", role="Secondary", peer_role="Primary",
        disk="UpToDate", peer_disk="UpToDate", **node)): 1}
    assert got["ha_watchdog_drbd_sync_percent"] == {
        ("ha_watchdog_drbd_sync_percent", labels(resource="r0", **node)): 100}
    # Counters: family without `_total`, samples with it.
    assert got["ha_watchdog_deliveries"] == {
        ("ha_watchdog_deliveries_total", labels(target="ops", outcome="delivered", **node)): 4,
        ("ha_watchdog_deliveries_total", labels(target="ops", outcome="failed", **node)): 1,
    }
    assert got["ha_watchdog_cycles"] == {("ha_watchdog_cycles_total", labels(**node)): 10}
    assert got["ha_watchdog_last_cycle_timestamp_seconds"] == {
        ("ha_watchdog_last_cycle_timestamp_seconds", labels(**node)): 1_700_000_000.0}


def test_series_that_stop_applying_disappear(exporter: MetricsExporter, port: int):
    exporter.update(secondary_view())
    assert "ha_watchdog_replay_lag_bytes" in parse(scrape_text(port))
    exporter.update(primary_view())  # failover: this node is now the primary
    got = parse(scrape_text(port))
    assert "ha_watchdog_replay_lag_seconds" not in got
    assert "ha_watchdog_replay_lag_bytes" not in got
    assert ("ha_watchdog_check_status", labels(check="replay_lag", node="ga-b")) not in got[
        "ha_watchdog_check_status"]
    assert got["ha_watchdog_standbys_streaming"] == {
        ("ha_watchdog_standbys_streaming", labels(node="ga-b")): 1}
    assert got["ha_watchdog_role"][("ha_watchdog_role", labels(role="primary", node="ga-b"))] == 1
    assert got["ha_watchdog_cycles"] == {("ha_watchdog_cycles_total", labels(node="ga-b")): 11}


def test_before_the_first_update_only_info(exporter: MetricsExporter):
    assert exporter.address is None  # nothing listens before the first update
    got = parse(generate_latest(exporter.registry).decode())
    assert got == {"ha_watchdog_info": {
        ("ha_watchdog_info", labels(node="ga-b", version=__version__)): 1}}


def test_close_frees_the_port_for_the_next_exporter(port: int):
    first = MetricsExporter(MetricsConfig(listen=(LOOPBACK, port)), "ga-b")
    first.update(secondary_view())
    scrape_text(port)
    first.close()
    first.close()  # idempotent
    assert first.address is None
    with pytest.raises(OSError):
        scrape_text(port)
    second = MetricsExporter(MetricsConfig(listen=(LOOPBACK, port)), "ga-b")
    try:
        second.update(primary_view())
        assert second.address == (LOOPBACK, port)
        assert "ha_watchdog_standbys_streaming" in parse(scrape_text(port))
    finally:
        second.close()


def test_port_in_use_logs_once_and_serves_once_free(exporter: MetricsExporter, port: int, mlog):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind((LOOPBACK, port))
    blocker.listen()
    try:
        exporter.update(secondary_view())
        exporter.update(secondary_view())  # same problem again: quiet retry
        assert exporter.address is None
    finally:
        blocker.close()
    errors = records(mlog, logging.ERROR)
    assert len(errors) == 1
    assert f"{LOOPBACK}:{port}" in errors[0]
    assert "Address already in use" in errors[0]
    assert any("still failing" in m for m in records(mlog, logging.DEBUG))
    assert records(mlog, logging.INFO) == []

    exporter.update(secondary_view())  # the port is free now
    assert exporter.address == (LOOPBACK, port)
    assert records(mlog, logging.INFO) == [f"metrics: serving http://{LOOPBACK}:{port}/metrics"]
    assert "ha_watchdog_info" in parse(scrape_text(port))


def test_bad_listen_address_is_logged_not_raised(mlog):
    exp = MetricsExporter(MetricsConfig(listen=("192.0.2.1", free_port())), "ga-b")
    exp.update(secondary_view())  # TEST-NET-1: not an address of this machine
    exp.close()
    (error,) = records(mlog, logging.ERROR)
    assert "192.0.2.1" in error
    assert "Cannot assign requested address" in error


def test_textfile_written_atomically_and_readable(tmp_path: Path):
    path = tmp_path / "ha_watchdog.prom"
    exp = MetricsExporter(MetricsConfig(textfile=str(path)), "ga-b")
    old_umask = os.umask(0o077)  # the systemd unit's UMask
    try:
        exp.update(secondary_view())
        first = parse(path.read_text())
        exp.update(primary_view())
    finally:
        os.umask(old_umask)
    assert first["ha_watchdog_replay_lag_bytes"] == {
        ("ha_watchdog_replay_lag_bytes", labels(node="ga-b")): 4096}
    got = parse(path.read_text())
    assert "ha_watchdog_replay_lag_bytes" not in got
    assert got["ha_watchdog_cycles"] == {("ha_watchdog_cycles_total", labels(node="ga-b")): 11}
    assert stat.S_IMODE(path.stat().st_mode) == TEXTFILE_MODE == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ha_watchdog.prom"]  # no temp files
    assert exp.address is None  # no listen configured: no server


def test_textfile_in_a_missing_directory_logs_once_then_recovers(tmp_path: Path, mlog):
    path = tmp_path / "missing" / "ha_watchdog.prom"
    exp = MetricsExporter(MetricsConfig(textfile=str(path)), "ga-b")
    exp.update(secondary_view())
    exp.update(secondary_view())
    (error,) = records(mlog, logging.ERROR)
    assert str(path) in error
    assert "No such file or directory" in error
    assert "ReadWritePaths" not in error

    path.parent.mkdir()
    exp.update(secondary_view())
    assert "ha_watchdog_info" in parse(path.read_text())
    assert records(mlog, logging.INFO) == [f"metrics: writing textfile {path} works again"]
    assert len(records(mlog, logging.ERROR)) == 1


def test_textfile_refused_under_systemd_names_readwritepaths(monkeypatch, mlog):
    # sysfs refuses new files even to root (EACCES; EROFS where it is mounted read-only),
    # as a ProtectSystem=strict mount refuses them to the daemon.
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
    exp = MetricsExporter(MetricsConfig(textfile="/sys/ha_watchdog.prom"), "ga-b")
    exp.update(secondary_view())
    (error,) = records(mlog, logging.ERROR)
    assert "/sys/ha_watchdog.prom" in error
    assert "ReadWritePaths=/sys" in error


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package `prometheus`)")
def test_promtool_finds_no_problem_in_a_scrape(exporter: MetricsExporter, port: int):
    view = secondary_view(
        checks=[DRBD_OK, LAGGING, STREAMING],
        confirmed={"drbd": "ok", "replay_lag": "critical", "standbys": "ok"},
        open_incidents=1, outbox_length=2, outbox_oldest_age=30.0,
        maintenance_active=True, maintenance_until=1_700_003_600.0,
    )
    exporter.update(view)
    text = scrape_text(port)
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (done.stdout + done.stderr).strip() == ""


# ---------------------------------------------------------------- bounded connections (issue 11)


def test_connections_are_bounded_in_number_and_lifetime(monkeypatch):
    """Idle clients hold at most MAX_CONNECTIONS slots, each only for MAX_LIFETIME; beyond
    that a connection is closed at once (it used to get a thread and a descriptor each,
    for ever)."""
    import time

    from watchdog import exporter as module

    monkeypatch.setattr(module._Server, "max_lifetime", 2.0)
    port = free_port()
    exp = MetricsExporter(MetricsConfig(listen=(LOOPBACK, port)), "ga-b")
    exp.update(secondary_view())
    idle = []
    try:
        for _ in range(module.MAX_CONNECTIONS):
            idle.append(socket.create_connection((LOOPBACK, port), timeout=10))
        server = exp._server
        assert server is not None
        deadline = time.monotonic() + 10
        while server.open_connections() < module.MAX_CONNECTIONS:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        extra = socket.create_connection((LOOPBACK, port), timeout=10)
        assert extra.recv(1) == b""  # closed at once: every slot is taken
        extra.close()
        assert server.refused >= 1
        # The idle ones are cut at their lifetime, and the endpoint serves again.
        for sock in idle:
            assert sock.recv(1) == b""
        assert "ha_watchdog_cycles_total" in scrape_text(port)
    finally:
        for sock in idle:
            sock.close()
        exp.close()
