"""DRBD parsers, format detection and the probe, over real recorded outputs."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watchdog.checks.drbd import check_drbd, detect_role
from watchdog.config import DrbdConfig
from watchdog.model import Status
from watchdog.probes.drbd import (
    DrbdResource,
    DrbdSnapshot,
    DrbdVolume,
    detect_format,
    parse,
    parse_drbd_overview,
    parse_drbdadm_status,
    parse_drbdsetup_json,
    parse_proc_drbd,
    probe_drbd,
    resource_matches,
    select_resources,
)

SAMPLES = Path(__file__).resolve().parent / "fixtures" / "drbd"
PARSERS = (parse_proc_drbd, parse_drbd_overview, parse_drbdadm_status, parse_drbdsetup_json)


def sample(name: str) -> str:
    return (SAMPLES / name).read_bytes().decode("utf-8")


def sample_names():
    return sorted(p.name for p in SAMPLES.iterdir())


def expected_format(name: str) -> str:
    if name.startswith("proc-drbd-"):
        return "proc"
    if name.startswith("drbd-overview-"):
        return "drbd-overview"
    if name.endswith(".json"):
        return "drbdsetup-json"
    return "drbdadm-status"


# ---------------------------------------------------------------- every sample


def test_every_drbd_sample_is_covered():
    # The table tests below run over the folder; make sure it is the full set.
    names = sample_names()
    assert len(names) == 38
    assert {expected_format(n) for n in names} == {
        "proc",
        "drbd-overview",
        "drbdadm-status",
        "drbdsetup-json",
    }


@pytest.mark.parametrize("name", sample_names())
def test_sample_format_detected_and_fully_read(name):
    text = sample(name)
    fmt = detect_format(text)
    assert fmt == expected_format(name)
    parsed = parse(fmt, text)
    assert parsed.bad_line is None
    if "version-only" not in name:
        assert parsed.resources, "every sample except DRBD 9's /proc/drbd shows a device"


@pytest.mark.parametrize(
    "name, res_name, minors, role, cstate, peer_role, disk, peer_disk, replication, pct, eta",
    [
        ("proc-drbd-8.4-connected-primary-secondary.txt", "drbd0", (0,), "Primary",
         "Connected", "Secondary", "UpToDate", "UpToDate", "Established", None, None),
        # TAB before the progress lines, sizes in M
        ("proc-drbd-8.4-syncsource-tabs-M.txt", "drbd0", (0,), "Primary",
         "Connected", "Secondary", "UpToDate", "Inconsistent", "SyncSource", 55.1, 353.0),
        # 8 spaces instead of the TAB, and `want:` on the target side
        ("proc-drbd-8.4-synctarget-spaces-M-want.txt", "drbd0", (0,), "Secondary",
         "Connected", "Primary", "Inconsistent", "UpToDate", "SyncTarget", 37.4, 185.0),
        # leading empty line for the missing minor 0
        ("proc-drbd-8.4-syncsource-K-minor1-pacemaker-walkthrough.txt", "drbd1", (1,),
         "Primary", "Connected", "Secondary", "UpToDate", "Inconsistent", "SyncSource",
         83.6, 4.0),
        # 21-character bar below 5 %
        ("proc-drbd-8.4-syncsource-full-resync-0.1pct.txt", "drbd0", (0,), "Primary",
         "Connected", "Secondary", "UpToDate", "Inconsistent", "SyncSource", 0.1, 8733.0),
        ("proc-drbd-8.4-synctarget-tabs-K-want-device-lines-only.txt", "drbd1", (1,),
         "Secondary", "Connected", "Primary", "Inconsistent", "UpToDate", "SyncTarget",
         6.0, 185.0),
        # blank protocol column: three spaces before the flags
        ("proc-drbd-8.4-standalone-splitbrain-primary-node.txt", "drbd0", (0,), "Primary",
         "StandAlone", "Unknown", "UpToDate", "DUnknown", None, None, None),
        ("proc-drbd-8.3-standalone-outdated-line.txt", "drbd0", (0,), "Secondary",
         "StandAlone", "Unknown", "Outdated", "DUnknown", None, None, None),
        ("proc-drbd-8.3-wfconnection-primary-unknown.txt", "drbd0", (0,), "Primary",
         "WFConnection", "Unknown", "UpToDate", "DUnknown", None, None, None),
        # stderr NOTE lines captured in the sample, trailing space after the df columns
        ("drbd-overview-connected-primary-mounted-with-stderr-note.txt", "mysql", (0,),
         "Primary", "Connected", "Secondary", "UpToDate", "UpToDate", "Established",
         None, None),
        ("drbd-overview-greenarrow-doc-primary.txt", "r0", (1,), "Primary", "Connected",
         "Secondary", "UpToDate", "UpToDate", "Established", None, None),
        ("drbd-overview-syncsource-progress-11.8pct.txt", "mysql", (0,), "Primary",
         "Connected", "Secondary", "UpToDate", "Inconsistent", "SyncSource", 11.8, None),
        ("drbd-overview-standalone-secondary-unmounted.txt", "mysql", (0,), "Secondary",
         "StandAlone", "Unknown", "UpToDate", "DUnknown", None, None, None),
        # `replication:Established` printed by older utils
        ("drbdadm-status-8.4kernel-secondary-established.txt", "r0", (), "Secondary",
         "Connected", "Primary", "UpToDate", "UpToDate", "Established", None, None),
        ("drbdadm-status-8.4kernel-syncsource-done.txt", "r0", (), "Primary", "Connected",
         "Secondary", "UpToDate", "Inconsistent", "SyncSource", 21.52, None),
        # 80-column continuation lines
        ("drbd9-drbdsetup-status-verbose-statistics-ug.txt", "home", (0,), "Secondary",
         "Connected", "Secondary", "UpToDate", "UpToDate", "Established", None, None),
        ("drbd9-drbdsetup-status-json-connected-primary.json", "beijing", (5,), "Primary",
         "Connected", "Secondary", "UpToDate", "UpToDate", "Established", None, None),
    ],
)
def test_sample_facts(
    name, res_name, minors, role, cstate, peer_role, disk, peer_disk, replication, pct, eta
):
    text = sample(name)
    parsed = parse(detect_format(text), text)
    assert parsed.bad_line is None
    [res] = parsed.resources
    assert res.name == res_name
    assert res.minors == minors
    assert res.role == role
    conn = res.connection
    assert (conn.cstate, conn.peer_role) == (cstate, peer_role)
    assert res.volumes[0].disk == disk
    peer_volume = conn.volumes[0]
    assert (peer_volume.peer_disk, peer_volume.replication) == (peer_disk, replication)
    assert peer_volume.sync_percent == pct
    assert peer_volume.eta_seconds == eta


def test_proc_three_minors_and_versions():
    parsed = parse_proc_drbd(sample("proc-drbd-8.4-ug-three-minors.txt"))
    assert [r.name for r in parsed.resources] == ["drbd0", "drbd1", "drbd2"]
    assert [r.role for r in parsed.resources] == ["Secondary", "Primary", "Secondary"]
    assert parsed.version == "8.4.0"


def test_proc_unconfigured_minor_and_srcversion_trailing_space():
    parsed = parse_proc_drbd(sample("proc-drbd-8.3-unconfigured.txt"))
    assert parsed.bad_line is None
    assert parsed.version == "8.3.7"
    [res] = parsed.resources
    assert res.unconfigured and res.minors == (0,)


def test_proc_drbd9_version_only():
    parsed = parse_proc_drbd(sample("proc-drbd-9.0-version-only.txt"))
    assert parsed.resources == () and parsed.bad_line is None
    assert parsed.version == "9.0.32-1"


def test_proc_io_suspended_flag_and_details_lines():
    text = (
        "version: 8.4.11-1 (api:1/proto:86-101)\n"
        " 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C s-----\n"
        "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
        "\tresync: used:0/61 hits:0 misses:0 starving:0 locked:0 changed:0\n"
        "\tact_log: used:0/1237 hits:0 misses:0 starving:0 locked:0 changed:0\n"
        "\tblocked on activity log: 0\n"
    )
    parsed = parse_proc_drbd(text)
    assert parsed.bad_line is None
    assert parsed.resources[0].suspended == "yes"


def test_proc_quotes_the_first_unreadable_line():
    text = sample("proc-drbd-8.4-connected-primary-secondary.txt").replace(
        "ds:UpToDate/UpToDate", "ds:UpToDat/UpToDate"
    )
    parsed = parse_proc_drbd(text)
    assert parsed.bad_line == (
        " 0: cs:Connected ro:Primary/Secondary ds:UpToDat/UpToDate C r-----"
    )
    assert parsed.resources == ()


def test_overview_wrapped_guide_rows_are_joined():
    parsed = parse_drbd_overview(sample("drbd-overview-8.4-ug-doc-wrapped.txt"))
    assert parsed.bad_line is None
    assert [(r.name, r.minors, r.role) for r in parsed.resources] == [
        ("home", (0,), "Primary"),
        ("data", (1,), "Primary"),
        ("nfs-root", (2,), "Primary"),
    ]


def test_overview_unconfigured_and_not_loaded():
    parsed = parse_drbd_overview(sample("drbd-overview-8.3-unconfigured.txt"))
    assert [(r.name, r.unconfigured) for r in parsed.resources] == [("web", True)]
    not_loaded = parse_drbd_overview("drbd not loaded\n")
    assert not_loaded.not_loaded and not_loaded.resources == ()
    assert detect_format("drbd not loaded\n") == "drbd-overview"


def test_overview_groups_volumes_of_one_resource():
    text = (
        " 0:r0/0  Connected Primary/Secondary UpToDate/UpToDate \n"
        " 1:r0/1  WFConnection Primary/Unknown UpToDate/DUnknown \n"
    )
    [res] = parse_drbd_overview(text).resources
    assert res.minors == (0, 1)
    assert res.connection.cstate == "WFConnection"


def test_drbdadm_status_no_resources():
    text = "# No currently configured DRBD found.\n"
    assert detect_format(text) == "drbdadm-status"
    parsed = parse_drbdadm_status(text)
    assert parsed.resources == () and parsed.bad_line is None


def test_drbdadm_status_drbd9_multi_volume_named_peers_quorum():
    # DRBD 9 shape: two volumes, two peers (one a diskless tiebreaker), one peer down,
    # lines wrapped at 80 columns as drbdsetup does when stdout is not a terminal.
    text = (
        "data role:Primary suspended:quorum\n"
        "  volume:0 disk:UpToDate quorum:no\n"
        "  volume:1 disk:UpToDate\n"
        "  alpha connection:Connected role:Secondary congested:no ap-in-flight:0\n"
        "      rs-in-flight:0\n"
        "    volume:0 replication:SyncSource peer-disk:Inconsistent done:42.50\n"
        "        resync-suspended:no\n"
        "    volume:1 peer-disk:UpToDate\n"
        "  tiebreaker role:Secondary\n"
        "    volume:0 peer-disk:Diskless peer-client:yes\n"
        "  beta connection:Connecting\n"
        "\n"
        "web role:Secondary\n"
        "  disk:Outdated\n"
        "  alpha connection:StandAlone\n"
    )
    parsed = parse_drbdadm_status(text)
    assert parsed.bad_line is None
    data, web = parsed.resources
    assert data.suspended == "quorum"
    assert [(v.volume, v.quorum) for v in data.volumes] == [(0, False), (1, None)]
    alpha, tiebreaker, beta = data.connections
    assert alpha.peer == "alpha" and alpha.peer_role == "Secondary"
    assert [(p.volume, p.replication, p.sync_percent, p.resync_suspended) for p in alpha.volumes] == [
        (0, "SyncSource", 42.5, "no"),
        (1, "Established", None, None),
    ]
    assert tiebreaker.volumes[0].peer_client is True
    assert (beta.cstate, beta.peer_role, beta.volumes) == ("Connecting", "Unknown", ())
    assert (web.role, web.volumes[0].disk, web.connection.cstate) == (
        "Secondary",
        "Outdated",
        "StandAlone",
    )


def test_drbdadm_status_quotes_unknown_word():
    text = "r0 role:Primary\n  disk:UpToDate\n  peer role:Secondary\n    peer-disk:Frobnicated\n"
    parsed = parse_drbdadm_status(text)
    assert parsed.bad_line == "    peer-disk:Frobnicated"


def test_json_empty_array_and_bad_json():
    assert parse_drbdsetup_json("[\n]\n").resources == ()
    assert parse_drbdsetup_json("[ ]").bad_line is None
    assert detect_format("[\n]\n") == "drbdsetup-json"
    broken = sample("drbd9-drbdsetup-status-json-connected-primary.json").replace(
        '"role": "Primary",', '"role": "Primary"'
    )
    assert parse_drbdsetup_json(broken).bad_line == '  "suspended": false,'


def test_json_unknown_state_quotes_its_line():
    text = sample("drbd9-drbdsetup-status-json-connected-primary.json").replace(
        '"Connected"', '"Frobnicated"'
    )
    parsed = parse_drbdsetup_json(text)
    assert parsed.bad_line == '"connection-state": "Frobnicated",'


def test_json_resync_details():
    text = (
        '[{"name": "r0", "role": "Secondary", "suspended": false,'
        ' "devices": [{"volume": 0, "minor": 0, "disk-state": "Inconsistent", "quorum": true}],'
        ' "connections": [{"peer-node-id": 1, "name": "a", "connection-state": "Connected",'
        ' "peer-role": "Primary", "peer_devices": [{"volume": 0,'
        ' "replication-state": "SyncTarget", "peer-disk-state": "UpToDate",'
        ' "resync-suspended": "no", "percent-in-sync": 40.00,'
        ' "estimated-seconds-to-finish": 95, "percent-resync-done": 39.5}]}]}]'
    )
    [res] = parse_drbdsetup_json(text).resources
    pv = res.connection.volumes[0]
    assert (pv.replication, pv.sync_percent, pv.eta_seconds) == ("SyncTarget", 39.5, 95.0)


def test_detect_format_unknown_text():
    assert detect_format("") is None
    assert detect_format("hello world\n") is None
    assert detect_format("exists -\n") is None  # events2 is not supported


# ---------------------------------------------------------------- resource filter


def test_resource_filter_accepts_names_and_minors():
    res = DrbdResource(name="r0", volumes=(DrbdVolume(volume=0, minor=1),))
    for spec in ("r0", "r0/0", "1", "drbd1", "/dev/drbd1", "minor 1"):
        assert resource_matches(res, spec), spec
    for spec in ("r1", "r0/1", "0", "drbd0"):
        assert not resource_matches(res, spec), spec
    other = DrbdResource(name="r1", volumes=(DrbdVolume(volume=0, minor=2),))
    selected, missing = select_resources((res, other), ("drbd2", "nope"))
    assert selected == (other,) and missing == ("nope",)
    assert select_resources((res, other), None) == ((res, other), ())


# ---------------------------------------------------------------- the probe


def write(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes((SAMPLES / name).read_bytes())
    return path


def test_probe_reads_proc_file(tmp_path):
    path = write(tmp_path, "proc-drbd-8.4-connected-primary-secondary.txt")
    snap = probe_drbd(DrbdConfig(format="proc", path=str(path)))
    assert (snap.format, snap.source, snap.error, snap.bad_line) == ("proc", str(path), None, None)
    assert snap.version == "8.4.10-1"
    assert [r.name for r in snap.resources] == ["drbd0"]
    assert detect_role(snap).value == "primary"
    assert check_drbd(snap).status is Status.OK


def test_probe_auto_reads_path_of_an_84_kernel(tmp_path):
    path = write(tmp_path, "proc-drbd-8.4-syncsource-tabs-M.txt")
    snap = probe_drbd(DrbdConfig(format="auto", path=str(path)))
    assert snap.format == "proc" and snap.fallback is None
    assert check_drbd(snap).status is Status.WARNING


@pytest.mark.parametrize(
    "name",
    [
        "drbd-overview-connected-primary-mounted-with-stderr-note.txt",
        "drbdadm-status-8.4kernel-connecting.txt",
        "drbd9-drbdsetup-status-verbose-statistics-ug.txt",
        "drbd9-drbdsetup-status-json-connected-primary.json",
        "proc-drbd-8.4-ug-three-minors.txt",
    ],
)
def test_probe_auto_recognises_command_output(tmp_path, name):
    path = write(tmp_path, name)
    snap = probe_drbd(DrbdConfig(format="auto", command=("cat", str(path))))
    assert snap.format == expected_format(name)
    assert snap.source == f"cat {path}"
    assert snap.error is None and snap.bad_line is None and snap.resources


def test_probe_explicit_format_with_command(tmp_path):
    path = write(tmp_path, "drbdadm-status-8.4kernel-secondary-established.txt")
    cfg = DrbdConfig(format="drbdadm-status", command=("cat", str(path)))
    snap = probe_drbd(cfg)
    assert snap.format == "drbdadm-status"
    assert detect_role(snap).value == "secondary"


def test_probe_explicit_wrong_format_gives_the_bad_line(tmp_path):
    path = write(tmp_path, "drbdadm-status-8.4kernel-secondary-established.txt")
    snap = probe_drbd(DrbdConfig(format="proc", command=("cat", str(path))))
    assert snap.bad_line == "r0 role:Secondary"
    result = check_drbd(snap)
    assert result.status is Status.UNKNOWN and "r0 role:Secondary" in result.summary


def test_probe_drbd9_version_only_falls_back_to_status_command(tmp_path):
    proc = write(tmp_path, "proc-drbd-9.0-version-only.txt")
    status = write(tmp_path, "drbdadm-status-8.4kernel-syncsource-done.txt")
    snap = probe_drbd(
        DrbdConfig(format="auto", path=str(proc)), status_command=("cat", str(status))
    )
    assert snap.format == "drbdadm-status"
    assert snap.source == f"cat {status}"
    assert snap.version == "9.0.32-1"
    assert "9.0.32-1" in snap.fallback
    assert [r.name for r in snap.resources] == ["r0"]
    assert check_drbd(snap).status is Status.WARNING


def test_probe_drbd9_fallback_command_missing(tmp_path):
    proc = write(tmp_path, "proc-drbd-9.0-version-only-9.0.14.txt")
    snap = probe_drbd(
        DrbdConfig(format="auto", path=str(proc)),
        status_command=("ha-watchdog-test-no-such-drbdadm", "status"),
    )
    assert "command not found" in snap.error
    result = check_drbd(snap)
    assert result.status is Status.UNKNOWN
    assert "ha-watchdog-test-no-such-drbdadm" in result.summary


def test_probe_drbd9_with_format_proc_says_to_use_auto(tmp_path):
    proc = write(tmp_path, "proc-drbd-9.0-version-only.txt")
    result = check_drbd(probe_drbd(DrbdConfig(format="proc", path=str(proc))))
    assert result.status is Status.UNKNOWN
    assert "auto" in result.summary and "9.0.32-1" in result.summary


def test_probe_hanging_command_is_killed_at_the_deadline():
    snap = probe_drbd(DrbdConfig(format="auto", command=("sleep", "60"), timeout=0.5))
    assert "timed out" in snap.error and snap.resources == ()
    result = check_drbd(snap)
    assert result.status is Status.UNKNOWN and "timed out" in result.summary


def test_probe_missing_file(tmp_path):
    path = tmp_path / "no-such-proc-drbd"
    snap = probe_drbd(DrbdConfig(format="auto", path=str(path)))
    assert "No such file" in snap.error and str(path) in snap.error
    result = check_drbd(snap)
    assert result.status is Status.UNKNOWN and str(path) in result.summary


def test_probe_missing_command():
    snap = probe_drbd(DrbdConfig(format="drbdadm-status", command=("ha-watchdog-no-such-cmd",)))
    assert "command not found" in snap.error
    assert check_drbd(snap).status is Status.UNKNOWN


def test_probe_failing_command_reports_status_and_stderr():
    cfg = DrbdConfig(command=("sh", "-c", "echo 'Could not connect to drbd' >&2; exit 20"))
    snap = probe_drbd(cfg)
    assert "exited with status 20" in snap.error and "Could not connect" in snap.error


def test_probe_no_such_resource_on_stderr_is_unconfigured(tmp_path):
    path = write(tmp_path, "drbdadm-status-8.4kernel-secondary-established.txt")
    script = f"cat '{path}'; echo 'r1: No such resource' >&2; exit 10"
    snap = probe_drbd(DrbdConfig(command=("sh", "-c", script)))
    assert snap.error is None
    assert [(r.name, r.unconfigured) for r in snap.resources] == [("r0", False), ("r1", True)]
    result = check_drbd(snap)
    assert result.status is Status.CRITICAL and "r1: unconfigured" in result.summary
    assert detect_role(snap).value == "unknown"


def test_probe_resources_filter_and_missing(tmp_path):
    path = write(tmp_path, "proc-drbd-8.4-ug-three-minors.txt")
    snap = probe_drbd(DrbdConfig(path=str(path), resources=("1", "r0")))
    assert [r.name for r in snap.resources] == ["drbd1"]
    assert snap.missing == ("r0",)
    result = check_drbd(snap)
    assert result.status is Status.CRITICAL
    assert "resource not found: r0" in result.summary and "minor" in result.summary
    ok = probe_drbd(DrbdConfig(path=str(path), resources=("drbd1",)))
    assert check_drbd(ok).status is Status.OK and detect_role(ok).value == "primary"


def test_probe_unrecognised_command_output():
    snap = probe_drbd(DrbdConfig(command=(sys.executable, "-c", "print('\\nhello there')")))
    assert snap.format == "unknown" and snap.bad_line == "hello there"
    result = check_drbd(snap)
    assert result.status is Status.UNKNOWN and "hello there" in result.summary


def test_probe_empty_command_output():
    snap = probe_drbd(DrbdConfig(command=("true",)))
    assert snap.bad_line == "(empty output)"
    assert check_drbd(snap).status is Status.UNKNOWN


def test_probe_hanging_read_is_abandoned(tmp_path):
    release = threading.Event()
    path = str(tmp_path / "hangs")

    def stuck_read(p: str) -> str:
        release.wait(30)
        return ""

    try:
        snap = probe_drbd(DrbdConfig(path=path, timeout=0.2), read_file=stuck_read)
        assert "timed out" in snap.error
        again = probe_drbd(DrbdConfig(path=path, timeout=0.2), read_file=stuck_read)
        assert "still hanging" in again.error
    finally:
        release.set()


def test_probe_reader_that_raises_is_a_reason():
    def broken(p: str) -> str:
        raise ValueError("boom")

    snap = probe_drbd(DrbdConfig(path="/x"), read_file=broken)
    assert "boom" in snap.error
    assert check_drbd(snap).status is Status.UNKNOWN


# ---------------------------------------------------------------- never raises

ALL_TEXTS = [sample(n) for n in sample_names()]


def mutate(text: str, data) -> str:
    lines = text.split("\n")
    for _ in range(data.draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["delete", "duplicate", "truncate", "flip", "insert"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "truncate":
            lines[i] = lines[i][: data.draw(st.integers(0, max(0, len(lines[i]))))]
        elif op == "flip" and lines[i]:
            j = data.draw(st.integers(0, len(lines[i]) - 1))
            ch = data.draw(st.characters(blacklist_categories=("Cs",)))
            lines[i] = lines[i][:j] + ch + lines[i][j + 1:]
        elif op == "insert":
            lines.insert(i, data.draw(st.text(max_size=40)))
    return "\n".join(lines)


def assert_pipeline_is_total(text: str) -> None:
    for parser in PARSERS:
        parsed = parser(text)
        assert parsed.bad_line is None or not parsed.bad_line.startswith("internal parser error")
    fmt = detect_format(text)
    assert fmt in (None, "proc", "drbd-overview", "drbdadm-status", "drbdsetup-json")
    parsed = parse(fmt or "proc", text)
    snap = DrbdSnapshot(
        resources=parsed.resources,
        format=fmt or "unknown",
        source="test",
        bad_line=parsed.bad_line,
        version=parsed.version,
        not_loaded=parsed.not_loaded,
    )
    role = detect_role(snap)
    result = check_drbd(snap)
    assert result.status in set(Status)
    assert result.name == "drbd" and result.summary
    assert result.details["role"] == role.value
    if parsed.bad_line is not None:
        assert result.status is Status.UNKNOWN


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_never_raises(text):
    assert_pipeline_is_total(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_TEXTS), st.data())
def test_mutated_samples_never_raise(text, data):
    assert_pipeline_is_total(mutate(text, data))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["version: 8.4.11-1 (api:1/proto:86-101)", " 0: cs:", "ro:", "ds:", "[", "{",
             "role:", "  disk:", "    peer-disk:", "Connected", "Primary/Secondary",
             "UpToDate/UpToDate", "\t[==>...] sync'ed:", "finish:", '"name":', "]", "}",
             "\n", " ", ":", "/", "# No currently configured DRBD found."]
        ),
        max_size=30,
    )
)
def test_token_soup_never_raises(tokens):
    assert_pipeline_is_total("".join(tokens))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    | st.sampled_from(["Primary", "Connected", "UpToDate", "SyncSource", "Inconsistent"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["name", "role", "suspended", "devices", "connections", "peer_devices", "volume",
             "minor", "disk-state", "quorum", "connection-state", "peer-role",
             "replication-state", "peer-disk-state", "percent-resync-done",
             "estimated-seconds-to-finish", "resync-suspended", "peer-client"]
        ),
        inner,
        max_size=6,
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_document_never_raises(value):
    import json as _json

    text = _json.dumps(value, allow_nan=True)
    assert_pipeline_is_total(text)
    assert_pipeline_is_total("[" + text + "]")


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e400", "-1", "1" + "0" * 400])
def test_json_rejects_numbers_that_are_not_percentages(number):
    text = (
        '[{"name": "r0", "role": "Primary", "connections": [{"name": "a",'
        ' "connection-state": "Connected", "peer_devices": [{"replication-state":'
        ' "SyncSource", "peer-disk-state": "Inconsistent", "percent-resync-done": '
        + number + "}]}]}]"
    )
    parsed = parse_drbdsetup_json(text)
    assert parsed.bad_line is not None and "percent-resync-done" in parsed.bad_line
    assert check_drbd(
        DrbdSnapshot(parsed.resources, "drbdsetup-json", "t", bad_line=parsed.bad_line)
    ).status is Status.UNKNOWN


def test_a_fifo_or_a_huge_file_as_the_drbd_path_is_a_reason_not_a_hang(tmp_path):
    """[drbd] path was read with a plain open(): a FIFO there blocked the reader thread."""
    import os as _os

    from watchdog.probes.drbd.probe import read_text

    fifo = tmp_path / "drbd.fifo"
    _os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO"):
        read_text(str(fifo))
    huge = tmp_path / "drbd.huge"
    huge.write_bytes(b"x" * (2 << 20))
    with pytest.raises(OSError, match="too large"):
        read_text(str(huge))
