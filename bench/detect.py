"""Part 3: time to detect, fault injected -> alert received, next to its budget."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bench.common import CRASHING_SERVICE, CYCLE_RE, BenchError, log, proc_reading, spread
from bench.harness import Lab, duration_text
from lab.node import NodeDaemon
from watchdog.config import ReplayLagConfig, ServicesConfig, StandbysConfig

# ---------------------------------------------------------------- 3. time to detect


@dataclass
class Scenario:
    key: str
    label: str
    role: str
    check: str
    interval: float
    for_s: float
    onset_s: float  # worst-case time for the fault to become visible to the check
    onset_note: str
    overrides: Dict[str, Dict[str, Any]]
    inject: Callable[[Lab], Dict[str, Any]]
    heal: Callable[[Lab], None]


def _stop_standby(lab: Lab) -> Dict[str, Any]:
    assert lab.pg is not None
    lab.pg.stop_standby()
    return {}


def _start_standby(lab: Lab) -> None:
    assert lab.pg is not None
    lab.pg.start_standby()
    lab.wait_fresh_reply()


def _hang_standby(lab: Lab) -> Dict[str, Any]:
    assert lab.pg is not None
    age = lab.reply_age()
    lab.pg.freeze_walreceiver()
    limit = StandbysConfig().max_reply_age
    # The check sees it once the last reply is older than max_reply_age.
    return {"reply_age_at_fault_s": round(age or 0.0, 3),
            "onset_s": round(max(0.0, limit - (age or 0.0)), 3)}


def _thaw_standby(lab: Lab) -> None:
    assert lab.pg is not None
    lab.pg.thaw_walreceiver()
    lab.pg.heal()
    lab.wait_fresh_reply()


class _Writer:
    """The primary keeps writing while replay is paused (a row every 0.2 s)."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        assert self.lab.pg is not None
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                self.lab.pg.write(1)
            self.stop.wait(0.2)


_writers: List[_Writer] = []


def _pause_replay(lab: Lab) -> Dict[str, Any]:
    assert lab.pg is not None
    lab.pg.pause_replay()
    writer = _Writer(lab)
    writer.thread.start()
    _writers.append(writer)
    return {}


def _resume_replay(lab: Lab) -> None:
    assert lab.pg is not None
    while _writers:
        writer = _writers.pop()
        writer.stop.set()
        writer.thread.join(5)
    lab.pg.resume_replay()
    lab.pg.wait_replayed()
    lab.wait_fresh_reply()


def _crashloop(lab: Lab) -> Dict[str, Any]:
    assert lab.tree is not None
    lab.tree.make_crashloop(CRASHING_SERVICE)
    return {}


def _heal_service(lab: Lab) -> None:
    assert lab.tree is not None
    lab.tree.make_healthy(CRASHING_SERVICE)
    lab.wait_services_settled()


def scenarios(interval: float, default_interval_runs: int) -> List[Tuple[Scenario, Optional[int]]]:
    """The four faults of issue 5 (and the hung standby again at the default interval)."""
    standbys = StandbysConfig()
    lag = ReplayLagConfig()
    services = ServicesConfig()
    out: List[Tuple[Scenario, Optional[int]]] = [
        (Scenario(
            "standby_stopped", "standby stopped (pg_ctl stop -m fast)", "primary", "standbys",
            # A missing standby is held for reconnect_grace too (a reconnect is not paged).
            interval, max(standbys.for_, standbys.reconnect_grace), 0.0,
            "the walsender row goes at once",
            {}, _stop_standby, _start_standby), None),
        (Scenario(
            "standby_hung", "standby hung, TCP open (walreceiver SIGSTOP)", "primary",
            "standbys", interval, standbys.for_, standbys.max_reply_age,
            "max_reply_age minus the reply age at the fault (worst case shown)",
            {}, _hang_standby, _thaw_standby), None),
        (Scenario(
            "replay_paused", "replay paused while the primary writes", "secondary",
            "replay_lag", interval, interval, 0.0, "the pause itself is a WARNING",
            {"replay_lag": {"for": duration_text(interval)}}, _pause_replay, _resume_replay),
         None),
        (Scenario(
            "service_crashloop", "service killed and crash-looping (svc -k, run exits 1)",
            "primary", "services", interval, interval, 0.0,
            "one cycle's svstat samples (1.5 s apart) show the new pid",
            {"services": {"for": duration_text(interval)}}, _crashloop, _heal_service), None),
    ]
    if default_interval_runs > 0:
        default = 30.0
        out.append((Scenario(
            "standby_hung_default_interval", "standby hung, TCP open, default 30 s interval",
            "primary", "standbys", default, standbys.for_, standbys.max_reply_age,
            "as above", {}, _hang_standby, _thaw_standby), default_interval_runs))
    assert lag.for_ > 0 and services.for_ > 0  # the defaults we shorten above exist
    return out


def _cycle_lines(stamped: Sequence[Tuple[float, str]]) -> List[Dict[str, Any]]:
    """The daemon's cycle summaries with when they were logged and when the cycle began."""
    out = []
    for at, line in stamped:
        match = CYCLE_RE.search(line)
        if match:
            checks = dict(part.split("=", 1) for part in match.group(5).split() if "=" in part)
            out.append({"n": int(match.group(1)), "at": at,
                        "start": at - int(match.group(6)) / 1000.0, "checks": checks})
    return out


def detect_once(lab: Lab, sc: Scenario, index: int, runs: int) -> Dict[str, Any]:
    """One fault: fresh daemon, fault at a spread phase of its cycle, wait for the alert."""
    name = f"d{index}-{sc.role[0]}"
    work = os.path.join(lab.work, f"detect-{sc.key}-{index}")
    os.makedirs(work, exist_ok=True)
    sections = lab.node_sections(sc.role, name, os.path.join(work, "state"), sc.interval,
                                 sc.overrides)
    stamped: List[Tuple[float, str]] = []
    lock = threading.Lock()

    def on_line(_node: str, line: str) -> None:
        with lock:
            stamped.append((time.monotonic(), line))

    def lines() -> List[Dict[str, Any]]:
        with lock:
            return _cycle_lines(list(stamped))

    title = f"[{name}] {sc.check}"
    daemon = NodeDaemon(name, work, sections, python=sys.executable, on_line=on_line,
                        env=lab.env)
    result: Dict[str, Any] = {}
    with daemon:
        deadline = time.monotonic() + 3 * sc.interval + 30
        while not any(c["checks"] and all(v == "ok" for v in c["checks"].values())
                      for c in lines()):
            if time.monotonic() > deadline or not daemon.running():
                raise BenchError(f"{sc.key}: no healthy first cycle:\n"
                                 + "\n".join(daemon.log()[-10:]))
            time.sleep(0.02)
        first_ok = [c for c in lines() if all(v == "ok" for v in c["checks"].values())][0]
        # Spread the fault over the cycle: run k of n at (k + 0.5) / n of the interval.
        phase = (index + 0.5) / runs * sc.interval
        time.sleep(max(0.0, first_ok["start"] + phase - time.monotonic()))
        seen_before = len(lab.arrived())
        t0 = time.monotonic()
        info = sc.inject(lab)
        injected = time.monotonic() - t0
        onset = float(info.pop("onset_s", 0.0 if sc.onset_s == 0 else sc.onset_s))
        budget = onset + sc.for_s + sc.interval
        wait_until = time.monotonic() + budget + 30
        arrival = None
        while arrival is None and time.monotonic() < wait_until:
            for at, msg in lab.arrived()[seen_before:]:
                if msg.get("title") == title and str(msg.get("message", "")).startswith("PROBLEM"):
                    arrival = (at, msg)
                    break
            else:
                time.sleep(0.01)
        if arrival is None:
            result = {"error": f"no PROBLEM alert for {title} within {budget + 30:g}s",
                      "log_tail": daemon.log()[-10:]}
        else:
            at, msg = arrival
            time.sleep(0.3)  # let the delivery thread finish: RSS once the send is done
            with contextlib.suppress(OSError):
                result["rss_mib_after_alert"] = round(
                    proc_reading(daemon.proc.pid)["rss_mib"], 2)  # type: ignore[union-attr]
            with lock:
                logged = list(stamped)
            cycles = [c for c in _cycle_lines(logged) if c["at"] >= t0]
            bad = [c for c in cycles if c["checks"].get(sc.check, "ok") != "ok"]
            # The cycle that raised it: the first summary after its "alert PROBLEM" line.
            raised = [t for t, line in logged if f"alert PROBLEM: {title}" in line]
            after = [c for c in cycles if raised and c["at"] >= raised[0]]
            alert_cycle = after[0] if after else None
            result.update({
                "detect_s": round(at - t0, 3),
                "inject_s": round(injected, 3),
                "onset_s": round(onset, 3),
                "budget_s": round(budget, 3),
                "beyond_budget_s": round(at - t0 - budget, 3),
                "first_seen_s": round(bad[0]["start"] - t0, 3) if bad else None,
                "alert_cycle_start_s": round(alert_cycle["start"] - t0, 3)
                if alert_cycle else None,
                "processing_s": round(at - alert_cycle["start"], 3) if alert_cycle else None,
                # What the worst phase adds beyond onset + for + interval: the alerting
                # cycle's own time and delivery, plus any cycle the debounce waited beyond
                # `for` (phase-independent, unlike beyond_budget_s).
                "overhead_s": round(
                    at - alert_cycle["start"]
                    + max(0.0, alert_cycle["start"] - bad[0]["start"] - sc.for_s - 0.5), 3)
                if alert_cycle and bad else None,
                "message": str(msg.get("message", "")).splitlines()[0][:200],
            })
            result.update(info)
    sc.heal(lab)
    return result


def bench_detect(lab: Lab, interval: float, runs: int, default_interval_runs: int
                 ) -> List[Dict[str, Any]]:
    out = []
    for sc, own_runs in scenarios(interval, default_interval_runs):
        n = own_runs if own_runs is not None else runs
        log(f"time to detect: {sc.label}, interval {sc.interval:g}s, for {sc.for_s:g}s, "
            f"{n} run(s)")
        samples = []
        for index in range(n):
            sample = detect_once(lab, sc, index, n)
            log(f"  run {index + 1}: " + (f"alert after {sample['detect_s']:.2f}s "
                                          f"(budget {sample['budget_s']:.1f}s)"
                                          if "detect_s" in sample else sample["error"]))
            samples.append(sample)
        good = [s for s in samples if "detect_s" in s]
        out.append({
            "key": sc.key,
            "label": sc.label,
            "node": sc.role,
            "check": sc.check,
            "interval_s": sc.interval,
            "for_s": sc.for_s,
            "onset_worst_s": sc.onset_s,
            "onset_note": sc.onset_note,
            "budget_worst_s": sc.onset_s + sc.for_s + sc.interval,
            "overrides": sc.overrides,
            "detect_s": spread([s["detect_s"] for s in good], 3),
            "processing_s": spread([s["processing_s"] for s in good
                                    if s.get("processing_s") is not None], 3),
            "max_beyond_budget_s": max((s["beyond_budget_s"] for s in good), default=None),
            "max_overhead_s": max((s["overhead_s"] for s in good
                                   if s.get("overhead_s") is not None), default=None),
            "rss_mib_after_alert": max((s.get("rss_mib_after_alert", 0.0) for s in good),
                                       default=None),
            "errors": len(samples) - len(good),
            "runs": samples,
        })
    return out
