"""Where a target's messages go: its apprise URL (read from `url_file` at send time) and
what the URL's service expects of a message (incident services key on the title).

Imported by the URL-checking child (watchdog.alerts.urlcheck): keep it light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Tuple

from watchdog.alerts.secrets import register_secret
from watchdog.statefile import read_bounded

if TYPE_CHECKING:  # only for the annotations: the config module is not needed at run time
    from watchdog.config import AlertTarget

# An apprise URL (or several) is a few hundred bytes; a url_file beyond this is refused.
URL_FILE_LIMIT = 64 * 1024

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


# Incident schemes whose incident key ha-watchdog sets itself (dedup_key, passed to the send
# child): they get the descriptive title. The others key on the title: stable titles.
DEDUP_SCHEMES = frozenset({"pagerduty"})


def wants_subjects(url: str) -> bool:
    return not is_incident_url(url) or url_scheme(url) in DEDUP_SCHEMES
