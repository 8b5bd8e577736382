"""daemontools probe: run the status command, parse its `svstat` lines, resample young services.

GreenArrow's services run under daemontools (`/service/hvmail-*`), and its documented health
check (`service greenarrow status`) is, as far as known, a list of svstat lines, abnormal ones
in red. svstat prints every line, errors included, to stdout and exits 0 even on errors, so
a zero exit proves nothing: health comes from the text. A non-zero exit (svstat's fatal
errors exit 111, an init script's `status` exits 3) still means the text may be partial, and
a line that looks like a service line but does not parse may hide a failing service: the
probe keeps both (`returncode`, `ignored`) and the check never calls such a run OK.

A crash-looping service is never seen `down`: supervise restarts it within about 1.4 s and
svstat reports `up (pid N) 0 seconds` with a new pid each time. One sample cannot tell that
from a service that just started, so when any service is young the probe samples again
(bounded, within the command timeout) and hands every sample to the pure check.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from watchdog.config import ServicesConfig
from watchdog.probes.command import CommandResult, run_command

# Longer than supervise's restart period (a run script that exits at once is restarted
# after supervise's 1 s pause, about every 1.1-1.4 s), so a crash-looping service always
# shows a different pid in the next sample.
RESAMPLE_DELAY = 1.5
MAX_EXTRA_SAMPLES = 2

# CSI sequences (`ESC [ 31 m`, `ESC [ 0 m`, cursor moves), charset selections (`ESC ( B`,
# part of `tput sgr0`), OSC strings, and any other two-character escape.
_ANSI_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[()*+][0-9A-Za-z]"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# Whatever control characters are left (a lone ESC, a carriage return mid-line, ...).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")

_UP_DOWN_RE = re.compile(
    r"^(?P<path>.+?): "
    r"(?:up \(pid (?P<pid>[0-9]{1,10})\) |(?P<down>down) )(?P<seconds>[0-9]{1,12}) seconds"
    r"(?P<suffix>(?:, [a-z ]+)*)$"
)
# Per-directory errors go to stdout as `<dir>: <message>` (svstat exits 0); fatal errors go
# to stderr as `svstat: fatal: unable to ...` and are not service lines.
_ERROR_RE = re.compile(r"^(?P<path>.+?): (?P<error>supervise not running|unable to .+)$")
_FATAL_RE = re.compile(r"^[^:]*: (?:fatal|warning): ")
_SUFFIXES = {"normally up", "normally down", "paused", "want up", "want down"}


@dataclass(frozen=True)
class SvstatEntry:
    """One svstat line. `state` is "up", "down" or "error" (svstat could not tell)."""

    name: str  # basename of the path; `x/log` for a log subservice
    path: str  # as svstat printed it (the argument as given)
    state: str
    pid: Optional[int]
    seconds: Optional[int]  # seconds since the process started (up) or stopped (down)
    normally: Optional[str]  # "up" or "down": whether the dir lacks or has a `down` file
    paused: bool
    want: Optional[str]  # "up" or "down" when supervise is still acting on a request
    error: Optional[str]  # svstat's message for state "error"
    raw: str  # the line, ANSI codes stripped


@dataclass(frozen=True)
class ServiceSample:
    """One run of the status command, at a monotonic time."""

    at: float
    entries: tuple  # of SvstatEntry
    ignored: tuple = ()  # non-blank lines that were not svstat lines (see is_unreadable)
    returncode: Optional[int] = None  # of this run; None when not recorded


@dataclass(frozen=True)
class ServicesSnapshot:
    """Every sample of one probe; `error` says why the command gave no usable output."""

    samples: tuple  # of ServiceSample, oldest first
    source: str  # the command, for messages
    error: Optional[str] = None
    raw: str = ""  # stdout of the first run (quoted when it holds no svstat line)
    returncode: Optional[int] = None  # of the first run; informative only
    stderr: str = ""  # of the first run

    @property
    def latest(self) -> Optional[ServiceSample]:
        return self.samples[-1] if self.samples else None


def strip_ansi(text: str) -> str:
    """Remove terminal colour and control sequences (GreenArrow shows abnormal lines in red)."""
    return _CONTROL_RE.sub("", _ANSI_RE.sub("", text))


def service_name(path: str) -> str:
    """`/service/hvmail-httpd` -> `hvmail-httpd`; `/service/x/log` -> `x/log`."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        return path
    if parts[-1] == "log" and len(parts) >= 2:
        return f"{parts[-2]}/log"
    return parts[-1]


def parse_svstat_line(line: str) -> Optional[SvstatEntry]:
    """One svstat line as an entry, or None when the line is not an svstat line."""
    clean = strip_ansi(line).strip()
    match = _UP_DOWN_RE.match(clean)
    if match:
        suffixes = [s for s in match.group("suffix").split(", ") if s]
        if any(s not in _SUFFIXES for s in suffixes):
            return None
        normally = want = None
        for suffix in suffixes:
            if suffix.startswith("normally "):
                normally = suffix[len("normally ") :]
            elif suffix.startswith("want "):
                want = suffix[len("want ") :]
        up = match.group("down") is None
        # svstat prints only the suffix that differs from the current state.
        if normally is None:
            normally = "up" if up else "down"
        path = match.group("path")
        return SvstatEntry(
            name=service_name(path),
            path=path,
            state="up" if up else "down",
            pid=int(match.group("pid")) if up else None,
            seconds=int(match.group("seconds")),
            normally=normally,
            paused="paused" in suffixes,
            want=want,
            error=None,
            raw=clean,
        )
    match = _ERROR_RE.match(clean)
    if match and not _FATAL_RE.match(clean):
        path = match.group("path")
        return SvstatEntry(
            name=service_name(path),
            path=path,
            state="error",
            pid=None,
            seconds=None,
            normally=None,
            paused=False,
            want=None,
            error=match.group("error"),
            raw=clean,
        )
    return None


def parse_svstat(text: str) -> Tuple[List[SvstatEntry], List[str]]:
    """Entries for the svstat lines of `text`, and the other (ignored) lines."""
    entries: List[SvstatEntry] = []
    ignored: List[str] = []
    for line in text.splitlines():
        entry = parse_svstat_line(line)
        if entry is not None:
            entries.append(entry)
        elif line.strip():
            ignored.append(line)
    return entries, ignored


# Words of svstat's messages: an unparsed line holding one of them (or a path, or a colon)
# was meant as a service line and is unreadable, not a header.
_SERVICE_WORDS_RE = re.compile(
    r"(?i)\b(?:up|down|pid|seconds?|normally|paused|want|supervise|unable|running|"
    r"fatal|warning|error|failed|stopped|dead)\b"
)


def is_unreadable(line: str) -> bool:
    """Is this unparsed line a mangled service line (rather than a header or a note)?

    A header ("GreenArrow Engine service status") is text with no path, no colon and none
    of svstat's words; anything else that did not parse (a line with stray control
    characters, colour codes around a fragment) may be a failing service that the parser
    could not read, so it must not be dropped silently.
    """
    raw = line.rstrip("\r\n")
    clean = strip_ansi(raw).strip()
    if _CONTROL_RE.search(_ANSI_RE.sub("", raw).replace("\t", " ")):
        return True  # a stray control character: garbled output
    if not clean:
        return False
    if _ANSI_RE.search(raw) and not any(ch.isalnum() for ch in clean):
        return True  # colour codes around a fragment: what is left of a coloured line
    return "/" in clean or ":" in clean or bool(_SERVICE_WORDS_RE.search(clean))


def _needs_resample(sample: ServiceSample, min_uptime: float) -> bool:
    """A young `up` service, or one supervise is restarting, needs another look."""
    for entry in sample.entries:
        if entry.state == "up" and entry.seconds is not None and entry.seconds < min_uptime:
            return True
        if entry.state == "down" and entry.want == "up":
            return True
    return False


def probe_services(
    cfg: ServicesConfig,
    run: Callable[..., CommandResult] = run_command,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    resample_delay: float = RESAMPLE_DELAY,
    max_extra_samples: int = MAX_EXTRA_SAMPLES,
) -> ServicesSnapshot:
    """Sample the status command once, and again (bounded) while a service looks young.

    Everything, sleeps included, stays within `cfg.timeout`. A resample that fails or would
    overrun the deadline is simply not taken: the samples already taken still stand.
    """
    argv = tuple(cfg.command)
    source = " ".join(argv)
    start = clock()
    deadline = start + cfg.timeout
    first = run(argv, timeout=cfg.timeout)
    if first.error is not None:
        return ServicesSnapshot(
            samples=(),
            source=source,
            error=first.error,
            raw=first.stdout,
            returncode=first.returncode,
            stderr=first.stderr,
        )
    entries, ignored = parse_svstat(first.stdout)
    samples = [
        ServiceSample(
            at=clock(),
            entries=tuple(entries),
            ignored=tuple(ignored),
            returncode=first.returncode,
        )
    ]
    for _ in range(max(0, max_extra_samples)):
        if not _needs_resample(samples[-1], cfg.min_uptime):
            break
        # Leave the next run at least as long as the first one took (and 0.5 s).
        if clock() + resample_delay + max(first.duration, 0.5) > deadline:
            break
        sleep(resample_delay)
        remaining = deadline - clock()
        if remaining <= 0:
            break
        again = run(argv, timeout=remaining)
        if again.error is not None:
            break
        more, more_ignored = parse_svstat(again.stdout)
        if not more and not more_ignored:
            break
        # Kept even without a service line: what it printed instead must be seen.
        samples.append(
            ServiceSample(
                at=clock(),
                entries=tuple(more),
                ignored=tuple(more_ignored),
                returncode=again.returncode,
            )
        )
        if not more:
            break
    return ServicesSnapshot(
        samples=tuple(samples),
        source=source,
        raw=first.stdout,
        returncode=first.returncode,
        stderr=first.stderr,
    )
