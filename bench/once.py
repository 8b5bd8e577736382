"""Part 1: `ha-watchdog --once` per role against check_postgres and the floors."""

from __future__ import annotations

import os
import statistics
import sys
from typing import Any, Callable, Dict, List, Tuple

from bench.common import CHECK_POSTGRES_THRESHOLDS, BenchError, ChildRun, log, measured_run, spread
from bench.harness import Lab, console_script, display_arg

# ---------------------------------------------------------------- 1. --once vs check_postgres


def bench_once(lab: Lab, runs: int, warmup: int) -> Dict[str, Any]:
    """Interleaved runs of each command; every command is checked to really say OK first."""
    assert lab.pg is not None
    configs = {}
    for role, name in (("secondary", "bench-s"), ("primary", "bench-p")):
        sections = lab.node_sections(role, name, os.path.join(lab.work, f"state-{name}"), 30.0,
                                     alerts=False)
        configs[role] = lab.write_config(os.path.join(lab.work, f"once-{role}.toml"), sections)
    hw = console_script()
    primary_port, standby_port = lab.pg.port("primary"), lab.pg.port("standby")
    commands: List[Tuple[str, str, List[str], Callable[[ChildRun], bool]]] = [
        ("once_secondary", "ha-watchdog --once (secondary: drbd, postgres_role, replay_lag)",
         hw + ["--config", configs["secondary"], "--once"],
         lambda r: r.returncode == 0 and "status=OK" in r.stdout),
        ("once_primary", "ha-watchdog --once (primary: drbd, postgres_role, services, standbys)",
         hw + ["--config", configs["primary"], "--once"],
         lambda r: r.returncode == 0 and "status=OK" in r.stdout),
        ("check_postgres", "check_postgres --action=hot_standby_delay (both servers)",
         ["check_postgres", "--action=hot_standby_delay",
          "--dbhost=127.0.0.1,127.0.0.1", f"--dbport={primary_port},{standby_port}",
          "--dbuser=postgres", *CHECK_POSTGRES_THRESHOLDS],
         lambda r: r.returncode == 0 and "HOT_STANDBY_DELAY OK" in r.stdout),
        ("psql_select_1", "psql -c 'select 1' (floor)",
         ["psql", "-X", "-h", "127.0.0.1", "-p", str(standby_port), "-U", "postgres",
          "-d", "postgres", "-c", "select 1"],
         lambda r: r.returncode == 0 and "(1 row)" in r.stdout),
        ("import_psycopg", "python -c 'import psycopg' (floor)",
         [sys.executable, "-c", "import psycopg"],
         lambda r: r.returncode == 0),
    ]
    results: Dict[str, List[ChildRun]] = {key: [] for key, *_ in commands}
    outputs: Dict[str, str] = {}
    log(f"--once vs check_postgres: {warmup} warm-up + {runs} measured runs of each, interleaved")
    for key, label, argv, good in commands:
        for i in range(max(1, warmup)):
            run = measured_run(argv, lab.env, timeout=60)
            if not good(run):
                raise BenchError(
                    f"{label} did not report OK (rc {run.returncode}, {run.error or ''}):\n"
                    f"{run.stdout}{run.stderr}"
                )
            if i == 0:
                outputs[key] = (run.stdout + run.stderr).strip()
                log(f"{label}: rc {run.returncode}\n    "
                    + "\n    ".join((outputs[key] or "(no output)").splitlines()))
    for i in range(runs):
        shift = i % len(commands)  # rotate the order so no command always runs first
        for key, label, argv, good in commands[shift:] + commands[:shift]:
            run = measured_run(argv, lab.env, timeout=60)
            if not good(run):
                raise BenchError(f"{label} failed in run {i + 1}: rc {run.returncode} "
                                 f"{run.error or ''} {run.stdout}{run.stderr}")
            results[key].append(run)
    ref = statistics.median(r.wall for r in results["check_postgres"])
    ref_rss = max(r.maxrss_kib for r in results["check_postgres"])
    rows = []
    for key, label, argv, _ in commands:
        sample = results[key]
        wall = spread([r.wall for r in sample])
        rss = [r.maxrss_kib / 1024.0 for r in sample]
        rows.append({
            "key": key,
            "label": label,
            "argv": [display_arg(a) for a in argv],
            "wall_s": wall,
            "cpu_s": spread([r.cpu for r in sample]),
            "peak_rss_mib": round(max(rss), 1),
            "median_rss_mib": round(statistics.median(rss), 1),
            "ratio_wall_vs_check_postgres": round(wall["median"] / ref, 3),
            "ratio_rss_vs_check_postgres": round(max(r.maxrss_kib for r in sample) / ref_rss, 3),
            "output": outputs[key],
        })
    return {"runs": runs, "warmup": warmup, "commands": rows}
