#!/usr/bin/env python3
"""The benchmark (issue 5): cost per run, footprint and time to detect, next to check_postgres.

One command sets up a real PostgreSQL primary + streaming standby on loopback, a real
daemontools tree of hvmail-like services, a fake /proc/drbd per node and a local alert
receiver, then measures in one run:

1. `ha-watchdog --once` (secondary and primary role) against `check_postgres
   --action=hot_standby_delay` on the same pair, plus the floors `psql -c 'select 1'` and
   `python -c 'import psycopg'`: wall time (median and spread over --runs interleaved runs),
   peak RSS and CPU time, from wait4() on each child (so one process's footprint, never the
   sum of a tree: check_postgres's psql children count as their largest, not added up).
2. The daemon in steady state at a short interval: CPU per cycle (user + sys, from
   /proc/<pid>/stat) and RSS (VmRSS) at cycle --warm and at cycle --cycles; each role again
   with `[metrics] listen` and `textfile` on, next to it (what the metrics add per cycle
   and in memory). Then, on a primary with metrics at the default 30 s interval: --scrapes
   scrapes of /metrics over loopback (wall time per scrape, response size, the daemon's
   CPU per scrape) and the `ha-watchdog maintenance on|off` round trip (command start ->
   the running daemon confirmed it).
3. Time to detect: fault injected -> alert received by the local receiver, for a stopped
   standby, a hung standby (walreceiver SIGSTOPped, TCP open), replay paused while the
   primary writes, and a crash-looping service; each next to its budget (onset + `for` +
   interval) so the overhead beyond the debounce is visible.

It prints a markdown table and writes the figures to a JSON file (bench/results.json and
bench/results.md by default). Run it as root (PostgreSQL runs as the `postgres` OS user via
runuser) from the repository's virtualenv:

    .venv/bin/python bench/run.py                    # everything, about 11 minutes
    .venv/bin/python bench/run.py --runs 5 --cycles 100 --skip-detect   # a quick look
    .venv/bin/python -m bench ...                    # the same, from the repository's root

This file only starts it: the parts are the modules of the bench package (see
bench/__init__.py).

Python children run with bytecode caches in a private PYTHONPYCACHEPREFIX (an installed
package has its .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE would compile every
module on every run and measure the compiler instead).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this directory is sys.path[0], where the package's modules (cli, daemon,
# metrics, ...) would shadow top-level modules of those names: the repository's root instead.
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
