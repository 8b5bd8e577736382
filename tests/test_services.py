"""The `services` check: verdicts from recorded svstat lines, then against real daemontools.

The real part runs `svscan` over temporary service trees (lab.services) and probes
them with the real `svstat` as `[services] command`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import List, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.services import ServiceTree, missing_tools
from watchdog.checks.services import check_services
from watchdog.config import ServicesConfig, parse_config
from watchdog.model import SERVICES, Status
from watchdog.probes.daemontools import (
    ServiceSample,
    ServicesSnapshot,
    SvstatEntry,
    parse_svstat,
    probe_services,
)

HERE = Path(__file__).resolve().parent / "fixtures" / "daemontools"
CFG = ServicesConfig()  # expected_down: hvmail-qmail-smtpd3, hvmail-dnscache; min_uptime 4s


def lines_of(name: str) -> List[str]:
    return (HERE / name).read_text().splitlines()


def snap(*samples: Sequence[str], start: float = 100.0, step: float = 1.5) -> ServicesSnapshot:
    """A snapshot whose i-th sample holds the given svstat lines, taken `step` s apart."""
    out = []
    for index, lines in enumerate(samples):
        entries, ignored = parse_svstat("\n".join(lines))
        out.append(ServiceSample(start + index * step, tuple(entries), tuple(ignored)))
    return ServicesSnapshot(
        samples=tuple(out), source="svstat /service/*", raw="\n".join(samples[0])
    )


def service(result, name: str) -> dict:
    return next(s for s in result.details["services"] if s["name"] == name)


# ---------------------------------------------------------------- verdict table, one sample

VERDICTS = [
    # line, status, words the summary must contain
    ("/service/hvmail-dnscache: down 40 seconds", Status.OK, ["expected down: hvmail-dnscache"]),
    ("/service/hvmail-qmail-smtpd3: down 9 seconds", Status.OK, ["hvmail-qmail-smtpd3"]),
    ("/service/hvmail-httpd: up (pid 11867) 60 seconds", Status.OK, ["1 of 1 services up"]),
    ("/service/hvmail-httpd: down 55 seconds, normally up", Status.CRITICAL,
     ["hvmail-httpd", "down 55s", "normally up"]),
    ("/service/hvmail-studio-worker: down 4 seconds", Status.CRITICAL,
     ["hvmail-studio-worker", "down file", "expected_down"]),
    ("/service/hvmail-httpd: up (pid 11863) 60 seconds, paused", Status.WARNING,
     ["hvmail-httpd", "paused"]),
    ("/service/hvmail-httpd: down 3 seconds, normally up, want up", Status.CRITICAL,
     ["hvmail-httpd", "wants it up"]),
    ("/service/hvmail-httpd: down 3 seconds, want up", Status.CRITICAL, ["wants it up"]),
    ("/service/hvmail-httpd: up (pid 11868) 60 seconds, want down", Status.WARNING,
     ["hvmail-httpd", "stuck stopping"]),
    ("/service/hvmail-httpd: supervise not running", Status.CRITICAL,
     ["hvmail-httpd", "supervise not running"]),
    ("/service/hvmail-httpd: unable to open supervise/ok: file does not exist", Status.CRITICAL,
     ["hvmail-httpd", "unable to open supervise/ok"]),
    ("/service/hvmail-httpd: unable to chdir: file does not exist", Status.CRITICAL,
     ["unable to chdir"]),
    ("/service/hvmail-httpd: unable to read supervise/status: bad format", Status.CRITICAL,
     ["bad format"]),
    ("/service/hvmail-dnscache: up (pid 12032) 55 seconds, normally down", Status.OK,
     ["up although expected down: hvmail-dnscache"]),
    ("/service/hvmail-dnscache: supervise not running", Status.WARNING,
     ["hvmail-dnscache", "expected down", "supervise not running"]),
    ("/service/hvmail-dnscache: down 3 seconds, want up", Status.WARNING, ["wants it up"]),
    ("/service/hvmail-httpd: up (pid 13268) 0 seconds", Status.OK, ["just started: hvmail-httpd"]),
    ("\x1b[31m/service/hvmail-httpd: down 55 seconds, normally up\x1b[0m", Status.CRITICAL,
     ["hvmail-httpd"]),
]  # fmt: skip


@pytest.mark.parametrize("line,status,words", VERDICTS, ids=[f"{i}" for i in range(len(VERDICTS))])
def test_verdict_table(line, status, words):
    result = check_services(snap([line]), CFG)
    assert result.name == SERVICES
    assert result.status is status, result.summary
    for word in words:
        assert word in result.summary
    assert len(result.details["services"]) == 1
    assert result.details["services"][0]["verdict"] == status.label
    json.dumps(result.to_json())


def test_real_snapshot_names_every_problem():
    result = check_services(snap(lines_of("daemontools-svstat-snapshot-1.txt")), CFG)
    assert result.status is Status.CRITICAL
    d = result.details
    assert d["down"] == ["hvmail-down-normally-up"]
    assert d["errors"] == ["does-not-exist"]
    assert d["paused"] == ["hvmail-paused"]
    assert d["stuck_stopping"] == ["hvmail-want-down"]
    assert d["crash_looping"] == []  # one sample cannot tell a crash loop from a fresh start
    assert set(d["just_started"]) == {"hvmail-crashing", "hvmail-no-supervise"}
    assert service(result, "hvmail-with-log/log")["verdict"] == "ok"
    assert "4 of 11 services not healthy" in result.summary
    # CRITICAL problems come first in the summary
    assert result.summary.index("hvmail-down-normally-up") < result.summary.index("hvmail-paused")


def test_ansi_coloured_output_gives_the_same_verdict():
    plain = check_services(snap(lines_of("daemontools-svstat-snapshot-1.txt")), CFG)
    coloured = check_services(snap(lines_of("svstat-snapshot-1-ansi-derived.txt")), CFG)
    assert coloured.status is plain.status
    assert coloured.summary == plain.summary
    assert coloured.details["ignored_lines"] == ["GreenArrow Engine service status"]


def test_expected_down_matches_basename_and_full_path():
    line = "/service/hvmail-postgres/log: down 5 seconds, normally up"
    assert check_services(snap([line]), CFG).status is Status.CRITICAL
    for names in (("hvmail-postgres/log",), ("/service/hvmail-postgres/log",)):
        cfg = ServicesConfig(expected_down=names)
        result = check_services(snap([line]), cfg)
        assert result.status is Status.OK
        assert result.details["expected_down_seen"] == ["hvmail-postgres/log"]
    # the parent's name does not cover its log subservice
    cfg = ServicesConfig(expected_down=("hvmail-postgres",))
    assert check_services(snap([line]), cfg).status is Status.CRITICAL


def test_expected_down_is_read_from_the_config_file():
    cfg = parse_config('[services]\nexpected_down = ["hvmail-studio-worker"]\n').services
    result = check_services(snap(["/service/hvmail-studio-worker: down 4 seconds"]), cfg)
    assert result.status is Status.OK


# ---------------------------------------------------------------- crash loops, several samples


def test_real_crashloop_capture_as_consecutive_samples():
    lines = [x for x in lines_of("daemontools-svstat-crashloop.txt") if "crashing:" in x]
    result = check_services(snap(*[[x] for x in lines], step=0.7), CFG)
    assert result.status is Status.CRITICAL
    assert result.details["crash_looping"] == ["hvmail-crashing"]
    assert "crash-looping: restarted 2 times in 3.5s" in result.summary
    assert service(result, "hvmail-crashing")["pid"] == 13156


def test_crashloop_of_a_normally_down_service_is_reported_too():
    lines = [x for x in lines_of("daemontools-svstat-crashloop.txt") if "normally-down:" in x]
    result = check_services(snap([lines[0]], [lines[2]]), CFG)
    assert result.status is Status.CRITICAL
    assert "crash-looping: restarted 1 time in 1.5s" in result.summary


def test_crashloop_caught_between_restarts():
    result = check_services(
        snap(
            ["/service/hvmail-httpd: up (pid 10) 0 seconds"],
            ["/service/hvmail-httpd: down 0 seconds, normally up, want up"],
        ),
        CFG,
    )
    assert result.status is Status.CRITICAL
    assert result.details["crash_looping"] == ["hvmail-httpd"]


def test_same_pid_that_keeps_aging_just_started():
    result = check_services(
        snap(
            ["/service/hvmail-httpd: up (pid 10) 0 seconds"],
            ["/service/hvmail-httpd: up (pid 10) 1 seconds"],
            ["/service/hvmail-httpd: up (pid 10) 3 seconds"],
        ),
        CFG,
    )
    assert result.status is Status.OK
    assert (
        "just started: pid 10 kept running from 0s to 3s over 3.0s"
        in (service(result, "hvmail-httpd")["reason"])
    )
    assert result.details["samples"] == 3
    assert result.details["sampled_over"] == 3.0


def test_judged_on_the_latest_sample():
    result = check_services(
        snap(
            ["/service/hvmail-httpd: down 1 seconds, normally up"],
            ["/service/hvmail-httpd: up (pid 10) 60 seconds"],
        ),
        CFG,
    )
    assert result.status is Status.OK


# ---------------------------------------------------------------- across cycles (previous)


def test_restarted_since_last_check_is_a_warning():
    previous = snap(["/service/hvmail-httpd: up (pid 10) 600 seconds"], start=0.0)
    now = snap(
        ["/service/hvmail-httpd: up (pid 22) 1 seconds"],
        ["/service/hvmail-httpd: up (pid 22) 2 seconds"],
        start=30.0,
    )
    result = check_services(now, CFG, previous=previous)
    assert result.status is Status.WARNING
    assert result.details["restarted"] == ["hvmail-httpd"]
    assert "restarted since last check (pid 10 -> pid 22, up 2s)" in result.summary


def test_restarting_again_across_checks_is_critical():
    # The previous cycle's last sample already showed a new pid; now there is another one.
    previous = snap(
        ["/service/hvmail-httpd: up (pid 10) 2 seconds"],
        ["/service/hvmail-httpd: up (pid 12) 0 seconds"],
        start=0.0,
    )
    now = snap(
        ["/service/hvmail-httpd: up (pid 22) 1 seconds"],
        ["/service/hvmail-httpd: up (pid 22) 2 seconds"],
        start=30.0,
    )
    result = check_services(now, CFG, previous=previous)
    assert result.status is Status.CRITICAL
    assert result.details["crash_looping"] == ["hvmail-httpd"]
    assert "restarted 2 times in 31.5s across checks (pid 12 -> pid 22, up 2s)" in result.summary


def test_young_at_two_checks_after_a_single_restart_is_a_warning():
    # e.g. every service started at a failover, then one restarted by hand
    previous = snap(["/service/hvmail-httpd: up (pid 10) 2 seconds"], start=0.0)
    now = snap(["/service/hvmail-httpd: up (pid 22) 1 seconds"], start=30.0)
    result = check_services(now, CFG, previous=previous)
    assert result.status is Status.WARNING
    assert result.details["restarted"] == ["hvmail-httpd"]


def test_restart_long_enough_ago_is_ok_but_noted():
    previous = snap(["/service/hvmail-httpd: up (pid 10) 600 seconds"], start=0.0)
    now = snap(["/service/hvmail-httpd: up (pid 22) 20 seconds"], start=30.0)
    result = check_services(now, CFG, previous=previous)
    assert result.status is Status.OK
    assert "restarted since last check: hvmail-httpd" in result.summary


def test_same_pid_as_last_check_is_fine():
    previous = snap(["/service/hvmail-httpd: up (pid 10) 600 seconds"], start=0.0)
    now = snap(["/service/hvmail-httpd: up (pid 10) 630 seconds"], start=30.0)
    assert check_services(now, CFG, previous=previous).status is Status.OK


def test_previous_that_failed_is_ignored():
    previous = ServicesSnapshot(samples=(), source="svstat", error="timed out after 10s (killed)")
    now = snap(["/service/hvmail-httpd: up (pid 10) 1 seconds"])
    assert check_services(now, CFG, previous=previous).status is Status.OK


# ---------------------------------------------------------------- unknown


def test_failed_command_is_unknown_with_reason():
    failed = ServicesSnapshot(
        samples=(), source="service greenarrow status", error="command not found: service"
    )
    result = check_services(failed, CFG)
    assert result.status is Status.UNKNOWN
    assert result.summary == (
        "status command failed: command not found: service (service greenarrow status)"
    )


def test_no_svstat_line_is_unknown_quoting_the_output():
    empty = snap(["GreenArrow Engine status", "all good"])
    result = check_services(empty, CFG)
    assert result.status is Status.UNKNOWN
    assert "'GreenArrow Engine status\\nall good'" in result.summary


# ---------------------------------------------------------------- hypothesis: never raises

entries_st = st.builds(
    SvstatEntry,
    name=st.text(max_size=12),
    path=st.sampled_from(["/service/a", "/service/b", "/service/hvmail-dnscache", "x", ""]),
    state=st.sampled_from(["up", "down", "error", "weird"]),
    pid=st.none() | st.integers(-5, 10),
    seconds=st.none() | st.integers(-5, 10**12),
    normally=st.sampled_from([None, "up", "down", "?"]),
    paused=st.booleans(),
    want=st.sampled_from([None, "up", "down", "?"]),
    error=st.none() | st.text(max_size=20),
    raw=st.text(max_size=20),
)
samples_st = st.lists(
    st.builds(
        ServiceSample,
        at=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
        entries=st.lists(entries_st, max_size=4).map(tuple),
    ),
    max_size=4,
).map(tuple)
snapshots_st = st.builds(
    ServicesSnapshot,
    samples=samples_st,
    source=st.text(max_size=10),
    error=st.none() | st.text(max_size=10),
    raw=st.text(max_size=50),
    stderr=st.text(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(snapshots_st, st.none() | snapshots_st, st.floats(0, 100))
def test_check_never_raises(snapshot, previous, min_uptime):
    result = check_services(snapshot, ServicesConfig(min_uptime=min_uptime), previous=previous)
    assert result.status in Status
    assert result.summary
    json.dumps(result.to_json())


# ---------------------------------------------------------------- real daemontools

MIXED = {
    "hvmail-httpd": "up",
    "hvmail-studio-worker": "down",
    "hvmail-dnscache": "normally_down",
    "hvmail-crashing": "crashloop",
}


@pytest.fixture(scope="module")
def mixed_tree(tmp_path_factory):
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    with ServiceTree(str(tmp_path_factory.mktemp("svc")), MIXED) as tree:
        yield tree


def cfg_for(tree: ServiceTree, **kw) -> ServicesConfig:
    return ServicesConfig(command=tuple(tree.status_command()), **kw)


@pytest.mark.daemontools
def test_real_tree_is_in_the_intended_states(mixed_tree):
    status = mixed_tree.status()
    assert status["hvmail-httpd"].state == "up"
    assert (status["hvmail-studio-worker"].state, status["hvmail-studio-worker"].normally) == (
        "down",
        "up",
    )
    assert (status["hvmail-dnscache"].state, status["hvmail-dnscache"].normally) == ("down", "down")
    assert status["hvmail-crashing"].state in ("up", "down")
    assert mixed_tree.status_command() == ["svstat"] + [
        os.path.join(mixed_tree.dir, name) for name in MIXED
    ]


@pytest.mark.daemontools
def test_real_svstat_down_and_crashlooping_services_are_critical(mixed_tree):
    cfg = cfg_for(mixed_tree)
    snapshot = probe_services(cfg)
    assert len(snapshot.samples) >= 2  # the crash-looping service made it look again
    result = check_services(snapshot, cfg)
    assert result.status is Status.CRITICAL, result.summary
    assert "hvmail-studio-worker down" in result.summary
    assert "hvmail-crashing crash-looping" in result.summary
    assert result.details["down"] == ["hvmail-studio-worker"]
    assert result.details["crash_looping"] == ["hvmail-crashing"]
    assert service(result, "hvmail-dnscache")["verdict"] == "ok"
    assert result.details["expected_down_seen"] == ["hvmail-dnscache"]
    assert "hvmail-dnscache" not in result.summary
    assert service(result, "hvmail-httpd")["verdict"] == "ok"


@pytest.mark.daemontools
def test_real_svstat_healthy_and_expected_down_is_ok(service_tree):
    tree = service_tree(
        {
            "hvmail-httpd": "up",
            "hvmail-qmail-smtpd3": "normally_down",
            "hvmail-dnscache": "normally_down",
        }
    )
    cfg = cfg_for(tree)
    # The fresh service is young: the probe samples it again and sees the same pid aging.
    first = probe_services(cfg, max_extra_samples=1)
    result = check_services(first, cfg)
    assert result.status is Status.OK, result.summary
    assert result.details["expected_down_seen"] == ["hvmail-qmail-smtpd3", "hvmail-dnscache"]
    assert service(result, "hvmail-httpd")["state"] == "up"

    # Killed between two cycles: supervise restarts it, the next cycle sees a new young pid.
    old_pid = service(result, "hvmail-httpd")["pid"]
    tree.kill_service("hvmail-httpd")
    tree.wait_for("hvmail-httpd", lambda e: e.state == "up" and e.pid != old_pid)
    second = probe_services(cfg, max_extra_samples=0)
    result = check_services(second, cfg, previous=first)
    assert result.status is Status.WARNING, result.summary
    assert result.details["restarted"] == ["hvmail-httpd"]

    # Turned into a crash loop (what the demo does to an hvmail service).
    tree.make_crashloop("hvmail-httpd")
    third = probe_services(cfg, max_extra_samples=1)
    result = check_services(third, cfg, previous=second)
    assert result.status is Status.CRITICAL, result.summary
    assert result.details["crash_looping"] == ["hvmail-httpd"]

    # And back.
    entry = tree.make_healthy("hvmail-httpd")
    time.sleep(1.5)  # longer than a crash-looping process lives
    assert tree.status()["hvmail-httpd"].pid == entry.pid


@pytest.mark.daemontools
def test_stop_start_and_pause_helpers(service_tree):
    tree = service_tree({"hvmail-httpd": "up", "hvmail-paused": "paused"})
    assert tree.status()["hvmail-paused"].paused
    tree.stop("hvmail-httpd")
    entry = tree.wait_for("hvmail-httpd", lambda e: e.state == "down")
    assert entry.normally == "up"
    tree.start("hvmail-httpd")
    tree.start("hvmail-paused")
    assert tree.wait_for("hvmail-httpd", lambda e: e.state == "up").state == "up"
    assert not tree.wait_for("hvmail-paused", lambda e: not e.paused).paused


def _tree_pids(root: str) -> List[int]:
    """Processes working inside the tree (supervise and the services)."""
    root = os.path.realpath(root)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(int(name))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.daemontools
def test_close_kills_every_process_and_removes_the_tree(tmp_path):
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    tree = ServiceTree(str(tmp_path), {"a": "up", "b": "paused", "c": "crashloop"})
    with tree:
        root = tree.dir
        pids = _tree_pids(root)
        service_pids = [e.pid for e in tree.status(["a", "b"]).values()]
        assert set(service_pids) <= set(pids)
        assert len(pids) >= 5  # three supervise, two services
    assert tree.dir is None
    assert not os.path.exists(root)
    assert [p for p in pids if _alive(p)] == []


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown service kind"):
        ServiceTree(str(tmp_path), {"a": "sleeping"})


# ---------------------------------------------------------------- never OK when in doubt (#11.9)


def _status_script(tmp_path: Path, runs: Sequence[Sequence[str]], code: int = 0) -> ServicesConfig:
    """A real status command: run N prints runs[min(N, last)] and exits `code`."""
    counter = tmp_path / "count"
    outputs = [tmp_path / f"out{i}" for i in range(len(runs))]
    for path, lines in zip(outputs, runs):
        path.write_text("".join(line + "\n" for line in lines))
    script = tmp_path / "status"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{counter}" 2>/dev/null || echo 0)\n'
        f'echo $((n + 1)) > "{counter}"\n'
        f"last={len(runs) - 1}\n"
        'if [ "$n" -gt "$last" ]; then n=$last; fi\n'
        f'cat "{tmp_path}/out$n"\n'
        f"exit {code}\n"
    )
    script.chmod(0o755)
    return ServicesConfig(command=(str(script),), timeout=10.0)


HEALTHY = "/service/hvmail-httpd: up (pid 11867) 60 seconds"

DOUBTFUL = [
    # lines, exit status, text the summary must quote or say
    (["/service/hvmail-httpd: down 5 secon"], 1, "'/service/hvmail-httpd: down 5 secon'"),
    (["/service/hvmail-httpd: down 5 seconds, normally up, running"], 1, "normally up, running"),
    ([HEALTHY, "/service/hvmail-studio-worker: down 5 secon"], 0, "down 5 secon"),
    ([HEALTHY, "/service/hvmail-studio-worker: down 5 seconds, normally up, running"], 0,
     "1 unreadable line"),
    ([HEALTHY], 1, "status command exited with status 1"),
    ([HEALTHY], 3, "exited with status 3"),
    ([HEALTHY, "\x1b[31m/service/hvmail-studio-worker: dwn 5 seconds\x1b[0m"], 0, "dwn 5 seconds"),
    ([HEALTHY, "svstat: fatal: unable to open current directory: access denied"], 111,
     "svstat: fatal"),
    ([HEALTHY, "/service/hvmail-studio-worker: unable"], 0, "unable"),
    ([HEALTHY, "/service/hvmail-studio-worker up (pid 1) 60 seconds"], 0, "unreadable"),
]  # fmt: skip


@pytest.mark.parametrize("lines,code,words", DOUBTFUL, ids=[str(i) for i in range(len(DOUBTFUL))])
def test_unreadable_line_or_failing_command_is_never_ok(tmp_path, lines, code, words):
    cfg = _status_script(tmp_path, [lines], code)
    snapshot = probe_services(cfg, max_extra_samples=0)
    result = check_services(snapshot, cfg)
    assert result.status is Status.UNKNOWN, result.summary
    assert words in result.summary
    json.dumps(result.to_json())


def test_a_critical_service_stays_critical_with_the_doubt_named(tmp_path):
    lines = [HEALTHY, "/service/hvmail-studio-worker: down 55 seconds, normally up", "x: y z"]
    cfg = _status_script(tmp_path, [lines], 1)
    result = check_services(probe_services(cfg, max_extra_samples=0), cfg)
    assert result.status is Status.CRITICAL
    assert "1 of 2 services not healthy: hvmail-studio-worker down 55s" in result.summary
    assert "status command exited with status 1" in result.summary
    assert "'x: y z'" in result.summary
    assert result.details["unreadable_lines"] == ["x: y z"]
    assert result.details["returncode"] == 1


def test_a_header_without_service_words_is_still_ignored(tmp_path):
    cfg = _status_script(tmp_path, [["GreenArrow Engine service status", "", HEALTHY]])
    result = check_services(probe_services(cfg, max_extra_samples=0), cfg)
    assert result.status is Status.OK, result.summary
    assert result.details["ignored_lines"] == ["GreenArrow Engine service status"]
    assert result.details["unreadable_lines"] == []


def test_one_service_listed_twice_with_two_states_is_unknown(tmp_path):
    lines = ["/service/hvmail-httpd: down 5 seconds, normally up", HEALTHY]
    cfg = _status_script(tmp_path, [lines])
    result = check_services(probe_services(cfg, max_extra_samples=0), cfg)
    assert result.status is not Status.OK
    assert "listed twice with different states: hvmail-httpd" in result.summary


def test_quoted_lines_are_bounded_and_escaped(tmp_path):
    long_line = "/service/hvmail-httpd: \x07down " + "9" * 5000
    cfg = _status_script(tmp_path, [[HEALTHY, long_line]])
    result = check_services(probe_services(cfg, max_extra_samples=0), cfg)
    assert result.status is Status.UNKNOWN
    assert len(result.summary) < 600
    assert "\x07" not in result.summary
    assert len(result.details["unreadable_lines"][0]) <= 300


def test_a_resample_that_prints_garbage_is_not_ok(tmp_path):
    young = "/service/hvmail-httpd: up (pid 10) 0 seconds"
    cfg = _status_script(tmp_path, [[young], ["/service/hvmail-httpd: u? (pid 10) 2 seconds"]])
    snapshot = probe_services(cfg, max_extra_samples=1, resample_delay=0.1)
    assert len(snapshot.samples) == 2
    result = check_services(snapshot, cfg)
    assert result.status is Status.UNKNOWN, result.summary
    assert "u? (pid 10) 2 seconds" in result.summary
