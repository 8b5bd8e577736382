"""Target URLs out of logs and errors: the process-wide redactor of alert secrets.

Every URL a target resolves to is registered here; its secret parts (watchdog.redaction's
rule: tokens yes, addresses no) are scrubbed from every error we keep and every record of
apprise's and urllib3's loggers, which are also held at WARNING or above (at DEBUG apprise
prints tokens, and urllib3's request lines carry the path, where Slack keeps its token).

Imported by the daemon and by the send child (watchdog.alerts.sendchild) alike, so it
depends on nothing but the standard library and watchdog.redaction.
"""

from __future__ import annotations

import logging
import threading
from typing import Set

from watchdog import redaction


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
