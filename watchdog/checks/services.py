"""The `services` check (primary): are the daemontools services in the state they should be?

Pure: decides from the probe's samples (and the previous cycle's snapshot) only.

Per service:
- down, `want up`, `supervise not running`, `unable to ...`: CRITICAL unless the service is
  listed in `expected_down` (GreenArrow's hvmail-qmail-smtpd3 and hvmail-dnscache are down by
  default). An expected-down service that svstat cannot read is a WARNING (it is down, as
  expected, but not supervised as it should be).
- paused, or `want down` while still up (stuck stopping): WARNING.
- up with an uptime under `min_uptime`: a pid that changed between samples of this probe is
  crash-looping (CRITICAL); the same pid aging is a service that just started (OK). A pid
  that changed since the previous cycle is "restarted since last check" (WARNING), and
  crash-looping (CRITICAL) when the previous cycle's samples had already seen it restart
  (two restarts or more over both cycles' samples). An older process with a new pid is a
  restart noted in the details, OK.

Never OK when the run itself is in doubt: a status command that exited non-zero, a line
that looks like a service line but could not be read (quoted, bounded), or one service
listed twice in one run with two different states make the result at least UNKNOWN (a
CRITICAL service stays CRITICAL). A failing service must not hide behind a line the parser
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from watchdog.config import ServicesConfig
from watchdog.model import SERVICES, CheckResult, Status, worst
from watchdog.nagios import perf
from watchdog.probes.daemontools import ServicesSnapshot, SvstatEntry, is_unreadable

_QUOTE_LIMIT = 300
_SUMMARY_ITEMS = 6
_QUOTED_LINES = 3  # unreadable lines quoted in the summary (all are in details, bounded)
_LINE_LIMIT = 120  # characters of one quoted line


@dataclass
class _Verdict:
    status: Status = Status.OK
    reasons: List[str] = field(default_factory=list)
    tags: List[str] = field(default_factory=list)

    def add(self, status: Status, reason: str, tag: Optional[str] = None) -> None:
        self.status = worst([self.status, status])
        self.reasons.append(reason)
        if tag and tag not in self.tags:
            self.tags.append(tag)


def _is_expected_down(entry: SvstatEntry, expected: Sequence[str]) -> bool:
    path = entry.path.rstrip("/") or entry.path
    return entry.name in expected or entry.path in expected or path in expected


def _quote(text: str) -> str:
    text = text.strip()
    if not text:
        return "(no output)"
    if len(text) > _QUOTE_LIMIT:
        text = text[:_QUOTE_LIMIT] + "..."
    return repr(text)


def _quote_line(line: str) -> str:
    """One output line, repr-quoted (control characters escaped) and bounded."""
    line = line.strip()
    if len(line) > _LINE_LIMIT:
        line = line[:_LINE_LIMIT] + "..."
    return repr(line)


def _doubts(snapshot: ServicesSnapshot) -> Tuple[List[str], Dict[str, Any]]:
    """Why this run cannot be called OK whatever its service lines say, with details."""
    reasons: List[str] = []
    codes = [s.returncode for s in snapshot.samples if s.returncode not in (None, 0)]
    if snapshot.returncode not in (None, 0):
        codes.insert(0, snapshot.returncode)
    if codes:
        stderr = snapshot.stderr.strip()
        why = f"; stderr {_quote_line(stderr)}" if stderr else ""
        reasons.append(f"status command exited with status {codes[0]}{why}")
    unreadable: List[str] = []
    for sample in snapshot.samples:
        for line in sample.ignored:
            if is_unreadable(line) and line not in unreadable:
                unreadable.append(line)
    if unreadable:
        shown = ", ".join(_quote_line(x) for x in unreadable[:_QUOTED_LINES])
        more = len(unreadable) - _QUOTED_LINES
        reasons.append(
            f"{len(unreadable)} unreadable line{'' if len(unreadable) == 1 else 's'}: {shown}"
            + (f" and {more} more" if more > 0 else "")
        )
    twice: List[str] = []
    for sample in snapshot.samples:
        seen: Dict[str, SvstatEntry] = {}
        for entry in sample.entries:
            first = seen.setdefault(entry.path, entry)
            differs = first is not entry and _state_of(first) != _state_of(entry)
            if differs and entry.name not in twice:
                twice.append(entry.name)
    if twice:
        reasons.append(f"listed twice with different states: {', '.join(twice[:_SUMMARY_ITEMS])}")
    details = {
        "returncode": codes[0] if codes else snapshot.returncode,
        "unreadable_lines": [x[:_QUOTE_LIMIT] for x in unreadable[:20]],
        "contradictory": twice[:20],
    }
    return reasons, details


def _state_of(entry: SvstatEntry) -> Tuple[Any, ...]:
    """What one line says about a service, without its clock (seconds may tick between)."""
    return (entry.state, entry.pid, entry.normally, entry.paused, entry.want, entry.error)


def _secs(value: float) -> str:
    return f"{value:.1f}s"


def _series(snapshot: ServicesSnapshot) -> Dict[str, List[Tuple[float, SvstatEntry]]]:
    """Per service path, its entries over the samples (in sample order)."""
    out: Dict[str, List[Tuple[float, SvstatEntry]]] = {}
    for sample in snapshot.samples:
        seen = set()
        for entry in sample.entries:
            if entry.path in seen:  # the same dir listed twice: one observation per sample
                continue
            seen.add(entry.path)
            out.setdefault(entry.path, []).append((sample.at, entry))
    return out


def _restarts(series: Sequence[Tuple[float, SvstatEntry]]) -> Tuple[int, float]:
    """Restarts seen within the samples, and the time the samples span.

    A restart is an `up` observation whose pid differs from the last `up` one, or an `up`
    after a `down, want up` (supervise was restarting it).
    """
    count = 0
    last_pid: Optional[int] = None
    restarting = False
    for _, entry in series:
        if entry.state == "up" and entry.pid is not None:
            if (last_pid is not None and entry.pid != last_pid) or (
                last_pid is None and restarting
            ):
                count += 1
            last_pid = entry.pid
            restarting = False
        elif entry.state == "down" and entry.want == "up":
            restarting = True
    return count, max(0.0, series[-1][0] - series[0][0])


def _previous_series(
    previous: Optional[ServicesSnapshot], path: str, before: float
) -> List[Tuple[float, SvstatEntry]]:
    """The previous cycle's observations of `path` (only those older than this cycle)."""
    if previous is None:
        return []
    return [(at, e) for at, e in _series(previous).get(path, []) if at < before]


def _judge(
    series: Sequence[Tuple[float, SvstatEntry]],
    cfg: ServicesConfig,
    previous: Optional[ServicesSnapshot],
) -> _Verdict:
    at, entry = series[-1]
    expected_down = _is_expected_down(entry, cfg.expected_down)
    verdict = _Verdict()
    if entry.state == "error":
        if expected_down:
            verdict.add(Status.WARNING, f"expected down but svstat says: {entry.error}", "errors")
        else:
            verdict.add(Status.CRITICAL, f"{entry.error}", "errors")
        return verdict
    restarts, span = _restarts(series)
    if entry.state == "down":
        died = any(e.state == "up" for _, e in series[:-1])
        if entry.want == "up" and (restarts or died):
            verdict.add(
                Status.CRITICAL,
                f"crash-looping: exited {restarts + 1} time(s) in {_secs(at - series[0][0])}, "
                f"down {entry.seconds}s with supervise restarting it",
                "crash_looping",
            )
        elif entry.want == "up":
            status = Status.WARNING if expected_down else Status.CRITICAL
            verdict.add(status, f"down {entry.seconds}s, supervise wants it up", "want_up")
        elif not expected_down:
            note = (
                "normally up"
                if entry.normally == "up"
                else "has a down file; add it to expected_down if intended"
            )
            verdict.add(Status.CRITICAL, f"down {entry.seconds}s ({note})", "down")
        else:
            verdict.add(Status.OK, "down, as expected")
        return verdict

    # state "up"
    if expected_down:
        verdict.add(Status.OK, "up although listed in expected_down", "expected_down_up")
    if entry.paused:
        verdict.add(Status.WARNING, "paused (svc -p)", "paused")
    if entry.want == "down":
        verdict.add(
            Status.WARNING,
            f"asked to stop but still up after {entry.seconds}s (stuck stopping)",
            "stuck_stopping",
        )

    young = entry.seconds is not None and entry.seconds < cfg.min_uptime
    if restarts and young:
        verdict.add(
            Status.CRITICAL,
            f"crash-looping: restarted {restarts} time{'' if restarts == 1 else 's'} "
            f"in {_secs(span)} "
            f"(pid now {entry.pid}, up {entry.seconds}s)",
            "crash_looping",
        )
        return verdict
    if restarts:
        verdict.add(Status.WARNING, f"restarted {restarts} time(s) during the check", "restarted")
        return verdict

    earlier = _previous_series(previous, entry.path, before=series[0][0])
    if earlier:
        prev_at, prev_entry = earlier[-1]
        total, window = _restarts(list(earlier) + list(series))
        if total > restarts:  # restarted between the previous cycle and this one
            was = f"pid {prev_entry.pid}" if prev_entry.pid is not None else "restarting"
            change = f"{was} -> pid {entry.pid}"
            if young and total >= 2:
                verdict.add(
                    Status.CRITICAL,
                    f"crash-looping: restarted {total} times in {_secs(window)} "
                    f"across checks ({change}, up {entry.seconds}s)",
                    "crash_looping",
                )
            elif young:
                verdict.add(
                    Status.WARNING,
                    f"restarted since last check ({change}, up {entry.seconds}s)",
                    "restarted",
                )
            else:
                verdict.add(
                    Status.OK,
                    f"restarted since last check ({change}), up {entry.seconds}s since",
                    "restarted",
                )
            return verdict

    if young:
        same = [(t, e) for t, e in series if e.state == "up" and e.pid == entry.pid]
        if len(same) > 1:
            first_at, first = same[0]
            verdict.add(
                Status.OK,
                f"just started: pid {entry.pid} kept running "
                f"from {first.seconds}s to {entry.seconds}s "
                f"over {_secs(at - first_at)}",
                "just_started",
            )
        else:
            verdict.add(
                Status.OK,
                f"just started ({entry.seconds}s ago); a single sample, not confirmed",
                "just_started",
            )
    elif not verdict.reasons:
        verdict.add(Status.OK, "up")
    return verdict


def _entry_details(entry: SvstatEntry, verdict: _Verdict, expected_down: bool) -> Dict[str, Any]:
    return {
        "name": entry.name,
        "path": entry.path,
        "state": entry.state,
        "pid": entry.pid,
        "uptime": entry.seconds if entry.state == "up" else None,
        "seconds": entry.seconds,
        "normally": entry.normally,
        "paused": entry.paused,
        "want": entry.want,
        "error": entry.error,
        "expected_down": expected_down,
        "verdict": verdict.status.label,
        "reason": "; ".join(verdict.reasons),
    }


def check_services(
    snapshot: ServicesSnapshot,
    cfg: ServicesConfig,
    previous: Optional[ServicesSnapshot] = None,
) -> CheckResult:
    """The `services` verdict from the probe's samples (and the previous cycle's snapshot)."""
    if snapshot.error is not None:
        return CheckResult(
            SERVICES,
            Status.UNKNOWN,
            f"status command failed: {snapshot.error} ({snapshot.source})",
            {
                "command": snapshot.source,
                "error": snapshot.error,
                "output": snapshot.raw[:_QUOTE_LIMIT],
            },
        )
    doubts, doubt_details = _doubts(snapshot)
    # Judged on the last run that printed service lines; a later run that printed none
    # (or only unreadable lines) is one of the doubts.
    latest = next((s for s in reversed(snapshot.samples) if s.entries), None)
    if latest is None:
        stderr = f"; stderr {_quote(snapshot.stderr)}" if snapshot.stderr.strip() else ""
        code = (
            f" (exit status {snapshot.returncode})"
            if snapshot.returncode not in (None, 0)
            else ""
        )
        return CheckResult(
            SERVICES,
            Status.UNKNOWN,
            f"no svstat line in the output of {snapshot.source}{code}: "
            f"{_quote(snapshot.raw)}{stderr}",
            {
                "command": snapshot.source,
                "output": snapshot.raw[:_QUOTE_LIMIT],
                "stderr": snapshot.stderr[:_QUOTE_LIMIT],
                "returncode": snapshot.returncode,
                "unreadable_lines": doubt_details["unreadable_lines"],
            },
        )

    series = _series(snapshot)
    # Judge the services of the latest sample, in its order.
    services: List[Dict[str, Any]] = []
    lists: Dict[str, List[str]] = {
        "down": [],
        "want_up": [],
        "errors": [],
        "paused": [],
        "stuck_stopping": [],
        "crash_looping": [],
        "restarted": [],
        "just_started": [],
        "expected_down_seen": [],
        "expected_down_up": [],
    }
    problems: List[Tuple[Status, str]] = []
    statuses = []
    seen = set()
    for entry in latest.entries:
        if entry.path in seen:
            continue
        seen.add(entry.path)
        verdict = _judge(series[entry.path], cfg, previous)
        expected = _is_expected_down(entry, cfg.expected_down)
        if expected:
            lists["expected_down_seen"].append(entry.name)
        for tag in verdict.tags:
            lists[tag].append(entry.name)
        services.append(_entry_details(entry, verdict, expected))
        statuses.append(verdict.status)
        if verdict.status is not Status.OK:
            problems.append(
                (verdict.status, f"{entry.name} {'; '.join(r for r in verdict.reasons if r)}")
            )

    status = worst(statuses)
    times = [s.at for s in snapshot.samples]
    ignored = [line for sample in snapshot.samples[:1] for line in sample.ignored]
    details: Dict[str, Any] = {
        "command": snapshot.source,
        "services": services,
        **lists,
        "samples": len(snapshot.samples),
        "sampled_over": round(max(times) - min(times), 3) if times else 0.0,
        "ignored_lines": ignored[:20],
        **doubt_details,
    }
    unhealthy = len(problems)
    if doubts:
        # Whatever the readable lines say, the run is in doubt: never OK (or WARNING).
        status = worst([status, Status.UNKNOWN])
        problems.append((Status.UNKNOWN, "; ".join(doubts)))
    if status is Status.OK:
        up = sum(1 for s in services if s["state"] == "up")
        summary = f"{up} of {len(services)} services up"
        if lists["expected_down_seen"]:
            down_ok = [s["name"] for s in services if s["expected_down"] and s["state"] != "up"]
            if down_ok:
                summary += f", expected down: {', '.join(down_ok)}"
        if lists["expected_down_up"]:
            summary += f", up although expected down: {', '.join(lists['expected_down_up'])}"
        if lists["just_started"]:
            summary += f"; just started: {', '.join(lists['just_started'])}"
        if lists["restarted"]:
            summary += f"; restarted since last check: {', '.join(lists['restarted'])}"
    else:
        problems.sort(key=lambda p: -p[0].rank)
        shown = [text for _, text in problems[:_SUMMARY_ITEMS]]
        more = len(problems) - len(shown)
        if unhealthy:
            head = f"{unhealthy} of {len(services)} services not healthy: "
        else:
            head = f"cannot tell whether {len(services)} services are healthy: "
        summary = head + "; ".join(shown)
        if more > 0:
            summary += f"; and {more} more"
    return CheckResult(SERVICES, status, summary, details)


def perfdata(check: CheckResult) -> List[str]:
    """`--once --nagios` performance data (watchdog.nagios): services up of those
    supervised, and how many are unhealthy."""
    services = [s for s in check.details.get("services") or () if isinstance(s, Mapping)]
    if not services:
        return []
    up = sum(1 for s in services if s.get("state") == "up")
    bad = sum(1 for s in services if s.get("verdict") not in ("ok", None))
    return [perf("services_up", up, "", "", "", 0, len(services)),
            perf("services_unhealthy", bad, "", "", "0")]
