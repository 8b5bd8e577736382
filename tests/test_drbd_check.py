"""The `drbd` check verdicts and role detection, over every recorded DRBD sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.checks.drbd import check_drbd, detect_role, role_and_reason
from watchdog.config import DrbdConfig
from watchdog.model import Role, Status
from watchdog.probes.drbd import (
    CONNECTION_STATES,
    DISK_STATES,
    REPLICATION_STATES,
    ROLES,
    DrbdConnection,
    DrbdPeerVolume,
    DrbdResource,
    DrbdSnapshot,
    DrbdVolume,
    detect_format,
    parse,
    probe_drbd,
)

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "drbd"

OK, WARNING, CRITICAL, UNKNOWN = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN
P, S, U = Role.PRIMARY, Role.SECONDARY, Role.UNKNOWN

# file -> (detected format, role, status, words the summary must contain)
EXPECTED = {
    "drbd-overview-8.3-unconfigured.txt": ("drbd-overview", U, CRITICAL, ["web", "unconfigured"]),
    "drbd-overview-8.4-ug-doc-wrapped.txt": (
        "drbd-overview", P, OK, ["home", "data", "nfs-root", "Connected Primary/Secondary"]),
    "drbd-overview-connected-after-sync-no-fs.txt": (
        "drbd-overview", P, OK, ["mysql: Connected Primary/Secondary UpToDate/UpToDate"]),
    "drbd-overview-connected-primary-mounted-with-stderr-note.txt": (
        "drbd-overview", P, OK, ["mysql: Connected Primary/Secondary UpToDate/UpToDate"]),
    "drbd-overview-greenarrow-doc-primary.txt": (
        "drbd-overview", P, OK, ["r0: Connected Primary/Secondary UpToDate/UpToDate"]),
    "drbd-overview-standalone-primary-mounted.txt": (
        "drbd-overview", P, CRITICAL, ["StandAlone", "split brain suspected", "by hand"]),
    "drbd-overview-standalone-secondary-unmounted.txt": (
        "drbd-overview", S, CRITICAL, ["StandAlone", "split brain suspected"]),
    "drbd-overview-syncsource-progress-11.8pct.txt": (
        "drbd-overview", P, WARNING, ["resync", "SyncSource", "11.8% done"]),
    "drbd-overview-wfconnection-primary-mounted.txt": (
        "drbd-overview", P, CRITICAL, ["not connected", "WFConnection"]),
    "drbd-overview-wfconnection-secondary-unmounted.txt": (
        "drbd-overview", S, CRITICAL, ["not connected", "WFConnection"]),
    "drbd9-drbdadm-status-ug-established.txt": (
        "drbdadm-status", S, CRITICAL, ["Secondary/Secondary", "no node is Primary"]),
    "drbd9-drbdsetup-status-json-connected-primary.json": (
        "drbdsetup-json", P, OK, ["beijing: Connected Primary/Secondary UpToDate/UpToDate"]),
    "drbd9-drbdsetup-status-verbose-statistics-ug.txt": (
        "drbdadm-status", S, CRITICAL, ["Secondary/Secondary"]),
    "drbdadm-status-8.4kernel-connecting.txt": (
        "drbdadm-status", P, CRITICAL, ["r0", "not connected", "Connecting"]),
    "drbdadm-status-8.4kernel-secondary-established.txt": (
        "drbdadm-status", S, OK, ["r0: Connected Secondary/Primary UpToDate/UpToDate"]),
    "drbdadm-status-8.4kernel-syncsource-done.txt": (
        "drbdadm-status", P, WARNING, ["resync", "SyncSource", "21.52% done"]),
    "drbdadm-status-splitbrain-standalone-primary-node.txt": (
        "drbdadm-status", P, CRITICAL, ["mydrbd", "server1", "StandAlone", "split brain"]),
    "proc-drbd-8.3-standalone-outdated-line.txt": (
        "proc", S, CRITICAL, ["drbd0", "local disk Outdated", "StandAlone"]),
    "proc-drbd-8.3-unconfigured.txt": ("proc", U, CRITICAL, ["drbd0", "unconfigured"]),
    "proc-drbd-8.3-wfconnection-primary-unknown.txt": (
        "proc", P, CRITICAL, ["not connected", "WFConnection"]),
    "proc-drbd-8.4-connected-primary-secondary.txt": (
        "proc", P, OK, ["drbd0: Connected Primary/Secondary UpToDate/UpToDate"]),
    "proc-drbd-8.4-connected-secondary-secondary-after-demote.txt": (
        "proc", S, CRITICAL, ["Secondary/Secondary", "nothing serves"]),
    "proc-drbd-8.4-standalone-primary-peer-inconsistent-minor1.txt": (
        "proc", P, CRITICAL, ["drbd1", "StandAlone", "split brain"]),
    "proc-drbd-8.4-standalone-secondary-peer-outdated.txt": (
        "proc", S, CRITICAL, ["StandAlone", "split brain"]),
    "proc-drbd-8.4-standalone-splitbrain-primary-node.txt": (
        "proc", P, CRITICAL, ["StandAlone", "split brain"]),
    "proc-drbd-8.4-syncsource-K-minor1-pacemaker-walkthrough.txt": (
        "proc", P, WARNING, ["drbd1", "SyncSource", "83.6% done", "ETA 4.0s"]),
    "proc-drbd-8.4-syncsource-full-resync-0.1pct.txt": (
        "proc", P, WARNING, ["SyncSource", "0.1% done", "ETA 2h25m"]),
    "proc-drbd-8.4-syncsource-tabs-K-device-lines-only.txt": (
        "proc", P, WARNING, ["SyncSource", "3.0% done", "ETA 4m39s"]),
    "proc-drbd-8.4-syncsource-tabs-M.txt": (
        "proc", P, WARNING, ["resync to peer", "55.1% done", "ETA 5m53s"]),
    "proc-drbd-8.4-synctarget-spaces-M-want.txt": (
        "proc", S, WARNING, ["resync from peer", "SyncTarget", "37.4% done", "ETA 3m05s"]),
    "proc-drbd-8.4-synctarget-tabs-K-want-device-lines-only.txt": (
        "proc", S, WARNING, ["SyncTarget", "6.0% done", "ETA 3m05s"]),
    "proc-drbd-8.4-ug-connected-secondary-primary.txt": (
        "proc", S, OK, ["drbd0: Connected Secondary/Primary UpToDate/UpToDate"]),
    "proc-drbd-8.4-ug-connected-secondary-secondary-inconsistent.txt": (
        "proc", S, CRITICAL, ["local disk Inconsistent", "peer disk Inconsistent",
                              "Secondary/Secondary"]),
    "proc-drbd-8.4-ug-three-minors.txt": (
        "proc", U, CRITICAL, ["drbd0", "Secondary/Secondary", "mixed roles", "2 more OK"]),
    "proc-drbd-8.4-wfconnection-after-create-md.txt": (
        "proc", S, CRITICAL, ["local disk Inconsistent", "WFConnection"]),
    "proc-drbd-8.4-wfconnection-secondary-unknown-inconsistent.txt": (
        "proc", S, CRITICAL, ["local disk Inconsistent", "WFConnection"]),
    # Read directly as format proc, DRBD 9's file shows nothing: the check says so.
    "proc-drbd-9.0-version-only-9.0.14.txt": ("proc", U, UNKNOWN, ["9.0.14-1", "auto"]),
    "proc-drbd-9.0-version-only.txt": ("proc", U, UNKNOWN, ["9.0.32-1", "no devices"]),
}


def snapshot_of(name: str) -> DrbdSnapshot:
    text = (SAMPLES / name).read_bytes().decode("utf-8")
    fmt = detect_format(text)
    parsed = parse(fmt, text)
    return DrbdSnapshot(
        resources=parsed.resources,
        format=fmt,
        source=name,
        bad_line=parsed.bad_line,
        version=parsed.version,
        not_loaded=parsed.not_loaded,
    )


def test_table_covers_every_sample():
    assert set(EXPECTED) == {p.name for p in SAMPLES.iterdir()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_verdict(name):
    fmt, role, status, words = EXPECTED[name]
    snap = snapshot_of(name)
    assert snap.format == fmt
    assert detect_role(snap) is role
    result = check_drbd(snap)
    assert result.name == "drbd"
    assert result.status is status, result.summary
    for word in words:
        assert word in result.summary, (word, result.summary)
    assert result.details["role"] == role.value
    json.dumps(result.to_json())  # details are JSON-serialisable


def test_details_list_every_resource():
    result = check_drbd(snapshot_of("proc-drbd-8.4-syncsource-tabs-M.txt"))
    [entry] = result.details["resources"]
    assert entry["name"] == "drbd0" and entry["minors"] == [0]
    assert (entry["role"], entry["peer_role"]) == ("Primary", "Secondary")
    assert (entry["cstate"], entry["replication"]) == ("Connected", "SyncSource")
    assert (entry["disk"], entry["peer_disk"]) == ("UpToDate", "Inconsistent")
    assert (entry["sync_percent"], entry["eta_seconds"]) == (55.1, 353.0)
    assert entry["status"] == "warning" and entry["problems"]


# ---------------------------------------------------------------- states no sample shows


def res(
    name="r0",
    role="Primary",
    disk="UpToDate",
    cstate="Connected",
    peer_role="Secondary",
    replication="Established",
    peer_disk="UpToDate",
    **kw,
) -> DrbdResource:
    peer_volume = DrbdPeerVolume(
        volume=0,
        replication=replication,
        peer_disk=peer_disk,
        sync_percent=kw.pop("sync_percent", None),
        eta_seconds=kw.pop("eta_seconds", None),
        resync_suspended=kw.pop("resync_suspended", None),
        peer_client=kw.pop("peer_client", None),
    )
    return DrbdResource(
        name=name,
        role=role,
        volumes=(DrbdVolume(volume=0, minor=kw.pop("minor", 0), disk=disk,
                            quorum=kw.pop("quorum", None)),),
        connections=(DrbdConnection("peer", cstate, peer_role, (peer_volume,)),),
        **kw,
    )


def snap(*resources, **kw) -> DrbdSnapshot:
    return DrbdSnapshot(resources=resources, format=kw.pop("format", "drbdadm-status"),
                        source="drbdadm status", **kw)


@pytest.mark.parametrize(
    "resource, status, words",
    [
        (res(), OK, ["Connected Primary/Secondary UpToDate/UpToDate"]),
        (res(peer_role="Primary"), CRITICAL, ["Primary/Primary"]),
        (res(quorum=False), CRITICAL, ["quorum lost"]),
        (res(suspended="quorum"), CRITICAL, ["I/O suspended (quorum)"]),
        (res(disk="Diskless"), CRITICAL, ["local disk Diskless"]),
        (res(disk="Failed"), CRITICAL, ["local disk Failed"]),
        (res(disk="Consistent"), CRITICAL, ["local disk Consistent"]),
        (res(peer_disk="Outdated"), CRITICAL, ["peer disk Outdated"]),
        (res(cstate="NetworkFailure", peer_role="Unknown", replication=None,
             peer_disk="DUnknown"), CRITICAL, ["not connected (NetworkFailure)"]),
        (res(cstate="BrokenPipe", peer_role="Unknown", replication=None), CRITICAL,
         ["BrokenPipe"]),
        (res(replication="PausedSyncS", peer_disk="Inconsistent", resync_suspended="user"),
         WARNING, ["PausedSyncS", "suspended: user", "paused"]),
        (res(role="Secondary", peer_role="Primary", disk="Inconsistent",
             replication="WFBitMapT"), WARNING, ["resync from peer (WFBitMapT)"]),
        (res(replication="SyncSource", peer_disk="Diskless"), CRITICAL, ["peer disk Diskless"]),
        (res(replication="VerifyS"), OK, ["Connected"]),
        (res(replication="Ahead", peer_disk="Outdated"), WARNING, ["Ahead", "peer lagging"]),
        (res(role="Secondary", peer_role="Primary", replication="Behind", disk="Outdated"),
         WARNING, ["Behind", "this node lagging"]),
        (res(replication="Off"), CRITICAL, ["replication Off"]),
        (res(peer_disk="Diskless", peer_client=True), OK, ["Connected"]),
        (DrbdResource(name="r0", role="Primary", volumes=(DrbdVolume(disk="UpToDate"),)),
         CRITICAL, ["no peer connection"]),
        (DrbdResource(name="r0", role="Primary", volumes=(DrbdVolume(disk="UpToDate"),),
                      connections=(DrbdConnection("peer", "Connected", "Secondary"),)),
         CRITICAL, ["no peer disk state shown"]),
        (DrbdResource(name="r9", unconfigured=True), CRITICAL, ["r9: unconfigured"]),
    ],
)
def test_constructed_states(resource, status, words):
    result = check_drbd(snap(resource))
    assert result.status is status, result.summary
    for word in words:
        assert word in result.summary, (word, result.summary)
    json.dumps(result.to_json())


def test_two_peers_one_down_is_critical_and_named():
    good = DrbdConnection("alpha", "Connected", "Secondary",
                          (DrbdPeerVolume(0, "Established", "UpToDate"),))
    down = DrbdConnection("beta", "Connecting", "Unknown")
    resource = DrbdResource("r0", "Primary", (DrbdVolume(0, 0, "UpToDate"),), (good, down))
    result = check_drbd(snap(resource))
    assert result.status is CRITICAL
    assert "peer beta not connected (Connecting)" in result.summary
    assert detect_role(snap(resource)) is P


def test_error_is_unknown_with_reason():
    result = check_drbd(snap(error="drbdadm status: timed out after 5s (killed)"))
    assert result.status is UNKNOWN
    assert "timed out after 5s" in result.summary
    assert detect_role(snap(error="x")) is U


def test_bad_line_is_unknown_quoting_the_line():
    s = snap(res(), bad_line="  frobnicate:yes")
    result = check_drbd(s)
    assert result.status is UNKNOWN and "'  frobnicate:yes'" in result.summary
    assert detect_role(s) is U
    assert result.details["resources"][0]["name"] == "r0"


def test_nothing_configured():
    result = check_drbd(snap())
    assert result.status is CRITICAL and "unconfigured" in result.summary
    assert check_drbd(snap(not_loaded=True, format="drbd-overview")).summary.startswith(
        "DRBD not loaded"
    )


def test_missing_resources_critical_and_role_unknown():
    s = snap(res(), missing=("r1",))
    result = check_drbd(s)
    assert result.status is CRITICAL and "resource not found: r1" in result.summary
    assert "1 more OK" in result.summary
    role, reason = role_and_reason(s)
    assert role is U and "r1" in reason


def test_role_detection():
    assert detect_role(snap(res(), res("r1"))) is P
    s2 = snap(res(role="Secondary", peer_role="Primary"), res("r1", role="Secondary",
                                                                peer_role="Primary"))
    assert detect_role(s2) is S
    mixed = snap(res(), res("r1", role="Secondary", peer_role="Primary"))
    assert detect_role(mixed) is U
    result = check_drbd(mixed)
    assert result.status is CRITICAL and "mixed roles" in result.summary
    assert result.details["role_reason"].startswith("mixed roles")


# ---------------------------------------------------------------- never raises

maybe = st.none() | st.text(max_size=8)
state = lambda words: st.none() | st.sampled_from(sorted(words)) | st.text(max_size=6)  # noqa: E731

peer_volumes = st.builds(
    DrbdPeerVolume,
    volume=st.none() | st.integers(0, 3),
    replication=state(REPLICATION_STATES),
    peer_disk=state(DISK_STATES),
    sync_percent=st.none() | st.floats(0, 100),
    eta_seconds=st.none() | st.floats(0, 1e7),
    resync_suspended=st.none() | st.sampled_from(["no", "user", "peer,dependency"]),
    peer_client=st.none() | st.booleans(),
)
connections = st.builds(
    DrbdConnection,
    peer=st.text(min_size=1, max_size=8),
    cstate=state(CONNECTION_STATES),
    peer_role=state(ROLES),
    volumes=st.lists(peer_volumes, max_size=3).map(tuple),
)
resources = st.builds(
    DrbdResource,
    name=st.text(min_size=1, max_size=8),
    role=state(ROLES),
    volumes=st.lists(
        st.builds(DrbdVolume, volume=st.none() | st.integers(0, 3),
                  minor=st.none() | st.integers(0, 300), disk=state(DISK_STATES),
                  quorum=st.none() | st.booleans(), client=st.none() | st.booleans()),
        max_size=3,
    ).map(tuple),
    connections=st.lists(connections, max_size=3).map(tuple),
    suspended=maybe,
    unconfigured=st.booleans(),
)
snapshots = st.builds(
    DrbdSnapshot,
    resources=st.lists(resources, max_size=3).map(tuple),
    format=st.sampled_from(["proc", "drbd-overview", "drbdadm-status", "drbdsetup-json",
                            "unknown"]),
    source=st.text(max_size=10),
    error=st.none() | st.text(max_size=10),
    bad_line=st.none() | st.text(max_size=10),
    missing=st.lists(st.text(max_size=5), max_size=2).map(tuple),
    version=st.none() | st.sampled_from(["8.4.11-1", "9.0.32-1", "x"]),
    not_loaded=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(snapshots)
def test_any_snapshot_gives_a_valid_result(s):
    result = check_drbd(s)
    role = detect_role(s)
    assert result.status in set(Status) and result.name == "drbd" and result.summary
    assert result.details["role"] == role.value
    json.dumps(result.to_json())
    if role is not U:
        # A definite role needs a clean read with every resource agreeing.
        assert not s.error and s.bad_line is None and not s.missing and s.resources
        assert {r.role for r in s.resources} == {role.value.capitalize()}
    if s.error or s.bad_line is not None:
        assert result.status is UNKNOWN


# ---------------------------------------------------------------- contradictions (#11.10)


def _probe_mutated(tmp_path, name: str, old: str, new: str, fmt: str = "auto") -> DrbdSnapshot:
    """A real sample with `old` replaced by `new`, read by the probe from a real command."""
    text = (SAMPLES / name).read_text()
    assert old in text, (name, old)
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return probe_drbd(DrbdConfig(format=fmt, command=("cat", str(path))))


CONTRADICTIONS = [
    # sample, replaced, by, words the summary must contain
    ("proc-drbd-8.4-connected-primary-secondary.txt", "ro:Primary/Secondary",
     "ro:Primary/Unknown", "connected, but peer role Unknown"),
    ("proc-drbd-8.4-ug-connected-secondary-primary.txt", "ro:Secondary/Primary",
     "ro:Secondary/Unknown", "connected, but peer role Unknown"),
    ("drbd-overview-greenarrow-doc-primary.txt", "Primary/Secondary",
     "Primary/Unknown", "connected, but peer role Unknown"),
    ("drbdadm-status-8.4kernel-secondary-established.txt", "  peer role:Primary",
     "  peer", ""),
    ("drbdadm-status-8.4kernel-secondary-established.txt", "  peer role:Primary",
     "  peer role:Unknown", "connected, but peer role Unknown"),
    ("drbdadm-status-8.4kernel-secondary-established.txt", "  peer role:Primary",
     "  peer connection:Connected", "connected, but peer role not shown"),
    ("drbdadm-status-8.4kernel-secondary-established.txt", "disk:UpToDate",
     "disk:Failed disk:UpToDate", "disk:Failed disk:UpToDate"),
    ("drbdadm-status-8.4kernel-secondary-established.txt", "peer-disk:UpToDate",
     "peer-disk:Failed peer-disk:UpToDate", "peer-disk:Failed"),
    ("drbdadm-status-8.4kernel-secondary-established.txt", "r0 role:Secondary",
     "r0 role:Secondary role:Primary", "role:Secondary role:Primary"),
    ("drbdadm-status-8.4kernel-secondary-established.txt",
     "  peer role:Primary\n    replication:Established peer-disk:UpToDate",
     "  peer connection:StandAlone\n  peer role:Primary\n"
     "    replication:Established peer-disk:UpToDate", "peer role:Primary"),
    ("drbd9-drbdsetup-status-json-connected-primary.json", '"disk-state": "UpToDate",',
     '"disk-state": "Failed", "disk-state": "UpToDate",', "'disk-state' given twice"),
    ("drbd9-drbdsetup-status-json-connected-primary.json", '"peer-role": "Secondary",',
     '"peer-role": "Unknown",', "connected, but peer role Unknown"),
    ("drbd9-drbdsetup-status-json-connected-primary.json", '"peer-role": "Secondary",',
     "", "connected, but peer role not shown"),
]  # fmt: skip


@pytest.mark.parametrize(
    "name,old,new,words", CONTRADICTIONS, ids=[str(i) for i in range(len(CONTRADICTIONS))]
)
def test_contradictory_or_incomplete_state_is_never_ok(tmp_path, name, old, new, words):
    snapshot = _probe_mutated(tmp_path, name, old, new)
    result = check_drbd(snapshot)
    assert result.status in (UNKNOWN, CRITICAL), result.summary
    assert words in result.summary
    # A node in doubt is not primary (nor secondary).
    assert detect_role(snapshot) is U, role_and_reason(snapshot)


def test_the_unmutated_samples_are_healthy(tmp_path):
    for name in {c[0] for c in CONTRADICTIONS}:
        snapshot = _probe_mutated(tmp_path, name, "", "")
        assert check_drbd(snapshot).status is OK, name


def test_overview_volumes_disagreeing_on_the_peer_role_are_unreadable():
    text = (
        "0:r0/0  Connected Primary/Secondary UpToDate/UpToDate\n"
        "1:r0/1  Connected Primary/Primary UpToDate/UpToDate\n"
    )
    parsed = parse("drbd-overview", text)
    assert parsed.bad_line is not None and "Primary/Primary" in parsed.bad_line


def test_role_reason_names_the_contradiction(tmp_path):
    snapshot = _probe_mutated(
        tmp_path, "proc-drbd-8.4-connected-primary-secondary.txt",
        "ro:Primary/Secondary", "ro:Primary/Unknown",
    )
    role, reason = role_and_reason(snapshot)
    assert role is U
    assert reason == "contradictory DRBD state (drbd0: connected, but peer role Unknown)"
