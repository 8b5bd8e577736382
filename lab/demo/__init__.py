"""`ha-watchdog demo`: a whole two-node cluster on loopback, watched by two real daemons.

Why: the quickest way to see what ha-watchdog says, and when, is to break a real cluster
in front of it. Everything here is real and local: a PostgreSQL primary and streaming
standby (lab.pgcluster), one /proc/drbd-format file per node that the demo
rewrites (lab.drbdstate), a daemontools tree of hvmail-like services under a real
svscan (lab.services), one `ha-watchdog` daemon process per node
(lab.node) and an HTTP receiver on 127.0.0.1 that gets apprise's json:// posts
(lab.receivers) and prints each alert as it arrives. The planned-work scenario
runs the real `ha-watchdog maintenance on|status` commands against mail1's daemon, as a user
would; mail1 also publishes Prometheus metrics on a loopback port (when prometheus-client is
installed), which the demo scrapes and prints.

Node "mail1" starts as DRBD Primary with the PostgreSQL primary, "mail2" as DRBD Secondary
with the standby. Each daemon watches ITS OWN PostgreSQL server (a fixed port), whatever
role it has, exactly as on real nodes; after the failover the roles swap underneath them.

The scenarios wait for what they expect with timeouts and print one check mark per
expectation; the exit status is 0 when all held, 1 otherwise, 3 when a prerequisite is
missing, 130/143 on Ctrl-C/SIGTERM. Everything (daemons, PostgreSQL, svscan, the temporary
directory) is removed in `finally`, so an interrupted run leaves nothing behind and a
second run works.

The parts: settings (timings, services), reading (parsers of what arrives), console,
base (state, waiting, setup on lab.cluster, cleanup), scenarios, util; run_demo() here.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any, Dict, Optional, TextIO

from lab.demo.console import Console, Expectation, Interrupted
from lab.demo.reading import (
    Alert,
    NodeView,
    backup_window_around,
    detail_lines,
    missing_prerequisites,
    parse_alert,
    parse_cycle_line,
    parse_samples,
)
from lab.demo.scenarios import Demo
from lab.demo.settings import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISSING,
    EXIT_OK,
    EXIT_TERMINATED,
    NODES,
)
from lab.demo.util import _run, _still_open, metrics_available

__all__ = [
    "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_MISSING", "EXIT_OK", "EXIT_TERMINATED", "NODES",
    "Alert", "Console", "Demo", "Expectation", "Interrupted", "NodeView", "_run",
    "_still_open", "backup_window_around", "detail_lines", "metrics_available",
    "missing_prerequisites", "parse_alert", "parse_cycle_line", "parse_samples", "run_demo",
]


def run_demo(quick: bool = False, verbose: bool = False, *, stream: Optional[TextIO] = None,
             python: str = sys.executable, temp_root: Optional[str] = None,
             pg_version: Optional[str] = None) -> int:
    """Entry point of `ha-watchdog demo`; the exit status (see the module docstring).

    `pg_version` ("9.5", "10", ... "18") runs the cluster on that PostgreSQL major version
    (builds from `.ci/pg-builds`); the default is the system's packaged server.
    """
    console = Console(stream or sys.stdout)
    missing = missing_prerequisites(pg_version)
    if missing:
        console.write("ha-watchdog demo cannot run here; missing:", force=True)
        for item in missing:
            console.write(f"  - {item}", force=True)
        console.write("Install them with `.ci/setup` as root from a checkout (Debian 12: "
                      "apt-get install postgresql daemontools), then run the demo again.",
                      force=True)
        return EXIT_MISSING

    mode = "quick form" if quick else "about a minute"
    console.write(console.paint(f"ha-watchdog demo: a two-node cluster on loopback ({mode})",
                                "bold"))
    demo = Demo(console, quick=quick, verbose=verbose, python=python, temp_root=temp_root,
                pg_version=pg_version)
    previous: Dict[int, Any] = {}
    in_main = threading.current_thread() is threading.main_thread()

    def on_signal(signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM:
            raise Interrupted(EXIT_TERMINATED, "SIGTERM")
        raise Interrupted(EXIT_INTERRUPTED, "Ctrl-C")

    if in_main:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    code = EXIT_FAILED
    try:
        code = demo.run()
    except Interrupted as exc:
        console.write(f"\ninterrupted ({exc.what}); cleaning up", force=True)
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - a lab failure is reported, then cleaned up
        console.write(f"\ndemo failed: {type(exc).__name__}: {exc}", force=True)
        code = EXIT_FAILED
    finally:
        if in_main:  # a second Ctrl-C must not cut the cleanup short
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
        try:
            demo.cleanup()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return code
