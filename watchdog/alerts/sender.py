"""The low-level send: one message to one URL, in a child process, within a deadline.

apprise is never imported by the daemon: each send runs in a short-lived child
(watchdog.alerts.sendchild) that is killed at `send_timeout`, and whose memory (apprise
loads all its plugins, ~20 MiB) goes back when the send ends. `call_with_deadline` is the
outer bound for any send function, the production one or an injected one.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

from watchdog.alerts.message import first_line
from watchdog.alerts.secrets import redact, register_secret
from watchdog.config import AlertTarget
from watchdog.probes.command import CommandResult, package_env, run_command
from watchdog.units import format_duration

# (target, url, title, body, notify_type) -> (ok, error)
SendFunc = Callable[[AlertTarget, str, str, str, str], Tuple[bool, Optional[str]]]

SEND_MODULE = "watchdog.alerts.sendchild"


class AppriseSender:
    """The production low-level send: apprise in a child process, killed at `timeout`.

    The child (watchdog.alerts.sendchild) gets the URL and message as JSON on stdin and
    answers on stdout; its process group is killed at the deadline, so a hung channel
    leaves nothing running behind, and the daemon never imports apprise itself.
    `python` and `run` are injectable (tests point them elsewhere).
    """

    def __init__(self, timeout: float, python: Optional[str] = None,
                 run: Callable[..., CommandResult] = run_command):
        self.timeout = timeout
        self.python = python or sys.executable
        self.run = run

    def __call__(
        self, target: AlertTarget, url: str, title: str, body: str, notify_type: str,
        dedup: Optional[str] = None,
    ) -> Tuple[bool, Optional[str]]:
        register_secret(url)
        request = json.dumps({"url": url, "title": title, "body": body,
                              "notify_type": notify_type, "timeout": self.timeout,
                              "dedup": dedup})
        result = self.run([self.python, "-m", SEND_MODULE], timeout=self.timeout,
                          env=_child_env(), input=request.encode("utf-8"))
        if result.error is not None:  # not started, or killed at the deadline
            return False, redact(f"send process: {result.error}")
        answer = last_json_line(result.stdout)
        if answer is None:
            said = first_line(result.stderr.strip().splitlines()[-1]) if result.stderr.strip() else ""
            return False, redact(f"send process exited {result.returncode} without an answer"
                                 + (f": {said}" if said else ""))
        ok = answer.get("ok") is True
        error = answer.get("error")
        return ok, None if ok else redact(str(error or "send failed"))


def _takes_dedup(send: Any) -> bool:
    """Does this send function take the incident key (a 6th argument `dedup`)? The
    production one does; simple injected ones (tests, the demo) need not."""
    import inspect

    try:
        return "dedup" in inspect.signature(send).parameters
    except (TypeError, ValueError):
        return False


def _child_env() -> Dict[str, str]:
    """This package importable in the child; systemd's notify variables dropped (only the
    daemon itself talks to systemd)."""
    return package_env({k: v for k, v in os.environ.items()
                        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")})


def last_json_line(text: str) -> Optional[Dict[str, Any]]:
    """The last line of a child's output that is a JSON object (its answer), if any."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def call_with_deadline(
    fn: Callable[..., Any], timeout: float, *args: Any
) -> Tuple[bool, Optional[str]]:
    """Run a send in a helper thread and stop waiting at `timeout`; never raises.

    The outer bound for any send function: the production one (AppriseSender) kills its
    child at `send_timeout` itself, but this wait may be shorter (a stop in progress), and
    an injected send may block. A send that still succeeds after it was given up on is
    sent again later: at least once beats at most once for alerts.
    """
    box: List[Tuple[bool, Optional[str]]] = []

    def run() -> None:
        try:
            ok, error = fn(*args)
            box.append((bool(ok), None if ok else (error or "send failed")))
        except Exception as exc:
            box.append((False, f"{exc.__class__.__name__}: {exc}"))

    thread = threading.Thread(target=run, name="alert-send", daemon=True)
    thread.start()
    thread.join(max(0.0, timeout))
    if not box:
        return False, f"no answer within {format_duration(timeout)} (abandoned)"
    ok, error = box[0]
    return ok, None if ok else redact(str(error))
