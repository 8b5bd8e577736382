"""Part 2: the daemon in steady state, CPU per cycle and RSS, with and without metrics."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, Dict, Mapping

from bench.common import CYCLE_RE, BenchError, log, proc_reading, spread
from bench.harness import Lab, duration_text
from bench.metrics import check_metrics_outputs, metrics_section
from lab.node import NodeDaemon

# ---------------------------------------------------------------- 2. daemon steady state


class SteadyRun:
    """One real daemon at a short interval; /proc read when it logs cycle 1, `warm`, `cycles`."""

    def __init__(self, lab: Lab, role: str, cycles: int, warm: int, interval: float,
                 metrics: bool, name: str) -> None:
        self.lab, self.role, self.cycles, self.warm = lab, role, cycles, warm
        self.interval, self.metrics = interval, metrics
        work = os.path.join(lab.work, name)
        os.makedirs(work, exist_ok=True)
        self.section = metrics_section(work) if metrics else None
        overrides = {"metrics": self.section} if self.section else None
        sections = lab.node_sections(role, name, os.path.join(work, "state"), interval,
                                     overrides)
        self.readings: Dict[int, Dict[str, float]] = {}
        self.marks = {1, warm, cycles}
        self.exposed: Dict[str, Any] = {}
        self.daemon = NodeDaemon(name, work, sections, python=sys.executable,
                                 on_line=self._on_line, env=lab.env)
        self.deadline = 0.0

    def _on_line(self, _node: str, line: str) -> None:
        match = CYCLE_RE.search(line)
        if match and int(match.group(1)) in self.marks and self.daemon.proc is not None:
            with contextlib.suppress(OSError):
                self.readings[int(match.group(1))] = proc_reading(self.daemon.proc.pid)

    def start(self) -> None:
        self.daemon.start()
        self.deadline = time.monotonic() + 60.0 + self.cycles * max(self.interval, 0.05) * 4

    def done(self) -> bool:
        """Has it logged cycle `cycles`? Raises if it died or is too slow."""
        if self.cycles in self.readings:
            return True
        if not self.daemon.running():
            raise BenchError(f"the {self.role} daemon exited:\n"
                             + "\n".join(self.daemon.log()[-20:]))
        if time.monotonic() > self.deadline:
            raise BenchError(f"the {self.role} daemon did not reach {self.cycles} cycles in "
                             "time:\n" + "\n".join(self.daemon.log()[-10:]))
        return False

    def result(self, alerts: int) -> Dict[str, Any]:
        role, warm, cycles = self.role, self.warm, self.cycles
        lines = [m for m in (CYCLE_RE.search(line) for line in self.daemon.log()) if m]
        measured = [m for m in lines if warm < int(m.group(1)) <= cycles]
        statuses = {m.group(4) for m in lines}
        checks = [part.split("=")[0] for part in lines[-1].group(5).split()] if lines else []
        readings = self.readings
        a, b = readings[warm], readings[cycles]
        n = cycles - warm
        not_ok = [m.group(0) for m in lines if m.group(4) != "ok"]
        # A raw non-OK cycle now and then is a finding (reported), not a broken setup; many
        # of them, or an alert, would mean the cost of an error path is being measured.
        if alerts or len(not_ok) > max(1, len(lines) // 100):
            raise BenchError(f"the {role} daemon was not healthy (statuses {statuses}, "
                             f"{alerts} alert(s)): a benchmark of an error path is worthless:\n"
                             + "\n".join(not_ok[:10]))
        return {
            "role": role,
            "checks": checks,
            "interval_s": self.interval,
            "cycles": cycles,
            "warm_cycle": warm,
            "cpu_ms_per_cycle": round((b["cpu"] - a["cpu"]) * 1000 / n, 3),
            "children_cpu_ms_per_cycle": round((b["children_cpu"] - a["children_cpu"]) * 1000
                                               / n, 3),
            "wall_ms_per_cycle": round((b["at"] - a["at"]) * 1000 / n, 2),
            "cycle_ms": spread([float(m.group(6)) for m in measured], 1),
            "rss_mib_first_cycle": round(readings[1]["rss_mib"], 2) if 1 in readings else None,
            "rss_mib_at_warm": round(a["rss_mib"], 2),
            "rss_mib_at_end": round(b["rss_mib"], 2),
            "rss_growth_mib": round(b["rss_mib"] - a["rss_mib"], 2),
            "peak_rss_mib": round(b["hwm_mib"], 2),
            "statuses": sorted(statuses),
            "non_ok_cycles": len(not_ok),
            "non_ok_examples": not_ok[:5],
            "alerts": alerts,
            **({"metrics": self.exposed} if self.metrics else {}),
        }


def bench_daemon(lab: Lab, role: str, cycles: int, warm: int, interval: float,
                 metrics: bool = False) -> Dict[str, Any]:
    """A real daemon at a short interval: CPU per cycle and RSS at cycle `warm` and `cycles`
    (with `metrics`, the same with `[metrics] listen` and `textfile` on)."""
    name = f"steady-{role[0]}-{int(interval * 1000)}ms" + ("-metrics" if metrics else "")
    run = SteadyRun(lab, role, cycles, warm, interval, metrics, name)
    log(f"daemon steady state ({role}{', metrics on' if metrics else ''}): interval "
        f"{duration_text(interval)}, {cycles} cycles")
    before = len(lab.arrived())
    run.start()
    try:
        while not run.done():
            time.sleep(0.05)
        if run.section is not None:
            # Both outputs really work (after the last reading: this scrape is not counted).
            run.exposed = check_metrics_outputs(run.section, run.daemon.log())
    finally:
        run.daemon.stop()
    return run.result(len(lab.arrived()) - before)


def vs_off(off: Mapping[str, Any], on: Mapping[str, Any]) -> Dict[str, Any]:
    """What the metrics-on row adds to the same role's row without metrics."""
    out = {key: round(on[key] - off[key], 3)
           for key in ("cpu_ms_per_cycle", "children_cpu_ms_per_cycle", "rss_mib_at_warm",
                       "rss_mib_at_end", "rss_growth_mib", "peak_rss_mib")}
    out["cycle_ms_median"] = round(on["cycle_ms"]["median"] - off["cycle_ms"]["median"], 1)
    if on["rss_mib_first_cycle"] is not None and off["rss_mib_first_cycle"] is not None:
        out["rss_mib_first_cycle"] = round(on["rss_mib_first_cycle"]
                                           - off["rss_mib_first_cycle"], 3)
    return out
