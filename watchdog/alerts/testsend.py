"""`ha-watchdog --test-alert`: one test notification to every target at once."""

from __future__ import annotations

import threading
import time
from typing import Callable, List, Optional, Tuple

from watchdog.alerts.message import format_time
from watchdog.alerts.notification import SEV_INFO, TEST, TYPE_INFO, Notification, make_id
from watchdog.alerts.sender import AppriseSender, SendFunc, call_with_deadline
from watchdog.alerts.targets import resolve_url
from watchdog.config import AlertTarget, Config


def test_notification(node: str, target_name: str, now: float) -> Notification:
    title = f"[{node}] ha-watchdog test"
    body = (
        f"Test notification from ha-watchdog on {node} at {format_time(now)}. "
        f"If you read this, alert target {target_name!r} works."
    )
    return Notification(
        id=make_id(node, "test", target_name, now),
        kind=TEST,
        severity=SEV_INFO,
        notify_type=TYPE_INFO,
        title=title,
        body=body,
        node=node,
        created=now,
    )


def send_test(
    cfg: Config,
    node: str,
    send: Optional[SendFunc] = None,
    clock: Callable[[], float] = time.time,
) -> List[Tuple[str, bool, str]]:
    """Send a test notification to every target at once; [(target name, ok, message)].

    Synchronous and bounded (one attempt per target, `send_timeout` each, all in
    parallel); bypasses the outbox, whatever the target's severities.
    """
    sender: SendFunc = send or AppriseSender(cfg.alerts.send_timeout)
    targets = list(cfg.alerts.targets)
    results: List[Optional[Tuple[str, bool, str]]] = [None] * len(targets)

    def one(index: int, target: AlertTarget) -> None:
        url, error = resolve_url(target)
        if url is None:
            results[index] = (target.name, False, error or "no URL")
            return
        n = test_notification(node, target.name, clock())
        ok, error = call_with_deadline(
            sender, cfg.alerts.send_timeout, target, url, n.title, n.body, n.notify_type
        )
        results[index] = (target.name, ok, "delivered" if ok else (error or "send failed"))

    threads = [
        threading.Thread(target=one, args=(i, t), name=f"alert-test-{t.name}", daemon=True)
        for i, t in enumerate(targets)
    ]
    deadline = time.monotonic() + cfg.alerts.send_timeout + 1.0
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [
        r if r is not None else (t.name, False, "no answer in time")
        for r, t in zip(results, targets)
    ]
