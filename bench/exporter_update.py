"""The exporter's per-cycle work in a child of its own, timed call by call.

`python -m bench.exporter_update ONCE_JSON TEXTFILE CALLS` (run by bench.metrics): what the
end-to-end difference of two daemon runs measures too, without their run-to-run noise.
The imports happen inside main(), in this order, on purpose: everything the daemon loads
anyway first, then the RSS is read, then the exporter's own modules, then the RSS again,
so "import_rss_mib" is what [metrics] adds to a daemon. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence


def rss() -> float:
    """This process's VmRSS, MiB."""
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024.0


def timed(fn: Callable[[int], Any], calls: int) -> Dict[str, float]:
    """CPU and wall time per call of fn(i), after a tenth as many unmeasured calls."""
    for i in range(max(1, calls // 10)):
        fn(i)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(calls):
        fn(i)
    return {"cpu_ms": round((time.process_time() - cpu) * 1000 / calls, 4),
            "wall_ms": round((time.perf_counter() - wall) * 1000 / calls, 4)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args: List[str] = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m bench.exporter_update ONCE_JSON TEXTFILE CALLS", file=sys.stderr)
        return 2
    # What a daemon has loaded anyway, before the baseline.
    import psycopg  # noqa: F401

    import watchdog.alerts.delivery  # noqa: F401
    import watchdog.cli  # noqa: F401
    import watchdog.daemon  # noqa: F401
    import watchdog.maintenance  # noqa: F401
    import watchdog.runner  # noqa: F401
    from watchdog.config import MetricsConfig
    from watchdog.model import CheckResult, Status

    before = rss()
    from prometheus_client import generate_latest

    from watchdog.exporter import MetricsExporter
    from watchdog.metrics import MetricsView, families
    from watchdog.statefile import write_atomic

    imported = rss()

    with open(args[0]) as handle:
        report = json.load(handle)
    path, calls = args[1], int(args[2])
    checks = [CheckResult(c["name"], Status.parse(c["status"]), c["summary"], c["details"])
              for c in report["checks"]]
    exporter = MetricsExporter(MetricsConfig(listen=None, textfile=path), report["node"])

    def view(i: int) -> Any:
        return MetricsView(node=report["node"], version="bench", role=report["role"],
                           checks=checks, confirmed={c.name: c.status.label for c in checks},
                           deliveries={("receiver", "delivered"): 1}, cycle_duration=0.01,
                           last_cycle=time.time(), cycles=i)

    exporter.update(view(0))
    body = generate_latest(exporter.registry)
    print(json.dumps({
        "calls": calls, "textfile_bytes": len(body),
        "import_rss_mib": round(imported - before, 2),
        "update": timed(lambda i: exporter.update(view(i)), calls),
        "families": timed(lambda i: families(view(i)), calls),
        "generate_latest": timed(lambda i: generate_latest(exporter.registry), calls),
        "write_atomic": timed(lambda i: write_atomic(path, body, 0o644, make_dirs=False),
                              calls),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
