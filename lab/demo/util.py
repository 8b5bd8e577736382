"""Small helpers of the scenarios: open incidents, command output, metrics, writes."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import time
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from lab.demo.reading import Alert
from lab.demo.settings import DEMO_OVERRIDES
from watchdog.probes.command import CommandResult

_OPENING = ("PROBLEM", "ESCALATION", "DEESCALATION", "FLAPPING", "REMINDER")
_CLOSING = ("RECOVERY", "NO LONGER APPLIES")


def _lag(key: str) -> str:
    return str(DEMO_OVERRIDES["replay_lag"][key])


def _still_open(alerts: Sequence[Alert]) -> List[Alert]:
    """The last alert of each (node, check) whose incident is still open (no RECOVERY yet)."""
    last: Dict[Tuple[str, str], Alert] = {}
    for alert in alerts:
        if alert.kind in _OPENING or alert.kind in _CLOSING:
            last[(alert.node, alert.check)] = alert
    return [a for a in last.values() if a.kind in _OPENING]


def _failed(result: CommandResult) -> str:
    """Why a command did not do what was expected ("" when it exited 0)."""
    if result.ok:
        return ""
    why = result.error or f"exit {result.returncode}"
    tail = (result.stderr or result.stdout).strip()[-200:]
    return f"{why}: {tail}" if tail else why


def _indent(text: str) -> str:
    return "\n      ".join([""] + text.splitlines())


def metrics_available() -> bool:
    """Can the daemons publish metrics (the `metrics` extra is installed)?"""
    try:
        return importlib.util.find_spec("prometheus_client") is not None
    except (ImportError, ValueError):
        return False


def _run(argv: Sequence[str], timeout: float, env: Mapping[str, str]) -> CommandResult:
    """Run a command to its end; killed whole on a timeout or when the demo is interrupted
    (Ctrl-C, SIGTERM), so it never outlives the demo."""
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            env=dict(env), start_new_session=True)
    error = None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        error = f"no answer within {timeout:g}s"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
    return CommandResult(tuple(argv), None if error else proc.returncode, out, err,
                         time.monotonic() - start, error)


def _keep_writing(pg: Any, seconds: float) -> None:
    """Commit a row every 0.2 s on the primary for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pg.write(1)
        time.sleep(0.2)
