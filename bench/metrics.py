"""Part 2b: /metrics scrapes, the maintenance round trip and the exporter's per-cycle
work (bench.exporter_update, in a child of its own)."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from bench.common import (
    CYCLE_RE,
    MAINTENANCE_APPLIED,
    METRICS_LIVE_INTERVAL,
    METRICS_TEXTFILE,
    ROOT,
    SCRAPE_CHUNK,
    SCRAPE_CLIENTS,
    BenchError,
    log,
    measured_run,
    proc_reading,
    spread,
)
from bench.harness import Lab, console_script, display_arg
from lab.node import NodeDaemon
from lab.receivers import free_port
from watchdog.probes.command import run_command

# ---------------------------------------------------------------- 2b. metrics: scrapes, maintenance


def metrics_section(work: str) -> Dict[str, Any]:
    """`[metrics]` as an operator would write it: HTTP on a free loopback port and a textfile
    next to the node's state (both rewritten/served after every cycle)."""
    return {"listen": f"127.0.0.1:{free_port()}",
            "textfile": os.path.join(work, METRICS_TEXTFILE)}


@dataclass(frozen=True)
class Scrape:
    wall: float
    status: int
    content_type: str
    wire_bytes: int  # the response body as sent (gzip when asked for)
    body: bytes  # uncompressed


def scrape(listen: str, headers: Mapping[str, str], timeout: float = 10.0) -> Scrape:
    """GET /metrics on a new connection (the server speaks HTTP/1.0: one per scrape)."""
    host, _, port = listen.rpartition(":")
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", "/metrics", headers=dict(headers))
        response = conn.getresponse()
        raw = response.read()
        wall = time.perf_counter() - start
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"cannot scrape http://{listen}/metrics: {exc!r}") from exc
    finally:
        conn.close()
    gzipped = response.getheader("Content-Encoding", "") == "gzip"
    return Scrape(wall, response.status, response.getheader("Content-Type", ""), len(raw),
                  gzip.decompress(raw) if gzipped else raw)


def _good_scrape(result: Scrape) -> bool:
    return result.status == 200 and b"ha_watchdog_cycles_total" in result.body


def check_metrics_outputs(section: Mapping[str, Any], log_lines: Sequence[str]
                          ) -> Dict[str, Any]:
    """Both metrics outputs of a running daemon serve its series; their sizes (else raise)."""
    errors = [line for line in log_lines if "metrics: cannot" in line
              or "metrics: update failed" in line]
    try:
        result = scrape(section["listen"], {})
        with open(section["textfile"], "rb") as handle:
            text = handle.read()
    except (OSError, BenchError) as exc:
        raise BenchError(f"metrics not served/written: {exc}\n" + "\n".join(errors[:5])
                         ) from exc
    if errors or not _good_scrape(result) or b"ha_watchdog_cycles_total" not in text:
        raise BenchError(f"metrics not working (HTTP {result.status}, textfile {len(text)} B):\n"
                         + "\n".join(errors[:5] or log_lines[-10:]))
    return {"listen": section["listen"], "textfile": os.path.basename(section["textfile"]),
            "textfile_bytes": len(text), "scrape_bytes": len(result.body),
            "series": sum(1 for line in result.body.splitlines()
                          if line and not line.startswith(b"#"))}


class CycleLog:
    """The daemon's cycle lines as (start, end, status, in maintenance), monotonic times,
    from its log as it comes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cycles: List[Tuple[float, float, str, bool]] = []

    def on_line(self, _node: str, line: str) -> None:
        match = CYCLE_RE.search(line)
        if match:
            end = time.monotonic()
            with self._lock:
                self.cycles.append((end - int(match.group(6)) / 1000.0, end, match.group(4),
                                    "MAINTENANCE until" in line))

    def snapshot(self) -> List[Tuple[float, float, str, bool]]:
        with self._lock:
            return list(self.cycles)

    def wait(self, count: int, daemon: NodeDaemon, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.snapshot()) < count:
            if not daemon.running() or time.monotonic() > deadline:
                raise BenchError(f"the metrics daemon logged no cycle {count}:\n"
                                 + "\n".join(daemon.log()[-10:]))
            time.sleep(0.02)

    def overlapping(self, t0: float, t1: float) -> int:
        return sum(1 for start, end, *_ in self.snapshot() if start <= t1 and end >= t0)


def scrape_batch(pid: int, listen: str, headers: Mapping[str, str], count: int,
                 cycles: CycleLog) -> Dict[str, Any]:
    """`count` scrapes in chunks, the daemon's CPU read around each chunk; a chunk that a
    cycle overlapped is thrown away and scraped again (at most `count` chunks more)."""
    kept: List[Scrape] = []
    cpu = 0.0
    discarded = 0
    while len(kept) < count:
        size = min(SCRAPE_CHUNK, count - len(kept))
        t0 = time.monotonic()
        before = proc_reading(pid)
        chunk = [scrape(listen, headers) for _ in range(size)]
        after = proc_reading(pid)
        t1 = time.monotonic()
        bad = [r for r in chunk if not _good_scrape(r)]
        if bad:
            raise BenchError(f"scrape failed: HTTP {bad[0].status}: {bad[0].body[:300]!r}")
        time.sleep(0.5)  # a cycle that started inside the chunk has logged its line by now
        if cycles.overlapping(t0, t1) and discarded < count:
            discarded += 1
            continue
        kept.extend(chunk)
        cpu += after["cpu"] - before["cpu"]
    return {
        "scrapes": len(kept),
        "wall_ms": spread([r.wall * 1000 for r in kept], 3),
        "wire_bytes": int(statistics.median(r.wire_bytes for r in kept)),
        "body_bytes": int(statistics.median(len(r.body) for r in kept)),
        "content_type": kept[0].content_type,
        "daemon_cpu_ms_per_scrape": round(cpu * 1000 / len(kept), 3),
        "chunks_discarded": discarded,
    }


def maintenance_round_trips(lab: Lab, daemon: NodeDaemon, cycles: CycleLog, runs: int
                            ) -> Dict[str, Any]:
    """`maintenance on --for 1h` then `off`, `runs` times after one unmeasured pair (the
    first start message's send is the first of its kind); `maintenance status` as the floor."""
    base = console_script() + ["--config", daemon.config_path, "maintenance"]
    commands = {
        "on": base + ["on", "--for", "1h", "--reason", "bench"],
        "off": base + ["off"],
        "status": base + ["status"],
    }
    samples: Dict[str, List[Dict[str, Any]]] = {key: [] for key in commands}
    log(f"maintenance round trip: 1 warm-up + {runs} runs of on, off, status")
    for index in range(runs + 1):
        for key, argv in commands.items():
            # Spread the request over the daemon's 1 s poll of the request file.
            time.sleep(0.2 + (index + 0.5) / (runs + 1))
            seen = len(cycles.snapshot())
            t0 = time.monotonic()
            run = measured_run(argv, lab.env, timeout=60)
            # The cycle that applied it: the first one logged in (or out of) maintenance.
            applied = [end for _, end, _, quiet in cycles.snapshot()[seen:]
                       if end >= t0 and quiet == (key == "on")]
            confirmed = key == "status" or MAINTENANCE_APPLIED in run.stdout
            if run.returncode != 0 or not confirmed:
                raise BenchError(f"maintenance {key}: rc {run.returncode} {run.error or ''}\n"
                                 f"{run.stdout}{run.stderr}")
            if index == 0:
                log(f"maintenance {key}: rc {run.returncode}: "
                    + (run.stdout.strip().splitlines() or ["(no output)"])[-1])
                continue
            samples[key].append({
                "wall_s": round(run.wall, 3),
                "cpu_s": round(run.cpu, 3),
                "peak_rss_mib": round(run.maxrss_kib / 1024.0, 1),
                # When the daemon logged the cycle that applied it, from the command's start.
                "daemon_cycle_s": round(applied[0] - t0, 3)
                if applied and key != "status" else None,
            })
    out: Dict[str, Any] = {"runs": runs, "commands": []}
    for key, argv in commands.items():
        rows = samples[key]
        out["commands"].append({
            "key": key,
            "argv": ["ha-watchdog"] + [display_arg(a) for a in argv[len(console_script()):]],
            "wall_s": spread([r["wall_s"] for r in rows], 3),
            "cpu_s": spread([r["cpu_s"] for r in rows], 3),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rows),
            "daemon_cycle_s": spread([r["daemon_cycle_s"] for r in rows
                                      if r["daemon_cycle_s"] is not None], 3),
            "runs": rows,
        })
    return out


def bench_exporter_update(lab: Lab, config: str, calls: int) -> Dict[str, Any]:
    """`MetricsExporter.update()` (what the daemon calls after every cycle, textfile only)
    `calls` times on the view of a real `--once --json` of that config, in a child process:
    CPU and wall time per call, split into its parts, and the RSS of the import."""
    once = run_command(console_script() + ["--config", config, "--once", "--json"],
                       timeout=60, env=lab.env)
    work = os.path.join(lab.work, "update")
    os.makedirs(work, exist_ok=True)
    report = os.path.join(work, "once.json")
    with open(report, "w") as handle:
        handle.write(once.stdout)
    try:
        if once.returncode != 0 or json.loads(once.stdout)["status"] != "ok":
            raise ValueError(f"rc {once.returncode}")
    except (ValueError, KeyError) as exc:
        raise BenchError(f"--once --json did not report OK ({exc}):\n{once.stdout}"
                         f"{once.stderr}") from exc
    log(f"metrics: MetricsExporter.update() x {calls} in a child process")
    result = run_command([sys.executable, "-m", "bench.exporter_update", report,
                          os.path.join(work, METRICS_TEXTFILE), str(calls)],
                         timeout=300, env=dict(lab.env, PYTHONPATH=ROOT))
    try:
        return dict(json.loads(result.stdout.strip().splitlines()[-1]), role="primary")
    except (ValueError, IndexError) as exc:
        raise BenchError(f"exporter update timing failed: {result.error or result.returncode}"
                         f"\n{result.stderr[-2000:]}") from exc


def bench_metrics_live(lab: Lab, scrapes: int, warmup: int, maintenance_runs: int,
                       update_calls: int) -> Dict[str, Any]:
    """A primary with metrics at the default interval: scrapes, then maintenance on/off."""
    name = "metrics-p-30s"
    work = os.path.join(lab.work, name)
    os.makedirs(work, exist_ok=True)
    section = metrics_section(work)
    sections = lab.node_sections("primary", name, os.path.join(work, "state"),
                                 METRICS_LIVE_INTERVAL, {"metrics": section})
    cycles = CycleLog()
    daemon = NodeDaemon(name, work, sections, python=sys.executable, on_line=cycles.on_line,
                        env=lab.env)
    log(f"metrics: {scrapes} scrapes per client of a primary at the "
        f"{METRICS_LIVE_INTERVAL:g} s interval")
    out: Dict[str, Any] = {"role": "primary", "interval_s": METRICS_LIVE_INTERVAL}
    with daemon:
        cycles.wait(1, daemon, 60.0)
        if cycles.snapshot()[0][2] != "ok":
            raise BenchError("the metrics daemon's first cycle was not OK:\n"
                             + "\n".join(daemon.log()[-10:]))
        assert daemon.proc is not None
        pid = daemon.proc.pid
        out["outputs"] = check_metrics_outputs(section, daemon.log())
        out["rss_mib_before_scrapes"] = round(proc_reading(pid)["rss_mib"], 2)
        clients = []
        for key, label, headers in SCRAPE_CLIENTS:
            for _ in range(max(1, warmup)):
                if not _good_scrape(scrape(section["listen"], headers)):
                    raise BenchError(f"scrape ({key}) did not return the series")
            row = scrape_batch(pid, section["listen"], headers, scrapes, cycles)
            log(f"  {key}: median {row['wall_ms']['median']:.2f} ms, "
                f"{row['wire_bytes']} B, daemon CPU {row['daemon_cpu_ms_per_scrape']} ms/scrape")
            clients.append({"key": key, "label": label, "headers": dict(headers), **row})
        out["scrape"] = clients
        out["rss_mib_after_scrapes"] = round(proc_reading(pid)["rss_mib"], 2)
        out["update"] = bench_exporter_update(lab, daemon.config_path, update_calls)
        out["maintenance"] = (maintenance_round_trips(lab, daemon, cycles, maintenance_runs)
                              if maintenance_runs > 0 else None)
        if not daemon.running():
            raise BenchError("the metrics daemon exited:\n" + "\n".join(daemon.log()[-10:]))
    return out
