"""Deliver notifications to the configured targets through apprise, losing none.

The daemon loop only calls `Deliverer.submit()`, which writes the notifications to the
persistent outbox and wakes the delivery threads: it never waits for a channel. Each
target has its own thread, so a hung mail relay does not delay Slack. A thread sends what
its target has pending, retried with tenacity (exponential backoff with full jitter, each
attempt bounded by `send_timeout` from outside the call), and removes it from the outbox
only after apprise reported success. What still fails is retried in later rounds until it
is delivered or expires.

Backlogs collapse: when a target has several notifications pending (after an outage, or
several checks changing in one cycle) it gets ONE digest listing the latest state per
title, with earlier facts (a PROBLEM that has since recovered) kept in the text. Incident
services (PagerDuty and the like) key incidents on the title, so a digest titled
"ha-watchdog digest" would open an incident nobody resolves; they get instead one message
per title, the latest one, whose stable title triggers or resolves the right incident.

apprise is never imported by the daemon: each send runs in a short-lived child
(watchdog.alerts.sendchild) that is killed at `send_timeout`, and whose memory (apprise
loads all its plugins, ~20 MiB) goes back when the send ends.
Secrets stay out of logs: in the send child, apprise's logger is kept at WARNING or above
(at DEBUG it prints tokens), urllib3's too (its DEBUG lines carry the request path, where
Slack keeps its token), every message from those loggers and every error we keep is
scrubbed of the target URLs, and targets are named in logs by their `name`, never their URL.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from watchdog import redaction
from watchdog.alerts.history import SentHistory
from watchdog.alerts.message import first_line, format_time
from watchdog.alerts.notification import (
    SEV_CRITICAL,
    SEV_INFO,
    SEV_RECOVERY,
    SEV_WARNING,
    TEST,
    TYPE_FAILURE,
    TYPE_INFO,
    TYPE_SUCCESS,
    TYPE_WARNING,
    Notification,
    make_id,
    shown_title,
)
from watchdog.alerts.outbox import Outbox, notifications_by_target
from watchdog.config import AlertTarget, Config
from watchdog.probes.command import CommandResult, package_env, run_command
from watchdog.statefile import read_bounded
from watchdog.units import format_duration

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.json"
# An apprise URL (or several) is a few hundred bytes; a url_file beyond this is refused.
URL_FILE_LIMIT = 64 * 1024
# Delivery outcomes counted per target (metrics: ha_watchdog_deliveries_total).
DELIVERED, FAILED, EXPIRED = "delivered", "failed", "expired"

# apprise schemes whose service keys incidents on the title (or on the first body line,
# where apprise puts the title): they must not get a digest under a title of its own.
INCIDENT_SCHEMES = frozenset(
    {
        "pagerduty",
        "opsgenie",
        "ilert",
        "pagertree",
        "squadcast",
        "signl4",
        "incidentio",
        "firehydrant",
        "splunk",
        "victorops",
        "goalert",
        "goalerts",
        "opsimate",
        "opsimates",
    }
)

# (target, url, title, body, notify_type) -> (ok, error)
SendFunc = Callable[[AlertTarget, str, str, str, str], Tuple[bool, Optional[str]]]

# ---------------------------------------------------------------- secrets


class _Redactor(logging.Filter):
    """Scrubs every known secret (target URLs and their parts) from log records and errors.

    Which parts are secret is watchdog.redaction's rule (shared with the DSN scrubbing):
    tokens yes, addresses no ("to ***." helped nobody).
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: Set[str] = set()

    def register(self, url: str) -> None:
        """Remember `url` and every part that may be a token: user, password, host (Slack
        and PagerDuty keep keys there) unless it is an address, path segments, query
        values. Not the scheme or the query keys ("action", "mode"): they are public and
        scrubbing them garbles logs."""
        parts = redaction.url_secrets(url)
        with self._lock:
            self._secrets.update(parts)

    def scrub(self, text: str) -> str:
        with self._lock:
            secrets = list(self._secrets)
        return redaction.scrub(text, secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to logging
            return True
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


_REDACTOR = _Redactor()
_NOISY_LOGGERS = ("apprise", "urllib3", "urllib3.connectionpool", "requests")
_quieted = False
_quiet_lock = threading.Lock()


def redact(text: str) -> str:
    """`text` without any target URL or URL part seen so far."""
    return _REDACTOR.scrub(text)


def register_secret(url: str) -> None:
    _REDACTOR.register(url)


def quiet_library_loggers() -> None:
    """apprise/urllib3 loggers at INFO or above, with the redacting filter. Idempotent."""
    global _quieted
    with _quiet_lock:
        if _quieted:
            return
        for name in _NOISY_LOGGERS:
            logger = logging.getLogger(name)
            # WARNING: apprise's INFO lines ("Notifying 1 service(s)") are noise in a
            # journal; what matters (send failures) is logged at WARNING. Never DEBUG.
            if logger.level == logging.NOTSET or logger.level < logging.WARNING:
                logger.setLevel(logging.WARNING)
            logger.addFilter(_REDACTOR)
        _quieted = True


# ---------------------------------------------------------------- target URLs


def resolve_url(target: AlertTarget) -> Tuple[Optional[str], Optional[str]]:
    """The target's apprise URL, read from `url_file` now if it has one: (url, error)."""
    if target.url_file:
        try:
            url = read_bounded(target.url_file, URL_FILE_LIMIT).decode("utf-8").strip()
        except OSError as exc:  # a FIFO or /dev/zero is refused, never read
            return None, f"cannot read url_file {target.url_file}: {exc.strerror or exc}"
        except UnicodeDecodeError:
            return None, f"url_file {target.url_file} is not UTF-8 text"
        if not url:
            return None, f"url_file {target.url_file} is empty"
        register_secret(url)
        return url, None
    if target.url:
        register_secret(target.url)
        return target.url, None
    return None, "target has neither url nor url_file"


def url_scheme(url: str) -> str:
    return url.split("://", 1)[0].strip().lower() if "://" in url else ""


def is_incident_url(url: str) -> bool:
    """Does this service key incidents on the title (no digest for it)?"""
    return url_scheme(url) in INCIDENT_SCHEMES


# ---------------------------------------------------------------- messages (pure)


@dataclass(frozen=True)
class Message:
    """What one send carries, and which outbox entries it settles. `dedup`: the incident
    key (PagerDuty's dedup_key), derived from the stable title, never from what is shown."""

    title: str
    body: str
    notify_type: str
    ids: Tuple[str, ...]
    digest: bool = False
    dedup: Optional[str] = None


def dedup_key(stable_title: str) -> str:
    """PagerDuty's dedup_key for a node+check: sha256 of the stable title. apprise >= 2.1
    (action=map) derives the same key from a body whose first line is that title, which is
    what ha-watchdog sent before titles carried a subject: incidents opened then still
    resolve after an upgrade."""
    import hashlib

    return hashlib.sha256(stable_title.strip().encode("utf-8")).hexdigest()


def _single(n: Notification, subjects: bool) -> Message:
    title = shown_title(n) if subjects else n.title
    return Message(title, n.body, n.notify_type, (n.id,), dedup=dedup_key(n.title))


_TYPE_RANK = {TYPE_SUCCESS: 0, TYPE_INFO: 1, TYPE_WARNING: 2, TYPE_FAILURE: 3}


def _fact(n: Notification) -> str:
    """One past event in one line: `PROBLEM (critical) at <time>: <first body line>`."""
    text = first_line(n.body)
    return f"{n.kind.upper()} ({n.severity}) at {format_time(n.created)}" + (f": {text}" if text else "")


def collapse(items: Sequence[Notification]) -> List[List[Notification]]:
    """Group by title, each group oldest first, groups ordered by their first appearance."""
    groups: Dict[str, List[Notification]] = {}
    for n in sorted(items, key=lambda n: n.created):
        groups.setdefault(n.title, []).append(n)
    return list(groups.values())


def _state(latest: Notification) -> Tuple[int, str]:
    """(sort rank, label) of a title's current state from its latest notification."""
    if latest.severity == SEV_CRITICAL:
        return 0, "OPEN critical"
    if latest.severity == SEV_WARNING:
        return 1, "OPEN warning"
    if latest.severity == SEV_RECOVERY:
        return 3, "RESOLVED"
    return 2, "INFO"


def digest_notify_type(groups: Sequence[Sequence[Notification]]) -> str:
    """The worst still-open severity; `success` when everything recovered."""
    open_types = []
    informational = False
    for group in groups:
        latest = group[-1]
        if latest.severity == SEV_CRITICAL:
            open_types.append(TYPE_FAILURE)
        elif latest.severity == SEV_WARNING:
            open_types.append(TYPE_WARNING)
        elif latest.severity != SEV_RECOVERY:
            informational = True
    if open_types:
        return max(open_types, key=_TYPE_RANK.__getitem__)
    return TYPE_INFO if informational else TYPE_SUCCESS


def build_digest(node: str, items: Sequence[Notification]) -> Message:
    """ONE message for a backlog: the latest state per title, earlier facts kept as text."""
    groups = collapse(items)
    ordered = sorted(groups, key=lambda g: (_state(g[-1])[0], g[-1].created))
    oldest = min(n.created for n in items)
    lines = [
        f"ha-watchdog on {node}: {len(items)} notifications for {len(groups)} subject(s) "
        f"were pending for this channel, the oldest from {format_time(oldest)}. "
        "Latest state per subject:",
        "",
    ]
    for group in ordered:
        latest = group[-1]
        lines.append(f"* {latest.title}: {_state(latest)[1]} - {_fact(latest)}")
        for earlier in reversed(group[:-1]):
            lines.append(f"    earlier: {_fact(earlier)}")
    return Message(
        title=f"[{node}] ha-watchdog digest",
        body="\n".join(lines),
        notify_type=digest_notify_type(groups),
        ids=tuple(n.id for n in items),
        digest=True,
    )


def build_latest(group: Sequence[Notification], subjects: bool = False) -> Message:
    """One title's backlog as its latest notification, earlier facts appended to the body."""
    latest = group[-1]
    body = latest.body
    if len(group) > 1:
        earlier = "\n".join(f"- {_fact(n)}" for n in group[:-1])
        body = f"{body}\n\nEarlier, while this channel was unreachable:\n{earlier}"
    title = shown_title(latest) if subjects else latest.title
    return Message(title, body, latest.notify_type, tuple(n.id for n in group),
                   dedup=dedup_key(latest.title))


def plan_messages(
    node: str, items: Sequence[Notification], incident: bool = False, backlog: bool = True,
    subjects: bool = True,
) -> List[Message]:
    """What to send for a target's pending `items` (oldest first).

    Without a `backlog` (the target has not been failing) each notification goes out as
    itself: two checks changing in the same cycle are two alerts, not a digest.
    `subjects`: titles say what is wrong (chat, email, PagerDuty with its dedup key); off
    for incident services that key on the title itself.
    """
    if not items:
        return []
    if len(items) == 1 or not backlog:
        return [_single(n, subjects) for n in items]
    if incident:
        return [build_latest(group, subjects) for group in collapse(items)]
    return [build_digest(node, items)]


# Incident schemes whose incident key ha-watchdog sets itself (dedup_key, passed to the send
# child): they get the descriptive title. The others key on the title: stable titles.
DEDUP_SCHEMES = frozenset({"pagerduty"})


def wants_subjects(url: str) -> bool:
    return not is_incident_url(url) or url_scheme(url) in DEDUP_SCHEMES


# A message sent this long after its notification was made says so in its body.
LATE_AFTER = 60.0


def _clock_text(epoch: float, now: float) -> str:
    """`21:53:10 UTC`, with the date when it is not the day of `now`."""
    from datetime import datetime, timezone

    try:
        at = datetime.fromtimestamp(epoch, timezone.utc)
        today = datetime.fromtimestamp(now, timezone.utc).date()
    except (OverflowError, OSError, ValueError):
        return "an unknown time"
    return at.strftime("%H:%M:%S UTC" if at.date() == today else "%Y-%m-%d %H:%M:%S UTC")


def late_line(created: float, now: float) -> str:
    """`Delivered late: queued since 21:53:10 UTC, delivered 21:56:02 UTC (2m52s later).`"""
    return (
        f"Delivered late: queued since {_clock_text(created, now)}, delivered "
        f"{_clock_text(now, now)} ({format_duration(max(0.0, now - created))} later; "
        "this channel could not be reached until now)."
    )


def mark_late(message: Message, sources: Sequence[Notification], now: float,
              late_after: float = LATE_AFTER) -> Message:
    """`message` with a "Delivered late" line under its headline when its oldest
    notification waited at least LATE_AFTER (outbox, retries, a restart). A digest says
    when its oldest item was made already."""
    if message.digest or not sources:
        return message
    created = min(n.created for n in sources)
    if now - created < late_after:
        return message
    head, sep, rest = message.body.partition("\n")
    body = f"{head}\n{late_line(created, now)}" + (f"\n{rest}" if sep else "")
    return replace(message, body=body)


# ---------------------------------------------------------------- sending


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
        answer = _last_json_line(result.stdout)
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


def _last_json_line(text: str) -> Optional[Dict[str, Any]]:
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


# ---------------------------------------------------------------- the deliverer


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


# ---------------------------------------------------------------- --test-alert


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
