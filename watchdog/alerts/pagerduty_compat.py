"""PagerDuty incidents that resolve on apprise 1.9.x, the newest apprise for Python 3.8.

apprise before 2.1 sends every PagerDuty message as a `trigger` event without a dedup key
(plugins/pagerduty.py of 1.9.3: `event_action = 'trigger'` for every notify type), so a
RECOVERY cannot resolve anything; it even raises an info-severity event of its own.
apprise 2.1 added `?action=` (`trigger`, `map`, `resolve`) and `?dedup=`: with `map` a
"success" resolves and anything else triggers, both under a dedup key that is the given
`dedup`, else the SHA-256 of the first line of the message body (apprise puts the title
there: PagerDuty takes no title). A resolve names only the routing key and that dedup key.

On an apprise whose PagerDuty plugin has no `action`, the send child gives the plugin
instance this module's send() instead (adapt()), which does exactly that: apprise still
parses the URL, merges the title into the body, splits and throttles; only the Events API
v2 request differs. So one URL (`pagerduty://IntegrationKey@ApiKey?action=map`) behaves
the same on every supported Python, and an upgrade from 3.8 to 3.9+ keeps resolving the
incidents opened before it (same dedup keys).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable, Dict, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

ACTIONS = ("trigger", "map", "resolve")
OK_STATUS = (200, 201, 202)
# The first apprise whose PagerDuty plugin has `action` and `dedup` itself.
RESOLVES_FROM = (2, 1)


def installed_version(distribution: str) -> Optional[Tuple[int, ...]]:
    """(major, minor, ...) of an installed distribution; None if absent or unreadable."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version(distribution)
    except PackageNotFoundError:
        return None
    numbers = re.match(r"\d+(?:\.\d+)*", text or "")
    return tuple(int(n) for n in numbers.group(0).split(".")) if numbers else None


def url_options(url: str) -> Dict[str, Optional[str]]:
    """`action` (one of ACTIONS, partial names accepted as apprise 2.x does) and `dedup`
    from the URL's query; ValueError for an action that is none of them."""
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    raw = (query.get("action") or [""])[-1].strip().lower()
    action: Optional[str] = None
    if raw:
        matches = [a for a in ACTIONS if a.startswith(raw)]
        if len(matches) != 1:
            raise ValueError(f"PagerDuty action {raw!r} is not one of {', '.join(ACTIONS)}")
        action = matches[0]
    dedup = (query.get("dedup") or [""])[-1].strip() or None
    return {"action": action, "dedup": dedup}


def dedup_key(body: str, dedup: Optional[str]) -> str:
    """apprise 2.1+'s key: the URL's `dedup`, else SHA-256 of the body's first line."""
    return dedup or hashlib.sha256(body.split("\n", 1)[0].strip().encode("utf-8")).hexdigest()


def event(service: Any, body: str, notify_type: str, action: str, dedup: Optional[str]
          ) -> Dict[str, Any]:
    """The Events API v2 request apprise 2.1+ would send for this message."""
    resolve = action == "resolve" or (action == "map" and notify_type == "success")
    key = dedup if action == "trigger" else dedup_key(body, dedup)
    if resolve:
        return {"routing_key": service.integration_key, "event_action": "resolve",
                "dedup_key": key}
    from apprise.plugins.pagerduty import PAGERDUTY_SEVERITY_MAP

    payload: Dict[str, Any] = {
        "routing_key": service.integration_key,
        "payload": {
            "summary": body,
            "severity": service.severity or PAGERDUTY_SEVERITY_MAP[notify_type],
            "source": service.source,
            "component": service.component,
        },
        "client": service.app_id,
        "event_action": "trigger",
    }
    if key:
        payload["dedup_key"] = key
    if service.group:
        payload["payload"]["group"] = service.group
    if service.class_id:
        payload["payload"]["class"] = service.class_id
    if service.click:
        payload["links"] = [{"href": service.click}]
    image_url = service.image_url(notify_type) if service.include_image else None
    if image_url:
        payload["images"] = [{"src": image_url, "alt": notify_type}]
    if service.details:
        payload["payload"]["custom_details"] = dict(service.details)
    return payload


def needs_adapting(service: Any) -> bool:
    """A PagerDuty plugin instance from an apprise without `action` (before 2.1)."""
    return getattr(service, "secure_protocol", None) == "pagerduty" and not hasattr(
        service, "action"
    )


def adapt(service: Any, url: str, endpoint: Optional[str] = None) -> None:
    """Give an old apprise's PagerDuty plugin instance apprise 2.1's action/dedup send.

    `endpoint` defaults to apprise's own Events API URL for the service's region. Without
    an `action` in the URL nothing changes (a plain trigger, as on every apprise).
    """
    options = url_options(url)
    if options["action"] is None:
        return
    if endpoint is None:
        from apprise.plugins.pagerduty import PAGERDUTY_API_LOOKUP

        endpoint = PAGERDUTY_API_LOOKUP[service.region_name]
    service.send = _sender(service, endpoint, options["action"], options["dedup"])


def _sender(service: Any, endpoint: str, action: str, dedup: Optional[str]
            ) -> Callable[..., bool]:
    def send(body: str, title: str = "", notify_type: Any = "info", **kwargs: Any) -> bool:
        import requests

        payload = event(service, body, str(notify_type), action, dedup)
        headers = {
            "User-Agent": service.app_id,
            "Content-Type": "application/json",
            "Authorization": f"Token token={service.apikey}",
        }
        service.throttle()
        try:
            reply = requests.post(endpoint, data=json.dumps(payload), headers=headers,
                                  verify=service.verify_certificate,
                                  timeout=service.request_timeout)
        except requests.RequestException as exc:
            service.logger.warning(
                "A Connection error occurred sending Pager Duty notification: %s",
                type(exc).__name__)
            return False
        if reply.status_code not in OK_STATUS:
            service.logger.warning(
                "Failed to send Pager Duty notification: error=%s.", reply.status_code)
            return False
        return True

    return send
