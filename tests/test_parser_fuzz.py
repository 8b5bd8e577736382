"""Fuzz: mutated real svstat and DRBD samples never turn a failing state into OK.

The bases are the recorded samples in tests/fixtures (daemontools, drbd) whose own verdict
is not OK. Each mutation is one that cannot legitimately heal the state: a few characters
deleted, inserted or replaced, a line cut short, a key repeated with a healthy value, a
colour code, a non-zero exit. Whatever the parser makes of the result, the check must not
say OK. (A mutation that happens to produce a well-formed healthy svstat line, e.g.
`..., paused` cut to `... 60 seconds`, is recognised by an independent pattern and
skipped.) The outputs go through the probes, as a status command's stdout would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from watchdog.checks.drbd import check_drbd
from watchdog.checks.services import check_services
from watchdog.config import DrbdConfig, ServicesConfig
from watchdog.model import Status
from watchdog.probes.command import CommandResult
from watchdog.probes.daemontools import probe_services, strip_ansi
from watchdog.probes.drbd import probe_drbd

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CFG = ServicesConfig(command=("status",), timeout=10.0)


def _runner(stdout: str, code: int = 0):
    """The status command's answer (the probes take the runner as a parameter)."""

    def run(argv, timeout):
        return CommandResult(tuple(argv), code, stdout, "", 0.01)

    return run


def services_verdict(lines: List[str], code: int = 0) -> Status:
    snapshot = probe_services(CFG, run=_runner("\n".join(lines) + "\n", code), max_extra_samples=0)
    return check_services(snapshot, CFG).status


def drbd_verdict(text: str) -> Status:
    snapshot = probe_drbd(DrbdConfig(format="auto", command=("drbd",)), run=_runner(text))
    return check_drbd(snapshot).status


# ---------------------------------------------------------------- the bases

SVSTAT_FILES = [
    "daemontools-svstat-snapshot-1.txt",
    "svstat-message-variants-composed.txt",
    "svstat-snapshot-1-ansi-derived.txt",
]
SVSTAT_LINES = [
    line
    for name in SVSTAT_FILES
    for line in (FIXTURES / "daemontools" / name).read_text().splitlines()
    if "/service/" in line and not line.startswith("svstat:")
]
HEALTHY_LINES = [line for line in SVSTAT_LINES if services_verdict([line]) is Status.OK]
FAILING_LINES = [line for line in SVSTAT_LINES if services_verdict([line]) is not Status.OK]

DRBD_FILES = sorted(p.name for p in (FIXTURES / "drbd").iterdir())
DRBD_TEXT = {name: (FIXTURES / "drbd" / name).read_text() for name in DRBD_FILES}
FAILING_DRBD = [name for name in DRBD_FILES if drbd_verdict(DRBD_TEXT[name]) is not Status.OK]
HEALTHY_DRBD = [name for name in DRBD_FILES if drbd_verdict(DRBD_TEXT[name]) is Status.OK]

# A well-formed healthy svstat line, written independently of the parser.
_HEALTHY_SVSTAT = re.compile(
    r"^/service/[A-Za-z0-9_/.-]+: up \(pid [0-9]{1,10}\) [0-9]{1,12} seconds"
    r"(?:, normally (?:up|down))?$"
)


def test_the_bases_cover_both_verdicts():
    assert len(FAILING_LINES) >= 15 and len(HEALTHY_LINES) >= 5
    assert len(FAILING_DRBD) >= 20 and len(HEALTHY_DRBD) >= 5


# ---------------------------------------------------------------- mutations

_CHARS = st.sampled_from(list(" :/,()-.0123456789abdenopsuwAUXZ\t\x1b") + ["\u0660", "\uff11"])


@st.composite
def mutated(draw, text: str) -> str:
    """`text` with one to three character edits, or cut short."""
    if draw(st.integers(0, 5)) == 0 and len(text) > 2:
        return text[: draw(st.integers(2, len(text) - 1))]
    for _ in range(draw(st.integers(1, 3))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        edit = draw(st.sampled_from(["delete", "insert", "replace"]))
        if edit == "delete":
            text = text[:at] + text[at + 1 :]
        elif edit == "insert":
            text = text[:at] + draw(_CHARS) + text[at:]
        else:
            text = text[:at] + draw(_CHARS) + text[at + 1 :]
    return text


# ---------------------------------------------------------------- services


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_services_mutated_failing_line_is_never_ok(data):
    failing = data.draw(st.sampled_from(FAILING_LINES))
    bad = data.draw(mutated(failing))
    clean = strip_ansi(bad).strip()
    assume(clean)  # an emptied line is a deleted line: nothing left to read
    assume(not _HEALTHY_SVSTAT.match(clean))
    others = data.draw(st.lists(st.sampled_from(HEALTHY_LINES), max_size=4))
    lines = others + [bad] + data.draw(st.lists(st.sampled_from(HEALTHY_LINES), max_size=2))
    if data.draw(st.booleans()):
        lines = [f"\x1b[31m{line}\x1b[0m" if line is bad else line for line in lines]
    code = data.draw(st.sampled_from([0, 0, 0, 1, 3, 111]))
    assert services_verdict(lines, code) is not Status.OK, (failing, bad, code)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.sampled_from(HEALTHY_LINES), min_size=1, max_size=5),
    code=st.integers(1, 255),
)
def test_services_healthy_lines_with_a_failing_exit_are_never_ok(lines, code):
    assert services_verdict(lines, code) is not Status.OK


@pytest.mark.parametrize("failing", FAILING_LINES)
def test_services_every_single_character_deletion_is_never_ok(failing):
    for at in range(len(failing)):
        bad = failing[:at] + failing[at + 1 :]
        if _HEALTHY_SVSTAT.match(strip_ansi(bad).strip()):
            continue
        lines = [HEALTHY_LINES[0], bad]
        assert services_verdict(lines) is not Status.OK, bad


# ---------------------------------------------------------------- DRBD


def _lines_with_text(name: str) -> List[int]:
    return [i for i, line in enumerate(DRBD_TEXT[name].split("\n")) if line.strip()]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_drbd_mutated_failing_sample_is_never_ok(data):
    name = data.draw(st.sampled_from(FAILING_DRBD))
    lines = DRBD_TEXT[name].split("\n")
    index = data.draw(st.sampled_from(_lines_with_text(name)))
    lines[index] = data.draw(mutated(lines[index]))
    text = "\n".join(lines)
    assert drbd_verdict(text) is not Status.OK, (name, lines[index])


# Healthy values a forger (or a garbled tool) could add after the real one.
_HEALTHY_REPEATS = {
    "disk": "UpToDate",
    "peer-disk": "UpToDate",
    "role": "Primary",
    "replication": "Established",
    "connection": "Connected",
}
_KEY_RE = re.compile(r"\b(disk|peer-disk|role|replication|connection):(\S+)")


def _repeat_key_mutations(text: str) -> List[Tuple[str, str]]:
    """(description, text) for every `key:value` given again with a healthy value."""
    out = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        for m in _KEY_RE.finditer(line):
            key = m.group(1)
            again = lines[:i] + [line + f" {key}:{_HEALTHY_REPEATS[key]}"] + lines[i + 1 :]
            out.append((f"line {i + 1} {key}", "\n".join(again)))
            before = lines[:i] + [line.replace(m.group(0), f"{key}:{_HEALTHY_REPEATS[key]} "
                                               f"{m.group(0)}", 1)] + lines[i + 1 :]
            out.append((f"line {i + 1} {key} first", "\n".join(before)))
    return out


@pytest.mark.parametrize("name", [n for n in FAILING_DRBD if _KEY_RE.search(DRBD_TEXT[n])])
def test_drbd_a_repeated_key_never_heals_a_failing_sample(name):
    mutations = _repeat_key_mutations(DRBD_TEXT[name])
    assert mutations
    for what, text in mutations:
        assert drbd_verdict(text) is not Status.OK, what


@pytest.mark.parametrize("name", HEALTHY_DRBD)
def test_drbd_an_unknown_or_missing_peer_role_is_never_ok(name):
    text = DRBD_TEXT[name]
    mutations = [
        re.sub(r"ro:(\w+)/(Primary|Secondary)", r"ro:\1/Unknown", text),
        re.sub(r"(\s)(Primary|Secondary)/(Primary|Secondary)(\s)", r"\1\2/Unknown\4", text),
        re.sub(r"( {2}\S+) role:(Primary|Secondary)", r"\1 role:Unknown", text),
        re.sub(r"( {2}\S+) role:(Primary|Secondary)", r"\1", text),
        re.sub(r'"peer-role": "(Primary|Secondary)"', '"peer-role": "Unknown"', text),
        re.sub(r'\s*"peer-role": "(Primary|Secondary)",', "", text),
    ]
    changed = [m for m in mutations if m != text]
    assert changed, name
    for text in changed:
        assert drbd_verdict(text) is not Status.OK, text


@pytest.mark.parametrize("name", FAILING_DRBD)
def test_drbd_every_single_character_deletion_is_never_ok(name):
    lines = DRBD_TEXT[name].split("\n")
    for index in _lines_with_text(name):
        line = lines[index]
        for at in range(len(line)):
            edited = lines[:index] + [line[:at] + line[at + 1 :]] + lines[index + 1 :]
            assert drbd_verdict("\n".join(edited)) is not Status.OK, (index, at)
