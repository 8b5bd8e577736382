"""Check apprise URLs in a child process: `python -m watchdog.alerts.urlcheck`.

Why a child: the daemon and `--check-config` never import apprise (it loads every plugin,
~20 MiB and a few hundred ms); the same reason as watchdog.alerts.sendchild. Nothing is
sent: each URL is only parsed by apprise, the way a send would parse it.

Protocol: one JSON object on stdin, {"urls": [text, ...]} (secrets: on stdin, never in argv);
one JSON object on stdout, {"apprise": version, "results": [{"scheme", "known", "valid",
"error", "action"}, ...]} in the same order. `known`: apprise has a plugin for the scheme;
`valid`: it accepts the whole URL. `error` is apprise's own complaint with the URL scrubbed
out. `action`: the plugin's action when it has one (PagerDuty: trigger, map, resolve).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from typing import IO, Any, Dict, List, Optional

from watchdog.alerts.secrets import redact, register_secret
from watchdog.alerts.targets import url_scheme


class _Capture(logging.Handler):
    """Collects what apprise says about a URL it refuses (WARNING and above)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # a broken record is not worth a failure
            self.messages.append(record.getMessage())


def _known_schemes() -> Optional[Any]:
    """apprise's scheme registry, or None when this apprise has none we can ask."""
    try:
        from apprise.manager_plugins import NotificationManager
    except ImportError:  # pragma: no cover - apprise older than 1.7
        return None
    return NotificationManager()


def check_urls(urls: List[str]) -> Dict[str, Any]:
    """Parse each URL with apprise; nothing is sent."""
    for url in urls:
        register_secret(url)
    import apprise

    logger = logging.getLogger("apprise")
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    registry = _known_schemes()
    results = []
    for url in urls:
        scheme = url_scheme(url)
        known: Optional[bool] = None
        if registry is not None and scheme:
            try:
                known = scheme in registry
            except TypeError:  # pragma: no cover - a registry without membership
                known = None
        capture = _Capture()
        logger.addHandler(capture)
        action: Optional[str] = None
        try:
            apobj = apprise.Apprise()
            added = bool(apobj.add(url))
            several = len(apobj) > 1
            valid = added and not several
            if valid:
                # Incident plugins with actions (PagerDuty in apprise >= 2.1): which one.
                action = getattr(next(iter(apobj)), "action", None)
        except Exception as exc:  # noqa: BLE001 - a plugin that raises is a finding
            valid, several = False, False
            capture.messages.append(f"{type(exc).__name__}: {exc}")
        finally:
            logger.removeHandler(capture)
        if not scheme:
            known = False
        if known is None:
            known = valid
        error = None
        if not valid:
            said = "; ".join(dict.fromkeys(m.strip() for m in capture.messages if m.strip()))
            if several:
                said = "holds several URLs; use one [[alerts.targets]] per channel"
            error = redact(said) or "apprise cannot use this URL"
        results.append({"scheme": scheme, "known": bool(known), "valid": valid, "error": error,
                        "action": action if isinstance(action, str) else None})
    return {"apprise": getattr(apprise, "__version__", "?"), "results": results}


def main(stdin: Optional[IO[bytes]] = None, stdout: Optional[IO[bytes]] = None) -> int:
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout.buffer if stdout is None else stdout
    try:
        data = json.loads(stdin.read().decode("utf-8"))
        urls = data["urls"]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise ValueError("'urls' is not a list of text")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        stdout.write(json.dumps({"error": f"bad request: {exc}"}).encode("utf-8") + b"\n")
        return 2
    answer = check_urls(urls)
    stdout.write(json.dumps(answer).encode("utf-8") + b"\n")
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
