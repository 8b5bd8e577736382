"""svstat parsing and the services probe (watchdog.probes.daemontools).

Parsing runs over real svstat captures, colour-coded variants derived from them, and one
line per message svstat can print (provenance in tests/fixtures/SOURCES.md). The probe
runs real commands: small shell scripts that print recorded outputs one call after another.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.checks.services import check_services
from watchdog.config import ServicesConfig
from watchdog.model import Status
from watchdog.probes.daemontools import (
    ServiceSample,
    ServicesSnapshot,
    is_unreadable,
    parse_svstat,
    parse_svstat_line,
    probe_services,
    service_name,
    strip_ansi,
)

HERE = Path(__file__).resolve().parent / "fixtures" / "daemontools"


def read(name: str) -> str:
    return (HERE / name).read_text()


# ---------------------------------------------------------------- parsing: every variant

# name, path, state, pid, seconds, normally, paused, want, error
VARIANTS = [
    ("hvmail-a", "/service/hvmail-a", "up", 11867, 60, "up", False, None, None),
    ("hvmail-b", "/service/hvmail-b", "up", 12032, 55, "down", False, None, None),
    ("hvmail-c", "/service/hvmail-c", "up", 11863, 60, "up", True, None, None),
    ("hvmail-d", "/service/hvmail-d", "up", 11868, 60, "up", False, "down", None),
    ("hvmail-e", "/service/hvmail-e", "down", None, 55, "up", False, None, None),
    ("hvmail-f", "/service/hvmail-f", "down", None, 4, "down", False, None, None),
    ("hvmail-g", "/service/hvmail-g", "down", None, 3, "down", False, "up", None),
    ("hvmail-h", "/service/hvmail-h", "error", None, None, None, False, None,
     "supervise not running"),
    ("hvmail-i", "/service/hvmail-i", "error", None, None, None, False, None,
     "unable to open supervise/ok: file does not exist"),
    ("hvmail-j", "/service/hvmail-j", "error", None, None, None, False, None,
     "unable to chdir: file does not exist"),
    ("hvmail-k", "/service/hvmail-k", "error", None, None, None, False, None,
     "unable to stat down: access denied"),
    ("hvmail-l", "/service/hvmail-l", "error", None, None, None, False, None,
     "unable to open supervise/status: access denied"),
    ("hvmail-m", "/service/hvmail-m", "error", None, None, None, False, None,
     "unable to read supervise/status: input/output error"),
    ("hvmail-n", "/service/hvmail-n", "error", None, None, None, False, None,
     "unable to read supervise/status: bad format"),
    ("hvmail-q", "/service/hvmail-q", "up", 1, 1, "down", True, "down", None),
    ("hvmail-r", "/service/hvmail-r", "down", None, 0, "up", False, "up", None),
    ("hvmail-s/log", "/service/hvmail-s/log", "up", 11866, 60, "up", False, None, None),
    ("hvmail-t", "hvmail-t", "down", None, 0, "up", False, None, None),
    ("hvmail-u", "/service/hvmail-u/", "up", 42, 0, "up", False, None, None),
]  # fmt: skip


def _fields(entry) -> tuple:
    return (
        entry.name,
        entry.path,
        entry.state,
        entry.pid,
        entry.seconds,
        entry.normally,
        entry.paused,
        entry.want,
        entry.error,
    )


def test_every_documented_message_variant():
    text = read("svstat-message-variants-composed.txt")
    entries, ignored = parse_svstat(text)
    assert [_fields(e) for e in entries] == VARIANTS
    # svstat's fatal errors (stderr, exit 111) are not service lines, even if merged in.
    assert ignored == [
        "svstat: fatal: unable to set directory: access denied",
        "svstat: fatal: unable to open current directory: access denied",
    ]
    # raw is the line itself
    assert all(e.raw in text.splitlines() for e in entries)


VARIANT_LINES = [
    x
    for x in (HERE / "svstat-message-variants-composed.txt").read_text().splitlines()
    if not x.startswith("svstat: ")
]


@pytest.mark.parametrize(
    "line,row", list(zip(VARIANT_LINES, VARIANTS)), ids=[r[0] for r in VARIANTS]
)
def test_each_variant_line_alone(line, row):
    entry = parse_svstat_line(line)
    assert entry is not None
    assert _fields(entry) == row
    assert entry.raw == line


SNAPSHOT_1 = [
    ("hvmail-up", "up", 11867, 60, "up", False, None, None),
    ("hvmail-down-normally-up", "down", None, 55, "up", False, None, None),
    ("hvmail-normally-down", "up", 13047, 17, "down", False, None, None),
    ("hvmail-up-normally-down", "up", 12032, 55, "down", False, None, None),
    ("hvmail-paused", "up", 11863, 60, "up", True, None, None),
    ("hvmail-want-down", "up", 11868, 60, "up", False, "down", None),
    ("hvmail-crashing", "up", 13268, 0, "up", False, None, None),
    ("hvmail-with-log", "up", 11865, 60, "up", False, None, None),
    ("hvmail-with-log/log", "up", 11866, 60, "up", False, None, None),
    ("hvmail-no-supervise", "up", 13266, 1, "up", False, None, None),
    ("does-not-exist", "error", None, None, None, False, None,
     "unable to chdir: file does not exist"),
]  # fmt: skip


def test_real_snapshot():
    entries, ignored = parse_svstat(read("daemontools-svstat-snapshot-1.txt"))
    assert [(e.name, *_fields(e)[2:]) for e in entries] == SNAPSHOT_1
    assert ignored == []
    assert entries[8].path == "/service/hvmail-with-log/log"


def test_real_crashloop_capture():
    entries, ignored = parse_svstat(read("daemontools-svstat-crashloop.txt"))
    assert ignored == []
    assert len(entries) == 10
    assert all(e.state == "up" and e.seconds in (0, 1) for e in entries)
    crashing = [e.pid for e in entries if e.name == "hvmail-crashing"]
    assert crashing == [13115, 13115, 13142, 13142, 13156, 13156]
    assert {e.normally for e in entries if e.name == "hvmail-crashing-normally-down"} == {"down"}


def test_real_svc_o_once():
    (entry,), _ = parse_svstat(read("daemontools-svstat-svc-o-once.txt"))
    assert _fields(entry) == (
        "hvmail-normally-down", "/service/hvmail-normally-down", "up", 13047, 0, "down",
        False, None, None,
    )  # fmt: skip


def test_ansi_coloured_output_parses_like_the_plain_one():
    plain, _ = parse_svstat(read("daemontools-svstat-snapshot-1.txt"))
    coloured, ignored = parse_svstat(read("svstat-snapshot-1-ansi-derived.txt"))
    assert coloured == plain  # raw too: the codes are stripped
    assert ignored == ["GreenArrow Engine service status"]  # blank lines are not listed


@pytest.mark.parametrize(
    "text,clean",
    [
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[1;31mbold\x1b(B\x1b[m", "bold"),
        ("a\x1b[Kb\x1b[2Jc", "abc"),
        ("\x1b]0;title\x07text", "text"),
        ("no codes: up (pid 1) 2 seconds", "no codes: up (pid 1) 2 seconds"),
    ],
)
def test_strip_ansi(text, clean):
    assert strip_ansi(text) == clean


@pytest.mark.parametrize(
    "path,name",
    [
        ("/service/hvmail-httpd", "hvmail-httpd"),
        ("/service/hvmail-httpd/", "hvmail-httpd"),
        ("/service/hvmail-postgres/log", "hvmail-postgres/log"),
        ("/service/hvmail-postgres/log/", "hvmail-postgres/log"),
        ("hvmail-httpd", "hvmail-httpd"),
        ("./x", "x"),
        ("log", "log"),
        ("/", "/"),
    ],
)
def test_service_name(path, name):
    assert service_name(path) == name


@pytest.mark.parametrize(
    "line",
    [
        "",
        "GreenArrow Engine status:",
        "/service/x: up (pid 1) 2 seconds, normally sideways",  # unknown suffix
        "/service/x: up (pid x) 2 seconds",
        "/service/x: up 2 seconds",
        "/service/x: down seconds",
        "/service/x: running",
        ": up (pid 1) 2 seconds",  # no path
        "svstat: fatal: unable to open current directory: access denied",
        "svstat: warning: unable to chdir: file does not exist",
    ],
)
def test_lines_that_are_not_svstat_lines(line):
    assert parse_svstat_line(line) is None


def test_whitespace_and_crlf_around_lines():
    entries, _ = parse_svstat(
        "  /service/a: up (pid 5) 9 seconds  \r\n\r\n/service/b: down 1 seconds\r\n"
    )
    assert [(e.name, e.state, e.seconds) for e in entries] == [("a", "up", 9), ("b", "down", 1)]


# ---------------------------------------------------------------- hypothesis: never raises

FIXTURE_LINES = (
    read("daemontools-svstat-snapshot-1.txt")
    + read("daemontools-svstat-crashloop.txt")
    + read("svstat-message-variants-composed.txt")
    + read("svstat-snapshot-1-ansi-derived.txt")
).splitlines()


@st.composite
def mutated_lines(draw) -> str:
    lines = draw(st.lists(st.sampled_from(FIXTURE_LINES), min_size=0, max_size=8))
    out = []
    for line in lines:
        chars = list(line)
        for _ in range(draw(st.integers(0, 4))):
            op = draw(st.sampled_from(["insert", "delete", "replace"]))
            pos = draw(st.integers(0, len(chars)))
            ch = draw(st.sampled_from(list(": ()0123456789,\x1b[m\t\n") + [draw(st.characters())]))
            if op == "insert":
                chars.insert(pos, ch)
            elif chars and pos < len(chars):
                if op == "delete":
                    del chars[pos]
                else:
                    chars[pos] = ch
        out.append("".join(chars))
    return "\n".join(out)


def _check_entries(text: str) -> None:
    entries, ignored = parse_svstat(text)
    for entry in entries:
        assert entry.state in ("up", "down", "error")
        assert "\x1b" not in entry.raw
        assert (entry.pid is not None) == (entry.state == "up")
        assert (entry.error is not None) == (entry.state == "error")
        assert entry.name
    assert len(entries) + len(ignored) <= len(text.splitlines())


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    _check_entries(text)


@settings(max_examples=300, deadline=None)
@given(mutated_lines())
def test_mutated_svstat_lines_never_raise(text):
    _check_entries(text)
    entries, ignored = parse_svstat(text)
    sample = ServiceSample(at=1.0, entries=tuple(entries), ignored=tuple(ignored))
    snapshot = ServicesSnapshot(samples=(sample,), source="svstat", raw=text)
    result = check_services(snapshot, ServicesConfig())
    json.dumps(result.details)
    if not entries:
        assert result.status is Status.UNKNOWN
    else:
        assert len(result.details["services"]) == len({e.path for e in entries})


# ---------------------------------------------------------------- the probe, real commands


def sequence_command(tmp_path: Path, outputs: List[str], hang_after: int = -1) -> List[str]:
    """A real command printing outputs[0] on its first run, outputs[1] on the next, ...

    The last output repeats. With hang_after=N the run after the N-th hangs.
    """
    for index, text in enumerate(outputs):
        (tmp_path / f"out{index}").write_text(text)
    (tmp_path / "n").write_text("0")
    script = (
        'd="$1"; n=$(cat "$d/n"); echo $((n + 1)) > "$d/n"; '
        f'if [ "$n" -eq {hang_after} ]; then exec sleep 30; fi; '
        f'[ -e "$d/out$n" ] || n={len(outputs) - 1}; cat "$d/out$n"'
    )
    return ["sh", "-c", script, "sh", str(tmp_path)]


def cfg_for(argv: List[str], **kw) -> ServicesConfig:
    return ServicesConfig(command=tuple(argv), **kw)


class Sleeps:
    """Records the probe's sleeps instead of sleeping (the commands themselves are real)."""

    def __init__(self) -> None:
        self.calls: List[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def test_healthy_output_is_one_sample(tmp_path):
    text = "".join(read("daemontools-svstat-snapshot-1.txt").splitlines(keepends=True)[:3])
    sleeps = Sleeps()
    snap = probe_services(cfg_for(sequence_command(tmp_path, [text])), sleep=sleeps)
    assert snap.error is None
    assert len(snap.samples) == 1
    assert sleeps.calls == []
    assert [e.name for e in snap.samples[0].entries] == [
        "hvmail-up", "hvmail-down-normally-up", "hvmail-normally-down",
    ]  # fmt: skip
    assert snap.raw == text
    assert snap.source.startswith("sh -c")


def test_young_service_is_sampled_again_at_most_twice(tmp_path):
    lines = read("daemontools-svstat-crashloop.txt").splitlines(keepends=True)
    crashing = [x for x in lines if x.startswith("/service/hvmail-crashing:")]
    outputs = [crashing[0], crashing[2], crashing[4], crashing[5]]
    sleeps = Sleeps()
    snap = probe_services(cfg_for(sequence_command(tmp_path, outputs)), sleep=sleeps)
    assert sleeps.calls == [1.5, 1.5]
    assert [s.entries[0].pid for s in snap.samples] == [13115, 13142, 13156]
    times = [s.at for s in snap.samples]
    assert times == sorted(times)
    result = check_services(snap, cfg_for(["x"]))
    assert result.status is Status.CRITICAL
    assert "crash-looping" in result.summary and "hvmail-crashing" in result.summary


def test_resampling_stops_once_nothing_is_young(tmp_path):
    outputs = ["/service/a: up (pid 7) 2 seconds\n", "/service/a: up (pid 7) 4 seconds\n"]
    sleeps = Sleeps()
    snap = probe_services(cfg_for(sequence_command(tmp_path, outputs)), sleep=sleeps)
    assert len(sleeps.calls) == 1
    assert [s.entries[0].seconds for s in snap.samples] == [2, 4]


def test_down_want_up_is_sampled_again(tmp_path):
    outputs = [
        "/service/a: down 0 seconds, normally up, want up\n",
        "/service/a: up (pid 9) 30 seconds\n",
    ]
    sleeps = Sleeps()
    snap = probe_services(cfg_for(sequence_command(tmp_path, outputs)), sleep=sleeps)
    assert len(snap.samples) == 2


def test_resampling_stays_within_the_timeout(tmp_path):
    outputs = ["/service/a: up (pid 7) 0 seconds\n"]
    sleeps = Sleeps()
    snap = probe_services(cfg_for(sequence_command(tmp_path, outputs), timeout=1.0), sleep=sleeps)
    assert sleeps.calls == []  # 1.5 s of sleep would overrun the 1 s budget
    assert len(snap.samples) == 1


def test_a_resample_that_hangs_is_cut_off_and_the_first_sample_stands(tmp_path):
    outputs = ["/service/a: up (pid 7) 0 seconds\n"]
    argv = sequence_command(tmp_path, outputs, hang_after=1)
    snap = probe_services(cfg_for(argv, timeout=1.5), resample_delay=0.1)
    assert snap.error is None
    assert len(snap.samples) == 1
    assert snap.samples[0].entries[0].pid == 7


def test_a_hanging_status_command_is_cut_off_at_timeout():
    cfg = cfg_for(["sleep", "30"], timeout=0.5)
    snap = probe_services(cfg)
    assert snap.samples == ()
    assert "timed out after 0.5s" in snap.error
    result = check_services(snap, cfg)
    assert result.status is Status.UNKNOWN
    assert "timed out" in result.summary and "sleep 30" in result.summary


def test_missing_status_command_is_unknown():
    cfg = cfg_for(["no-such-status-command-here"])
    result = check_services(probe_services(cfg), cfg)
    assert result.status is Status.UNKNOWN
    assert "command not found: no-such-status-command-here" in result.summary


def test_output_without_svstat_line_is_unknown_quoting_it():
    cfg = cfg_for(["sh", "-c", "echo 'Usage: service greenarrow {start|stop}'; exit 3"])
    snap = probe_services(cfg)
    assert snap.error is None and snap.returncode == 3
    result = check_services(snap, cfg)
    assert result.status is Status.UNKNOWN
    assert "no svstat line" in result.summary
    assert "Usage: service greenarrow {start|stop}" in result.summary


def test_stderr_is_quoted_when_nothing_is_printed():
    cfg = cfg_for(["sh", "-c", "echo 'greenarrow: unrecognized service' >&2; exit 1"])
    result = check_services(probe_services(cfg), cfg)
    assert result.status is Status.UNKNOWN
    assert "(no output)" in result.summary
    assert "greenarrow: unrecognized service" in result.summary


def test_exit_code_is_not_trusted(tmp_path):
    # A zero exit proves nothing (svstat exits 0 on errors); a non-zero one is never OK,
    # even when every line it printed reads healthy: the output may be partial (#11.9).
    text = read("daemontools-svstat-snapshot-1.txt").splitlines(keepends=True)[0]
    (tmp_path / "out").write_text(text)
    cfg = cfg_for(["sh", "-c", f"cat {tmp_path / 'out'}; exit 3"])
    snap = probe_services(cfg)
    assert snap.returncode == 3
    result = check_services(snap, cfg)
    assert result.status is Status.UNKNOWN
    assert "status command exited with status 3" in result.summary
    cfg = cfg_for(["sh", "-c", "echo '/service/x: supervise not running'; exit 0"])
    assert check_services(probe_services(cfg), cfg).status is Status.CRITICAL


UNPARSED = [
    # line, unreadable (True) or a header to ignore (False)
    ("GreenArrow Engine service status", False),
    ("GreenArrow Engine service status\r", False),
    ("\x1b[1mGreenArrow Engine\x1b[0m", False),
    ("==========", False),
    ("/service/hvmail-httpd: down 5 secon", True),
    ("/service/hvmail-httpd: down 5 seconds, normally up, running", True),
    ("hvmail-httpd down", True),
    ("svstat: fatal: unable to open current directory: access denied", True),
    ("\x1b[", True),  # what is left of a coloured line cut short
    ("\x1b[31m(\x1b[0m", True),
    ("hvmail\x07httpd", True),
]


@pytest.mark.parametrize("line,unreadable", UNPARSED)
def test_unparsed_lines_are_headers_only_when_they_cannot_be_service_lines(line, unreadable):
    assert parse_svstat_line(line) is None
    assert is_unreadable(line) is unreadable
