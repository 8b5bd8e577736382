"""Self-monitoring: ping a dead man's switch (healthchecks.io style) after every cycle.

Alerts only say what the watchdog saw; if the watchdog itself dies or hangs, silence
looks like health. An external service that expects a ping every cycle and alarms when
they stop closes that gap. Protocol (healthchecks.io, also Uptime Kuma push, Cronitor):
POST the URL after a good cycle, POST `URL/fail` after a cycle that errored; the body is
the cycle's one-line summary, shown by the service.

`ping()` never blocks the check loop and never raises: the request runs in a background
thread with the configured timeout, and when pings pile up (a slow network) only the
latest is kept. The URL is a secret (it is the only credential a ping needs): it is never
logged.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Callable, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

from watchdog import redaction
from watchdog.config import HeartbeatConfig

log = logging.getLogger(__name__)

USER_AGENT = "ha-watchdog"
MAX_BODY = 10_000  # healthchecks.io keeps the first 10 kB of a ping body


def ping_url(url: str, ok: bool) -> str:
    """`url` for a good cycle, `url/fail` (query kept) for a failed one."""
    if ok:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def scrub(text: str, url: str) -> str:
    """`text` without `url` or any longer part of it (the ping key is in the path); the
    host stays when it is an address (watchdog.redaction's rule)."""
    return redaction.scrub(text, redaction.url_secrets(url) | {url, url.rstrip("/")})


# (url, body, timeout) -> (ok, error); the error must not contain the URL.
PostFunc = Callable[[str, bytes, float], Tuple[bool, Optional[str]]]


def http_post(url: str, body: bytes, timeout: float) -> Tuple[bool, Optional[str]]:
    """POST `body` to `url`; (ok, error) with an error that does not name the URL."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": USER_AGENT},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1024)
            status = response.status
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return False, f"cannot connect: {exc.reason}"
    except (OSError, ValueError) as exc:  # timeouts, resets, a malformed URL
        return False, f"{exc.__class__.__name__}: {exc}"
    if 200 <= status < 300:
        return True, None
    return False, f"HTTP {status}"


class Heartbeat:
    """Pings `cfg.url` from a background thread; a no-op when no URL is configured."""

    def __init__(self, cfg: HeartbeatConfig, post: Optional[PostFunc] = None):
        self._url = cfg.url or None
        self._timeout = cfg.timeout
        self._post: PostFunc = post or http_post
        self._cond = threading.Condition()
        self._pending: Optional[Tuple[bool, str]] = None
        self._busy = False
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self._failing = False
        self.sent = 0
        self.last_ok: Optional[bool] = None  # did the last ping reach the service?
        self.last_error: Optional[str] = None

    @property
    def enabled(self) -> bool:
        return self._url is not None

    def ping(self, ok: bool, summary: str) -> None:
        """Queue a ping (replacing one not yet sent) and return at once; never raises."""
        if not self.enabled:
            return
        try:
            with self._cond:
                if self._closed:
                    return
                self._pending = (ok, summary)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
                    self._thread.start()
                self._cond.notify_all()
        except Exception:  # pragma: no cover - thread creation failure
            log.exception("heartbeat: could not queue a ping")

    def ping_now(self, ok: bool, summary: str) -> Tuple[bool, Optional[str]]:
        """Ping synchronously, bounded by the timeout (for `--once`-style callers)."""
        if not self.enabled:
            return False, "no heartbeat url configured"
        box: list = []
        thread = threading.Thread(
            target=lambda: box.append(self._send(ok, summary)), name="heartbeat-now", daemon=True
        )
        thread.start()
        thread.join(self._timeout + 1.0)  # urlopen's timeout is per socket operation
        if not box:
            return False, f"no answer within {self._timeout:g}s"
        return box[0]

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no ping is queued or in flight (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending is not None or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = 1.0) -> None:
        """Send a queued ping if it goes quickly, then stop the thread."""
        self.wait_idle(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                ok, summary = self._pending
                self._pending = None
                self._busy = True
            try:
                self._send(ok, summary)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _send(self, ok: bool, summary: str) -> Tuple[bool, Optional[str]]:
        assert self._url is not None
        body = summary.encode("utf-8", errors="replace")[:MAX_BODY]
        url = ping_url(self._url, ok)
        try:
            sent, error = self._post(url, body, self._timeout)
        except Exception as exc:  # an injected post that raises
            sent, error = False, f"{exc.__class__.__name__}: {exc}"
        if error:
            error = scrub(error, url)
        self.sent += 1
        self.last_ok, self.last_error = sent, error
        if not sent:
            if not self._failing:
                log.warning("heartbeat: ping failed: %s (repeats are logged at debug)", error)
            else:
                log.debug("heartbeat: ping failed: %s", error)
            self._failing = True
        elif self._failing:
            log.info("heartbeat: pings go through again")
            self._failing = False
        return sent, error
