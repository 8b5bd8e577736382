"""`watchdog.metrics.families`: what a scrape shows, from hand-built views and real checks."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from watchdog.checks.drbd import check_drbd
from watchdog.metrics import COUNTER, GAUGE, Family, MetricsView, families
from watchdog.model import DRBD, REPLAY_LAG, STANDBYS, CheckResult, Status
from watchdog.probes.drbd import DrbdSnapshot, detect_format, parse

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "drbd"

CONNECTED_PRIMARY = "proc-drbd-8.4-connected-primary-secondary.txt"
SYNCSOURCE = "drbd-overview-syncsource-progress-11.8pct.txt"
STANDALONE = "drbdadm-status-splitbrain-standalone-primary-node.txt"


def drbd_result(name: str) -> CheckResult:
    """The real `drbd` check over a recorded sample."""
    text = (SAMPLES / name).read_text()
    fmt = detect_format(text)
    parsed = parse(fmt, text)
    return check_drbd(DrbdSnapshot(resources=parsed.resources, format=fmt, source=name))


def view(**kw) -> MetricsView:
    kw.setdefault("node", "ga-a")
    kw.setdefault("version", "0.1.0")
    kw.setdefault("role", "primary")
    return MetricsView(**kw)


def by_name(fams: List[Family]) -> Dict[str, Family]:
    return {f.name: f for f in fams}


def values(fams: List[Family], name: str) -> Dict[Tuple[str, ...], float]:
    """label values without `node` -> value, for family `name` ({} when absent)."""
    fam = by_name(fams).get(name)
    return {} if fam is None else {labels[1:]: value for labels, value in fam.samples}


def value(fams: List[Family], name: str, *labels: str) -> Optional[float]:
    return values(fams, name).get(labels)


def test_every_family_carries_the_node_label_first():
    fams = families(view(node="ga-b", checks=[drbd_result(CONNECTED_PRIMARY)]))
    assert fams
    for fam in fams:
        assert fam.labels[0] == "node"
        assert fam.samples
        for labels, _ in fam.samples:
            assert labels[0] == "ga-b"
            assert len(labels) == len(fam.labels)


def test_info_and_role_one_hot():
    fams = families(view(version="1.2.3", role="secondary"))
    assert values(fams, "ha_watchdog_info") == {("1.2.3",): 1.0}
    assert values(fams, "ha_watchdog_role") == {
        ("primary",): 0.0, ("secondary",): 1.0, ("unknown",): 0.0}
    assert by_name(fams)["ha_watchdog_role"].labels == ("node", "role")


def test_raw_and_confirmed_check_codes():
    checks = [
        CheckResult("drbd", Status.OK, "fine"),
        CheckResult("postgres_role", Status.CRITICAL, "mismatch"),
        CheckResult("services", Status.WARNING, "paused"),
        CheckResult("standbys", Status.UNKNOWN, "cannot see"),
    ]
    # standbys is not confirmed yet (absent); a level that is not a status is skipped.
    confirmed = {"drbd": "ok", "postgres_role": "warning", "services": "critical",
                 "replay_lag": "bogus"}
    fams = families(view(checks=checks, confirmed=confirmed))
    assert values(fams, "ha_watchdog_check_status") == {
        ("drbd",): 0, ("postgres_role",): 2, ("services",): 1, ("standbys",): 3}
    assert values(fams, "ha_watchdog_check_confirmed_status") == {
        ("drbd",): 0, ("postgres_role",): 1, ("services",): 2}


def test_nothing_confirmed_yet_leaves_the_family_out():
    fams = families(view(checks=[CheckResult("drbd", Status.OK, "fine")]))
    assert "ha_watchdog_check_confirmed_status" not in by_name(fams)


def test_replay_lag_from_details_on_a_secondary():
    lag = CheckResult(REPLAY_LAG, Status.WARNING, "lagging",
                      {"lag_seconds": 42.5, "lag_bytes": 16_777_216, "naive_lag_seconds": 99.0})
    fams = families(view(role="secondary", checks=[lag]))
    assert value(fams, "ha_watchdog_replay_lag_seconds") == 42.5
    assert value(fams, "ha_watchdog_replay_lag_bytes") == 16_777_216


def test_replay_lag_absent_when_not_measured_or_not_a_secondary():
    # Not receiving WAL with nothing pending: lag_seconds is None (unknown, not 0).
    unknown = CheckResult(REPLAY_LAG, Status.CRITICAL, "not receiving WAL",
                          {"lag_seconds": None, "lag_bytes": 0})
    fams = families(view(role="secondary", checks=[unknown]))
    assert "ha_watchdog_replay_lag_seconds" not in by_name(fams)
    assert value(fams, "ha_watchdog_replay_lag_bytes") == 0
    # PostgreSQL unreachable: details without the keys.
    fams = families(view(role="secondary", checks=[CheckResult(REPLAY_LAG, Status.UNKNOWN, "x")]))
    assert not {"ha_watchdog_replay_lag_seconds", "ha_watchdog_replay_lag_bytes"} & set(
        by_name(fams))
    # A primary runs no replay_lag check.
    standbys = CheckResult(STANDBYS, Status.OK, "1 standby streaming", {"streaming": 1})
    fams = families(view(checks=[standbys]))
    assert "ha_watchdog_replay_lag_seconds" not in by_name(fams)
    assert value(fams, "ha_watchdog_standbys_streaming") == 1


@pytest.mark.parametrize("bad", [True, "12", float("nan"), float("inf"), [1], None])
def test_non_numeric_details_are_skipped(bad):
    checks = [
        CheckResult(REPLAY_LAG, Status.OK, "x", {"lag_seconds": bad, "lag_bytes": bad}),
        CheckResult(STANDBYS, Status.OK, "x", {"streaming": bad}),
    ]
    names = set(by_name(families(view(checks=checks))))
    assert not names & {"ha_watchdog_replay_lag_seconds", "ha_watchdog_replay_lag_bytes",
                        "ha_watchdog_standbys_streaming"}


def test_drbd_connected_primary():
    fams = families(view(checks=[drbd_result(CONNECTED_PRIMARY)]))
    fam = by_name(fams)["ha_watchdog_drbd_resource_info"]
    assert fam.labels == ("node", "resource", "connection", "role", "peer_role", "disk",
                          "peer_disk")
    assert fam.samples == (
        (("ga-a", "drbd0", "Connected", "Primary", "Secondary", "UpToDate", "UpToDate"), 1.0),)
    assert values(fams, "ha_watchdog_drbd_connected") == {("drbd0",): 1.0}
    assert values(fams, "ha_watchdog_drbd_uptodate") == {("drbd0",): 1.0}
    assert values(fams, "ha_watchdog_drbd_sync_percent") == {("drbd0",): 100.0}


@pytest.mark.parametrize("name, percent", [
    (SYNCSOURCE, 11.8),
    ("drbdadm-status-8.4kernel-syncsource-done.txt", 21.52),
    ("proc-drbd-8.4-synctarget-spaces-M-want.txt", 37.4),
])
def test_drbd_resync_shows_its_percent(name, percent):
    fams = families(view(checks=[drbd_result(name)]))
    assert list(values(fams, "ha_watchdog_drbd_connected").values()) == [1.0]
    assert list(values(fams, "ha_watchdog_drbd_uptodate").values()) == [0.0]
    assert list(values(fams, "ha_watchdog_drbd_sync_percent").values()) == [percent]


def test_drbd_standalone():
    fams = families(view(checks=[drbd_result(STANDALONE)]))
    assert set(values(fams, "ha_watchdog_drbd_resource_info")) == {
        ("mydrbd", "StandAlone", "Primary", "Unknown", "UpToDate", "")}  # peer disk not shown
    assert values(fams, "ha_watchdog_drbd_connected") == {("mydrbd",): 0.0}
    assert values(fams, "ha_watchdog_drbd_uptodate") == {("mydrbd",): 0.0}
    assert "ha_watchdog_drbd_sync_percent" not in by_name(fams)


@pytest.mark.parametrize("name", [
    CONNECTED_PRIMARY,  # proc: cs:Connected
    "drbd-overview-greenarrow-doc-primary.txt",
    "drbdadm-status-8.4kernel-secondary-established.txt",  # replication:Established
    "drbd9-drbdsetup-status-json-connected-primary.json",
])
def test_drbd_connected_in_every_format(name):
    fams = families(view(checks=[drbd_result(name)]))
    assert list(values(fams, "ha_watchdog_drbd_connected").values()) == [1.0]
    assert list(values(fams, "ha_watchdog_drbd_uptodate").values()) == [1.0]


def test_drbd_one_series_per_resource():
    fams = families(view(checks=[drbd_result("proc-drbd-8.4-ug-three-minors.txt")]))
    assert values(fams, "ha_watchdog_drbd_connected") == {
        ("drbd0",): 1.0, ("drbd1",): 1.0, ("drbd2",): 1.0}


def test_drbd_malformed_entries_are_skipped():
    good = {"name": "r0", "cstate": "WFConnection", "role": "Primary", "peer_role": "Unknown",
            "disk": "UpToDate", "peer_disk": "DUnknown", "sync_percent": None}
    resources = [
        "r9", None, {}, {"name": ""}, {"name": 7},
        {**good, "name": "r1", "role": 1},  # a label value that is not a word
        good,
        {**good, "cstate": "Connected"},  # the same resource twice: first one wins
        {**good, "name": "r2", "sync_percent": "half", "disk": "Inconsistent"},
    ]
    fams = families(view(checks=[CheckResult(DRBD, Status.CRITICAL, "x",
                                             {"resources": resources})]))
    assert values(fams, "ha_watchdog_drbd_connected") == {("r0",): 0.0, ("r2",): 0.0}
    assert "ha_watchdog_drbd_sync_percent" not in by_name(fams)


@pytest.mark.parametrize("details", [{}, {"resources": None}, {"resources": "r0"},
                                     {"resources": {"name": "r0"}}])
def test_drbd_without_a_resource_list(details):
    fams = families(view(checks=[CheckResult(DRBD, Status.UNKNOWN, "x", details)]))
    assert not [n for n in by_name(fams) if n.startswith("ha_watchdog_drbd_")]


def test_daemon_numbers_and_counters():
    fams = families(view(
        open_incidents=2, outbox_length=3, outbox_oldest_age=950.5,
        deliveries={("slack", "delivered"): 7, ("slack", "failed"): 2, ("mail", "expired"): 1},
        cycles=120, cycle_duration=0.25, last_cycle=1_700_000_000.5,
    ))
    assert value(fams, "ha_watchdog_incidents_open") == 2
    assert value(fams, "ha_watchdog_outbox_length") == 3
    assert value(fams, "ha_watchdog_outbox_oldest_age_seconds") == 950.5
    assert value(fams, "ha_watchdog_cycle_duration_seconds") == 0.25
    assert value(fams, "ha_watchdog_last_cycle_timestamp_seconds") == 1_700_000_000.5
    deliveries = by_name(fams)["ha_watchdog_deliveries"]
    assert (deliveries.type, deliveries.sample_name) == (COUNTER, "ha_watchdog_deliveries_total")
    assert deliveries.labels == ("node", "target", "outcome")
    assert values(fams, "ha_watchdog_deliveries") == {
        ("slack", "delivered"): 7, ("slack", "failed"): 2, ("mail", "expired"): 1}
    cycles = by_name(fams)["ha_watchdog_cycles"]
    assert (cycles.type, cycles.sample_name) == (COUNTER, "ha_watchdog_cycles_total")
    assert value(fams, "ha_watchdog_cycles") == 120
    gauge = by_name(fams)["ha_watchdog_cycle_duration_seconds"]
    assert (gauge.type, gauge.sample_name) == (GAUGE, "ha_watchdog_cycle_duration_seconds")


def test_no_deliveries_yet_leaves_the_counter_out():
    assert "ha_watchdog_deliveries" not in by_name(families(view()))


@pytest.mark.parametrize("active, until, end", [
    (True, 1_700_003_600.0, 1_700_003_600.0),
    (True, None, None),  # active without an end
    (False, 1_700_003_600.0, None),  # a stale end is not shown
    (False, None, None),
])
def test_maintenance(active, until, end):
    fams = families(view(maintenance_active=active, maintenance_until=until))
    assert value(fams, "ha_watchdog_maintenance_active") == float(active)
    assert value(fams, "ha_watchdog_maintenance_end_timestamp_seconds") == end


def test_the_public_names():
    """Every name of a primary with everything present (README "Metrics" lists them)."""
    checks = [drbd_result(CONNECTED_PRIMARY),
              CheckResult(STANDBYS, Status.OK, "x", {"streaming": 1}),
              CheckResult(REPLAY_LAG, Status.OK, "x", {"lag_seconds": 0.0, "lag_bytes": 0})]
    fams = families(view(checks=checks, confirmed={"drbd": "ok"},
                         deliveries={("slack", "delivered"): 1},
                         maintenance_active=True, maintenance_until=1.0))
    assert [f.sample_name for f in fams] == [
        "ha_watchdog_info",
        "ha_watchdog_role",
        "ha_watchdog_check_status",
        "ha_watchdog_check_confirmed_status",
        # each check's own families, in registry order (checks.registry.CHECKS)
        "ha_watchdog_drbd_resource_info",
        "ha_watchdog_drbd_connected",
        "ha_watchdog_drbd_uptodate",
        "ha_watchdog_drbd_sync_percent",
        "ha_watchdog_standbys_streaming",
        "ha_watchdog_replay_lag_seconds",
        "ha_watchdog_replay_lag_bytes",
        "ha_watchdog_incidents_open",
        "ha_watchdog_outbox_length",
        "ha_watchdog_outbox_oldest_age_seconds",
        "ha_watchdog_deliveries_total",
        "ha_watchdog_cycles_total",
        "ha_watchdog_state_write_failures_total",
        "ha_watchdog_cycle_duration_seconds",
        "ha_watchdog_last_cycle_timestamp_seconds",
        "ha_watchdog_maintenance_active",
        "ha_watchdog_maintenance_end_timestamp_seconds",
    ]


def test_a_registered_check_brings_its_own_families(monkeypatch):
    """The exporter takes per-check families from the registry: a new entry needs nothing
    in metrics.py (the next checks land this way)."""
    from watchdog.checks import registry
    from watchdog.families import gauge

    def extra(result):
        value = [] if result is None else [((), result.details["n"])]
        return [gauge("extra_things", "Things the extra check counted.", (), value)]

    entry = registry.Check("extra", registry.ALL_ROLES, (), object, "look", None, extra)
    monkeypatch.setattr(registry, "CHECKS", registry.CHECKS + (entry,))
    fams = families(view(checks=[CheckResult("extra", Status.OK, "x", {"n": 3})]))
    assert value(fams, "ha_watchdog_extra_things") == 3.0
    assert "ha_watchdog_extra_things" not in by_name(families(view()))  # did not run: left out
