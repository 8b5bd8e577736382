"""The command line: flags, preflight, the run of every part, the files written."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import sys
import time
from typing import Any, Dict, Optional, Sequence

from bench.common import (
    BENCH_DIR,
    CHECK_POSTGRES_THRESHOLDS,
    METRICS_LIVE_INTERVAL,
    SCHEMA,
    SERVICES,
    log,
)
from bench.daemon import bench_daemon, vs_off
from bench.detect import _writers, bench_detect
from bench.harness import Lab, machine_info
from bench.metrics import bench_metrics_live
from bench.once import bench_once
from bench.report import judge, markdown
from lab.cluster import ClusterError
from lab.pgcluster import find_bindir
from lab.services import missing_tools

# ---------------------------------------------------------------- main


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="ha-watchdog benchmark: --once vs check_postgres, daemon cost (with and "
                    "without [metrics]), /metrics scrapes, the maintenance round trip, time to "
                    "detect. Needs root, PostgreSQL server binaries, daemontools, "
                    "check_postgres, prometheus_client (the metrics extra).",
    )
    parser.add_argument("--runs", type=int, default=20,
                        help="measured runs of each one-shot command (default 20)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="unmeasured runs of each one-shot command first (default 2)")
    parser.add_argument("--cycles", type=int, default=1000,
                        help="daemon cycles in the steady-state part (default 1000)")
    parser.add_argument("--warm", type=int, default=100,
                        help="cycle at which the steady-state baseline is read (default 100, "
                             "at most --cycles / 2)")
    parser.add_argument("--interval", type=float, default=0.05,
                        help="daemon interval in the steady-state part, seconds (default 0.05)")
    parser.add_argument("--cold-cycles", type=int, default=40,
                        help="primary daemon cycles measured at --cold-interval as well "
                             "(default 40; 0 skips)")
    parser.add_argument("--cold-interval", type=float, default=1.0,
                        help="interval of that cold-cache run, seconds (default 1)")
    parser.add_argument("--detect-interval", type=float, default=10.0,
                        help="daemon interval for the time-to-detect part, seconds (default 10)")
    parser.add_argument("--detect-runs", type=int, default=3,
                        help="repetitions of each fault (default 3)")
    parser.add_argument("--default-interval-runs", type=int, default=1,
                        help="repetitions of the hung standby at the default 30 s interval "
                             "(default 1; 0 skips)")
    parser.add_argument("--scrapes", type=int, default=500,
                        help="scrapes of /metrics per client in the metrics part (default 500)")
    parser.add_argument("--maintenance-runs", type=int, default=5,
                        help="measured `maintenance on`/`off`/`status` round trips after one "
                             "warm-up (default 5; 0 skips)")
    parser.add_argument("--skip-once", action="store_true", help="skip part 1")
    parser.add_argument("--skip-daemon", action="store_true",
                        help="skip part 2 (the daemon rows, with and without metrics)")
    parser.add_argument("--skip-metrics", action="store_true",
                        help="skip everything with [metrics] on: the metrics rows of part 2, "
                             "the scrapes and the maintenance round trip")
    parser.add_argument("--skip-detect", action="store_true", help="skip part 3")
    parser.add_argument("--json", default=os.path.join(BENCH_DIR, "results.json"),
                        help="where to write the figures (default bench/results.json)")
    parser.add_argument("--markdown", default=os.path.join(BENCH_DIR, "results.md"),
                        help="where to write the tables (default bench/results.md)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.cycles < 2 or args.detect_runs < 1 or args.scrapes < 1:
        parser.error("--runs, --detect-runs and --scrapes must be at least 1, --cycles at "
                     "least 2")
    if args.maintenance_runs < 0:
        parser.error("--maintenance-runs must be 0 or more")
    args.warm = max(1, min(args.warm, args.cycles // 2))
    return args


def preflight() -> Optional[str]:
    """Why the benchmark cannot run here, or None."""
    for tool in ("check_postgres", "psql"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH"
    reason = missing_tools()
    if reason:
        return reason
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed in this interpreter"
    return None


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    reason = preflight()
    if reason:
        print(f"bench: cannot run: {reason}", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds through the cleanups below

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    bindir = find_bindir()
    results: Dict[str, Any] = {
        "schema": SCHEMA,
        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {
            "runs": args.runs, "warmup": args.warmup, "cycles": args.cycles, "warm": args.warm,
            "interval_s": args.interval, "detect_interval_s": args.detect_interval,
            "cold_cycles": args.cold_cycles, "cold_interval_s": args.cold_interval,
            "detect_runs": args.detect_runs,
            "default_interval_runs": args.default_interval_runs,
            "scrapes": args.scrapes, "maintenance_runs": args.maintenance_runs,
            "metrics_live_interval_s": METRICS_LIVE_INTERVAL,
            "check_postgres_thresholds": list(CHECK_POSTGRES_THRESHOLDS),
            "services": SERVICES,
        },
        "machine": machine_info(bindir),
        "once": None,
        "daemon": [],
        "metrics": None if args.skip_metrics else {"daemon": []},
        "detect": [],
        "skipped": [name for name, skip in (("once", args.skip_once), ("daemon", args.skip_daemon),
                                            ("metrics", args.skip_metrics),
                                            ("detect", args.skip_detect)) if skip],
    }
    lab = Lab()
    try:
        lab.open()
        if not args.skip_once:
            results["once"] = bench_once(lab, args.runs, args.warmup)
        if not args.skip_daemon:
            plan = [(role, args.cycles, args.warm, args.interval)
                    for role in ("primary", "secondary")]
            if args.cold_cycles > 0:
                # The same work with a second between cycles: colder CPU caches, as in
                # production (30 s), where a cycle costs more than back to back.
                plan.append(("primary", args.cold_cycles + 10, 10, args.cold_interval))
            for role, cycles, warm, interval in plan:
                off = bench_daemon(lab, role, cycles, warm, interval)
                results["daemon"].append(off)
                if results["metrics"] is not None:
                    # Right after the same run without metrics: the difference is theirs.
                    on = bench_daemon(lab, role, cycles, warm, interval, metrics=True)
                    on["vs_off"] = vs_off(off, on)
                    results["metrics"]["daemon"].append(on)
        if results["metrics"] is not None:
            results["metrics"].update(
                bench_metrics_live(lab, args.scrapes, args.warmup, args.maintenance_runs,
                                   max(10, min(args.cycles, 1000))))
        if not args.skip_detect:
            results["detect"] = bench_detect(lab, args.detect_interval, args.detect_runs,
                                             args.default_interval_runs)
    except KeyboardInterrupt:
        print("bench: interrupted, cleaning up", file=sys.stderr)
        return 130
    except ClusterError as exc:  # BenchError is one
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        for writer in _writers:
            writer.stop.set()
        lab.close()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["targets"] = judge(results)
    table = markdown(results)
    _write(args.json, json.dumps(results, indent=2) + "\n")
    _write(args.markdown, table)
    print(table)
    log(f"figures written to {args.json} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
