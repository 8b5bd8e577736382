"""Deliver notifications to the configured targets, losing none: the delivery threads.

The daemon loop only calls `Deliverer.submit()`, which writes the notifications to the
persistent outbox and wakes the delivery threads: it never waits for a channel. Each
target has its own thread, so a hung mail relay does not delay Slack. A thread sends what
its target has pending, retried with tenacity (exponential backoff with full jitter, each
attempt bounded by `send_timeout` from outside the call), and removes it from the outbox
only after apprise reported success. What still fails is retried in later rounds until it
is delivered or expires.

One module per job around it, re-exported here (this module's names are a stable import
path): alerts.secrets (the URL redactor, shared with the send child), alerts.targets (URL
resolution, incident schemes), alerts.digest (what to send for a backlog, pure),
alerts.sender (apprise in a child process, deadlines), alerts.outbox (persistence) and
alerts.testsend (`--test-alert`). Targets are named in logs by their `name`, never their
URL, and every error kept is scrubbed of the target URLs (alerts.secrets).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from watchdog.alerts.digest import (  # noqa: F401 (re-exported)
    LATE_AFTER,
    Message,
    build_digest,
    build_latest,
    collapse,
    dedup_key,
    digest_notify_type,
    late_line,
    mark_late,
    plan_messages,
)
from watchdog.alerts.history import SentHistory
from watchdog.alerts.message import first_line
from watchdog.alerts.notification import Notification
from watchdog.alerts.outbox import Outbox, notifications_by_target
from watchdog.alerts.secrets import (  # noqa: F401 (re-exported)
    quiet_library_loggers,
    redact,
    register_secret,
)
from watchdog.alerts.sender import (  # noqa: F401 (re-exported)
    SEND_MODULE,
    AppriseSender,
    SendFunc,
    _takes_dedup,
    call_with_deadline,
)
from watchdog.alerts.targets import (  # noqa: F401 (re-exported)
    DEDUP_SCHEMES,
    INCIDENT_SCHEMES,
    URL_FILE_LIMIT,
    is_incident_url,
    resolve_url,
    url_scheme,
    wants_subjects,
)
from watchdog.alerts.testsend import send_test, test_notification  # noqa: F401 (re-exported)
from watchdog.config import AlertTarget, Config
from watchdog.units import format_duration

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.json"
# Delivery outcomes counted per target (metrics: ha_watchdog_deliveries_total).
DELIVERED, FAILED, EXPIRED = "delivered", "failed", "expired"


class _TargetState:
    def __init__(self, target: AlertTarget):
        self.target = target
        self.wake = threading.Event()
        self.thread: Optional[threading.Thread] = None
        self.failures = 0  # consecutive failed rounds
        self.next_try: Optional[float] = None  # monotonic time of the next round
        self.last_success: Optional[float] = None
        self.last_failure: Optional[float] = None
        self.last_error: Optional[str] = None
        self.sent = 0
        # A backlog (items left from before a restart) is sent as a digest too.
        self.backlog = False
        self.failed_rounds: List[float] = []  # when rounds failed (the last day, for reports)


class Deliverer:
    """Delivery threads (one per target) behind a persistent outbox in `state_dir`."""

    def __init__(
        self,
        cfg: Config,
        state_dir: str,
        clock: Callable[[], float] = time.time,
        send: Optional[SendFunc] = None,
        round_max_wait: float = 300.0,
        node: Optional[str] = None,
        late_after: float = LATE_AFTER,
    ):
        """`round_max_wait` caps the pause between failed rounds (each round already
        retries `retries` times); `send` replaces apprise (tests, the demo)."""
        self._cfg = cfg
        self._alerts = cfg.alerts
        self._node = node or cfg.node_name
        self._clock = clock
        self._send: SendFunc = send or AppriseSender(cfg.alerts.send_timeout)
        self._send_dedup = _takes_dedup(self._send)
        self._round_max_wait = round_max_wait
        self._late_after = late_after
        self.state_dir = state_dir
        self.outbox = Outbox(os.path.join(state_dir, OUTBOX_FILE), clock=clock)
        self.history = SentHistory(state_dir)
        self._targets: Dict[str, _TargetState] = {
            t.name: _TargetState(t) for t in cfg.alerts.targets
        }
        self._loaded = False
        self._load_lock = threading.Lock()
        self._expire_lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_deadline: Optional[float] = None
        self._started = False
        self._counts: Dict[Tuple[str, str], int] = {}
        self._counts_lock = threading.Lock()

    # ------------------------------------------------------------ lifecycle

    def _ensure_loaded(self) -> None:
        with self._load_lock:
            if self._loaded:
                return
            try:
                os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
            except OSError as exc:
                log.error(
                    "alerts: cannot create state_dir %s: %s", self.state_dir, exc.strerror or exc
                )
            self.outbox.load()
            self._loaded = True
            for name in self.outbox.targets():
                if name not in self._targets:
                    log.warning(
                        "alerts: outbox holds %d notification(s) for target %r, which is no "
                        "longer configured; they stay until they expire",
                        self.outbox.count(name),
                        name,
                    )

    def start(self) -> None:
        """Load the outbox and start one delivery thread per target (pending items go first)."""
        if self._started:
            return
        self._ensure_loaded()
        self._started = True
        pending = self.outbox.count()
        if pending:
            log.info("alerts: %d notification(s) pending in the outbox; delivering", pending)
        for state in self._targets.values():
            state.backlog = self.outbox.count(state.target.name) > 1
            state.thread = threading.Thread(
                target=self._worker, args=(state,), name=f"alerts-{state.target.name}", daemon=True
            )
            state.wake.set()  # a first round at once: the outbox may hold a backlog
            state.thread.start()

    def submit(self, notifications: Sequence[Notification]) -> None:
        """Persist the notifications for every target that wants them, then wake those targets.

        Returns after the outbox write (one fsync); never waits for a channel, never raises.
        """
        try:
            self._ensure_loaded()
            pairs = [
                (state.target.name, n)
                for n in notifications
                for state in self._targets.values()
                if n.routes_to(state.target.severities)
            ]
            if not pairs:
                return
            added = self.outbox.add_many(pairs)
            woken = set()
            for (name, n), fresh in zip(pairs, added):
                if fresh:
                    woken.add(name)
                else:
                    log.debug("alerts: %s already queued or sent to %r, not again", n.id, name)
            for name in woken:
                self._targets[name].wake.set()
        except Exception:  # the check loop must survive whatever happens here
            log.exception("alerts: could not queue notifications")

    def take_damage(self) -> List[str]:
        """What loading the outbox could not recover (once), for a notification."""
        return self.outbox.take_damage()

    def stop(self, timeout: float) -> None:
        """Try what is pending until `timeout` has passed, then leave the rest in the outbox."""
        self._stop_deadline = time.monotonic() + max(0.0, timeout)
        self._stop.set()
        for state in self._targets.values():
            state.wake.set()
        for state in self._targets.values():
            if state.thread is not None:
                state.thread.join(max(0.0, self._stop_deadline - time.monotonic()))
        left = self.outbox.count()
        if left:
            log.warning(
                "alerts: stopping with %d notification(s) left in the outbox; "
                "they are sent after the next start",
                left,
            )

    def status(self) -> Dict[str, Dict[str, Any]]:
        """Per target: pending count, last success/failure (epoch seconds) and last error."""
        result: Dict[str, Dict[str, Any]] = {}
        for name, state in self._targets.items():
            result[name] = {
                "pending": self.outbox.count(name),
                "sent": state.sent,
                "last_success": state.last_success,
                "last_failure": state.last_failure,
                "last_error": state.last_error,
                "consecutive_failures": state.failures,
            }
        for name in self.outbox.targets():
            if name not in result:
                result[name] = {"pending": self.outbox.count(name), "configured": False}
        return result

    def _count(self, target: str, outcome: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[(target, outcome)] = self._counts.get((target, outcome), 0) + n

    def deliveries(self) -> Dict[Tuple[str, str], int]:
        """(target, outcome) -> how many since start: messages delivered, rounds failed,
        notifications expired undelivered."""
        with self._counts_lock:
            return dict(self._counts)

    def undelivered(self, now: float, window: float = 86400.0) -> List[str]:
        """One line per delivery problem of the last `window` (for the daily report)."""
        lines = []
        for name, state in self._targets.items():
            failed = [t for t in state.failed_rounds if now - t <= window]
            pending = self.outbox.count(name)
            if not failed and not pending:
                continue
            parts = []
            if failed:
                parts.append(f"{len(failed)} failed delivery round(s)")
            if pending:
                parts.append(f"{pending} waiting in the outbox")
            if state.last_error and (pending or state.failures):
                parts.append(f"last error: {state.last_error}")
            elif not pending:
                parts.append("all delivered since")
            lines.append(f"target {name!r}: " + ", ".join(parts))
        for item in self.outbox.dropped_since(now - window):
            lines.append(
                f"target {item['target']!r}: {item['title']} ({item['kind']}) dropped undelivered "
                f"after {format_duration(self._alerts.expire)}"
            )
        return lines

    # ------------------------------------------------------------ the worker

    def _stopping_expired(self) -> bool:
        return self._stop_deadline is not None and time.monotonic() >= self._stop_deadline

    def _worker(self, state: _TargetState) -> None:
        name = state.target.name
        flushing = False
        while True:
            if self._stop.is_set():
                if self._stopping_expired() or not self.outbox.count(name):
                    return
                if not flushing:
                    flushing = True
                    state.next_try = None  # flush: one try at once, whatever the backoff said
                elif state.next_try is not None:
                    # Between failed rounds while stopping: pause, but not past the deadline.
                    pause = min(state.next_try, self._stop_deadline or 0.0) - time.monotonic()
                    if pause > 0:
                        time.sleep(min(pause, 0.5))
                        continue
            else:
                timeout = 60.0
                if state.next_try is not None:
                    timeout = min(timeout, max(0.0, state.next_try - time.monotonic()))
                woken = state.wake.wait(timeout)
                if woken:
                    state.wake.clear()  # before reading the outbox: a later submit wakes again
                if self._stop.is_set():
                    continue
                due = state.next_try is not None and time.monotonic() >= state.next_try
                if not woken and not due:
                    self._sweep_expired()
                    continue
            try:
                self._sweep_expired()
                ok = self._round(state)
            except Exception:  # never let a bug kill the thread: the outbox still holds it all
                log.exception("alerts: target %r: delivery round crashed", name)
                ok = False
            if ok:
                state.failures = 0
                state.next_try = None
            else:
                state.failures += 1
                state.next_try = time.monotonic() + self._round_pause(state.failures)

    def _round_pause(self, failures: int) -> float:
        base = max(self._alerts.retry_max_wait, 0.01)
        ceiling = min(self._round_max_wait, base * 2 ** min(failures - 1, 30))
        return random.uniform(0.5, 1.0) * ceiling

    def _sweep_expired(self) -> None:
        with self._expire_lock:
            expired = self.outbox.expire(self._clock(), self._alerts.expire)
        if not expired:
            return
        parts = []
        for target, items in notifications_by_target(expired).items():
            self._count(target, EXPIRED, len(items))
            titles = ", ".join(f"{n.title} ({n.kind})" for n in items)
            parts.append(f"target {target!r}: {len(items)} [{titles}]")
        log.error(
            "alerts: dropped %d notification(s) undelivered after %s: %s",
            len(expired),
            format_duration(self._alerts.expire),
            "; ".join(parts),
        )

    def _round(self, state: _TargetState) -> bool:
        """Send what the target has pending; True when nothing is left that failed."""
        name = state.target.name
        items = self.outbox.pending(name)
        if not items:
            return True
        url, error = resolve_url(state.target)
        if url is None:
            self._failed(state, error or "no URL", len(items), attempts=0)
            return False
        backlog = state.failures > 0 or state.backlog
        messages = plan_messages(self._node, items, incident=is_incident_url(url), backlog=backlog,
                                 subjects=wants_subjects(url))
        by_id = {n.id: n for n in items}
        for message in messages:
            message = mark_late(message, [by_id[i] for i in message.ids if i in by_id],
                                self._clock(), self._late_after)
            ok, error, attempts = self._send_with_retries(state.target, url, message)
            if not ok:
                self._failed(state, error or "send failed", self.outbox.count(name), attempts)
                return False
            self.outbox.remove(name, message.ids)
            self._count(name, DELIVERED)
            state.sent += 1
            state.last_success = self._clock()
            state.last_error = None
            self._remember(name, message, [by_id[i] for i in message.ids if i in by_id],
                           attempts)
            log.info(
                "alerts: target %r: delivered %s%s",
                name,
                f"a digest of {len(message.ids)} notifications"
                if message.digest
                else repr(message.title),
                f" after {attempts} attempts" if attempts > 1 else "",
            )
        state.backlog = False
        return True

    def _remember(self, target: str, message: Message, sources: Sequence[Notification],
                  attempts: int) -> None:
        """The bounded sent history `ha-watchdog status` shows (no URL in it)."""
        latest = sources[-1] if sources else None
        self.history.record({
            "at": self._clock(),
            "target": target,
            "title": message.title,
            "headline": first_line(message.body),
            "notify_type": message.notify_type,
            "kind": "digest" if message.digest else (latest.kind if latest else None),
            "check": latest.check if latest else None,
            "created": min((n.created for n in sources), default=None),
            "count": len(message.ids),
            "attempts": attempts,
        })

    def _failed(self, state: _TargetState, error: str, pending: int, attempts: int) -> None:
        error = redact(error)
        self._count(state.target.name, FAILED)
        now = self._clock()
        state.failed_rounds = [t for t in state.failed_rounds if now - t <= 86400.0] + [now]
        # WARNING when a target starts failing or fails differently, INFO while it goes on.
        changed = state.failures == 0 or error != state.last_error
        level = logging.WARNING if changed else logging.INFO
        state.last_failure = self._clock()
        state.last_error = error
        log.log(
            level,
            "alerts: target %r: delivery failed%s: %s; %d notification(s) kept in the outbox",
            state.target.name,
            f" after {attempts} attempt(s)" if attempts else "",
            state.last_error,
            pending,
        )

    def _sleep(self, seconds: float) -> None:
        """Backoff between attempts; a stop request ends it, the stop deadline bounds it."""
        if not self._stop.is_set() and self._stop.wait(seconds):
            return
        if self._stop_deadline is not None:
            time.sleep(max(0.0, min(seconds, self._stop_deadline - time.monotonic())))

    def _attempt_timeout(self) -> float:
        timeout = self._alerts.send_timeout
        if self._stop_deadline is not None:
            timeout = min(timeout, self._stop_deadline - time.monotonic())
        return timeout

    def _send_with_retries(
        self, target: AlertTarget, url: str, message: Message
    ) -> Tuple[bool, Optional[str], int]:
        from tenacity import (
            Retrying,
            retry_if_result,
            stop_after_attempt,
            stop_any,
            wait_random_exponential,
        )

        attempts = 0

        def attempt() -> Tuple[bool, Optional[str]]:
            nonlocal attempts
            timeout = self._attempt_timeout()
            if timeout <= 0:
                return False, "stop deadline reached"
            attempts += 1
            args = [target, url, message.title, message.body, message.notify_type]
            if self._send_dedup:
                args.append(message.dedup)
            return call_with_deadline(self._send, timeout, *args)

        retrying = Retrying(
            stop=stop_any(
                stop_after_attempt(self._alerts.retries + 1),
                lambda _state: self._stopping_expired(),
            ),
            wait=wait_random_exponential(
                multiplier=min(1.0, self._alerts.retry_max_wait), max=self._alerts.retry_max_wait
            ),
            retry=retry_if_result(lambda outcome: not outcome[0]),
            sleep=self._sleep,
            retry_error_callback=lambda retry_state: retry_state.outcome.result(),
        )
        ok, error = retrying(attempt)
        return ok, error, attempts
