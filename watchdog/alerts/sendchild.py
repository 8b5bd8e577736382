"""One apprise send, in a short-lived child process: `python -m watchdog.alerts.sendchild`.

Why a child and not a thread: an apprise call cannot be interrupted, so a thread stuck in
it could only be abandoned; a child is killed whole (its process group) at `send_timeout`
by probes.command.run_command. And apprise imports every plugin on first use (about
20 MiB): in a child that memory is returned when the send ends instead of staying in the
daemon for good.

Protocol: one JSON object on stdin, {"url", "title", "body", "notify_type", "timeout"} and
optionally "dedup" (the incident key);
one JSON object on stdout, {"ok": true|false, "error": text|null}. The URL (a secret)
travels on stdin, never in argv, which any local user can read in `ps`.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import sys
from typing import IO, Any, List, Optional, Sequence, Tuple

from watchdog.alerts import pagerduty_compat
from watchdog.alerts.secrets import quiet_library_loggers, redact, register_secret

NOTIFY_TYPES = ("info", "success", "warning", "failure")


def send(url: str, title: str, body: str, notify_type: str, timeout: float,
         dedup: Optional[str] = None) -> Tuple[bool, Optional[str]]:
    """One apprise.Apprise object holding ONE URL; (delivered, why not).

    One URL per object matters: notify() on an object with several URLs reports failure
    when any failed, and retrying it re-sends to the ones that succeeded.
    `dedup` is the incident key: set on a plugin that has one (PagerDuty in apprise >= 2.1)
    unless the URL sets its own `dedup=`, so the descriptive title does not become the key.
    """
    register_secret(url)
    quiet_library_loggers()
    import apprise

    apobj = apprise.Apprise()
    if not apobj.add(url):
        return False, "apprise cannot use this URL (check its scheme and parts)"
    if len(apobj) != 1:
        return False, "url holds several apprise URLs; use one [[alerts.targets]] per channel"
    for service in _services(apobj):
        if dedup and hasattr(service, "dedup") and not getattr(service, "dedup", None):
            service.dedup = dedup
    # Socket deadlines as a courtesy; the parent kills this process at the real deadline.
    for service in _services(apobj):
        if pagerduty_compat.needs_adapting(service):  # apprise 1.9.x: resolves, as 2.1+
            pagerduty_compat.adapt(service, url)
        for attr in ("socket_connect_timeout", "socket_read_timeout"):
            current = getattr(service, attr, None)
            if isinstance(current, (int, float)) and current > timeout:
                setattr(service, attr, float(timeout))
    logged = _Collect()
    apprise_log = logging.getLogger("apprise")
    apprise_log.addHandler(logged)
    try:
        result = apobj.notify(body=body, title=title,
                              notify_type=_notify_type(apprise, notify_type))
    finally:
        apprise_log.removeHandler(logged)
    if result:
        return True, None
    return False, _result_error(result, logged.messages)


class _Collect(logging.Handler):
    """apprise's WARNING+ lines during one notify(): the reason where its result is a plain
    bool (apprise before 2.3, e.g. 1.9.x on Python 3.8)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a malformed record is no reason
            self.messages.append(record.getMessage())


def _notify_type(apprise: Any, name: str) -> Any:
    """apprise 2.x takes its NotifyType enum; 1.9.x (Python 3.8) has plain string constants
    in a class that cannot be called."""
    kind = apprise.NotifyType
    return kind(name) if isinstance(kind, enum.EnumMeta) else name


def _services(apobj: Any) -> List[Any]:
    try:
        return list(apobj)
    except TypeError:  # pragma: no cover - an apprise without iteration
        return []


def _result_error(result: Any, logged: Sequence[str] = ()) -> str:
    """The warnings apprise recorded for a failed call (2.3+ results carry them; before,
    the `logged` WARNING+ lines of its logger)."""
    messages: List[str] = []
    try:
        for service in result:
            for attempt in service:
                for entry in attempt:
                    if str(getattr(entry, "level", "")).upper() in ("WARNING", "ERROR", "CRITICAL"):
                        messages.append(str(entry.message))
    except TypeError:  # an older apprise returns a plain bool
        messages.extend(logged)
    status = getattr(getattr(result, "status", None), "name", None)
    text = "; ".join(dict.fromkeys(messages)) or "apprise reported a failure"
    if status and status not in ("FAILURE", "SUCCESS"):
        text = f"{text} ({status.lower()})"
    return redact(text)


def _request(raw: bytes) -> Tuple[str, str, str, str, float, Optional[str]]:
    """The stdin object, checked; ValueError says what is wrong with it."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"request is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("request is not a JSON object")
    texts = []
    for key in ("url", "title", "body", "notify_type"):
        value = data.get(key)
        if not isinstance(value, str):
            raise ValueError(f"request key {key!r} is missing or not text")
        texts.append(value)
    if texts[3] not in NOTIFY_TYPES:
        raise ValueError(f"notify_type {texts[3]!r} is not one of {', '.join(NOTIFY_TYPES)}")
    timeout = data.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError("request key 'timeout' is missing or not a positive number")
    dedup = data.get("dedup")
    if dedup is not None and not isinstance(dedup, str):
        raise ValueError("request key 'dedup' is not text")
    return texts[0], texts[1], texts[2], texts[3], float(timeout), dedup


def main(stdin: Optional[IO[bytes]] = None, stdout: Optional[IO[bytes]] = None) -> int:
    """Read one request, send it, write one answer; 0 when answered, 2 for a bad request."""
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout.buffer if stdout is None else stdout
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    code = 0
    try:
        url, title, body, notify_type, timeout, dedup = _request(stdin.read())
    except ValueError as exc:
        ok, error, code = False, f"bad request to the send process: {exc}", 2
    else:
        try:
            ok, error = send(url, title, body, notify_type, timeout, dedup)
        except Exception as exc:  # anything apprise raises is this send's reason
            ok, error = False, redact(f"{exc.__class__.__name__}: {exc}")
    stdout.write(json.dumps({"ok": ok, "error": error}).encode("utf-8") + b"\n")
    stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
