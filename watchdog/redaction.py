"""Secrets out of text: the parts of alert URLs and PostgreSQL DSNs that are secret.

Errors travel far (logs, alert bodies, `--once`, engine.json, metrics), and libraries quote
what they were given: libpq says `invalid percent-encoded token: "S3CRET%pw"` about a URI
password, `missing "=" after "pw"` about `password=S3CRET pw`. So every text that may
carry such a fragment is scrubbed with the secret values themselves, in every form the
library might quote them (raw, percent-decoded, quoted, and split at spaces).

Secrets are scrubbed, addresses are not: a host name or an IP address in a message is what
a person needs to act on it ("connection to 127.0.0.1:5432 refused").
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable, List, Set
from urllib.parse import unquote

MASK = "***"
# Secrets shorter than this are masked only as whole words: a two-letter fragment of a
# password ("pw") must go, but not from the middle of every word that contains it.
_WORD_ONLY_BELOW = 6
_DSN_SECRET_KEYS = ("password", "sslpassword")
# libpq's connection keywords: a greedy password value ends only where one of these starts
# (`password=S3CRET pw=x` quotes "pw" in its error: it belongs to the password).
_LIBPQ_KEYWORDS = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcertmode",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
    "require_auth",
    "scram_client_key",
    "scram_server_key",
]
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,63}$"
)


def is_address(text: str) -> bool:
    """An IP address, `localhost` or a dotted DNS name (optionally with a port): public."""
    host = text.strip()
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host.lower() == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return bool(_HOSTNAME_RE.match(host))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by `***` (longest first; short ones as words)."""
    if not text:
        return text
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= _WORD_ONLY_BELOW:
            text = text.replace(secret, MASK)
        elif secret in text:
            pattern = r"(?<![A-Za-z0-9])" + re.escape(secret) + r"(?![A-Za-z0-9])"
            text = re.sub(pattern, MASK, text)
    return text


def _forms(value: str) -> Set[str]:
    """A secret as a library may quote it: raw, stripped, unquoted, decoded, its pieces."""
    found = {value, value.strip()}
    inner = value.strip()
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        inner = inner[1:-1]
        found.add(inner)
    unescaped = re.sub(r"\\(.)", r"\1", inner)
    found.update({unescaped, unquote(inner), unquote(unescaped)})
    for form in list(found):
        found.update(piece.strip("'\"") for piece in re.split(r"[\s=]+", form))
    return {f for f in found if f and f not in ("'", '"')}


# ---------------------------------------------------------------- alert URLs


def url_secrets(url: str, min_length: int = 6) -> Set[str]:
    """Parts of an apprise URL (or several, space/comma separated) that may be tokens.

    The whole URL, user, password, host (Slack and PagerDuty keep keys there), path
    segments and query values; not the scheme, the query keys, nor a host that is an
    address (an IP, `localhost`, a dotted DNS name). Parts shorter than `min_length`
    ("json", "443") are not secrets and too common.
    """
    found = {url, url.strip()}
    passwords: Set[str] = set()
    for piece in re.split(r"[\s,]+", url.strip()):
        found.update(_url_parts(piece))
        passwords.update(_url_password(piece))
    kept = {p for p in found if len(p) >= min_length and not is_address(p)}
    return kept | {p for p in passwords if p}  # a password is secret at any length


def _url_password(url: str) -> Set[str]:
    """The password of `scheme://user:password@host` (raw and decoded), if any."""
    if "://" not in url:
        return set()
    authority = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    if "@" not in authority:
        return set()
    userinfo = authority.rsplit("@", 1)[0]
    if ":" not in userinfo:
        return set()
    password = userinfo.split(":", 1)[1]
    return {password, unquote(password)}


def _url_parts(url: str) -> Set[str]:
    if "://" not in url:
        return {url}
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    authority, _, path = rest.partition("/")
    found: Set[str] = set()
    found.update(re.split(r"[:@]", authority))
    found.update(path.split("/"))
    for pair in re.split(r"[&;]", query):
        value = pair.partition("=")[2]
        found.update((value, unquote(value)))
    found.update(unquote(p) for p in list(found))
    return found


# ---------------------------------------------------------------- PostgreSQL DSNs


def dsn_secrets(dsn: str) -> Set[str]:
    """Every form of the secret values in a libpq DSN (URI or key=value), parsed or not.

    Malformed DSNs count most (their error messages quote fragments), so besides what
    libpq would read, a `password=` value is also taken greedily up to the next `key=`.
    A passfile path is not a secret; a password or sslpassword is.
    """
    if not isinstance(dsn, str) or not dsn.strip():
        return set()
    values: List[str] = []
    text = dsn.strip()
    if re.match(r"^postgres(?:ql)?://", text, re.IGNORECASE):
        rest = text.split("://", 1)[1]
        before_query, _, query = rest.partition("?")
        # userinfo ends at the last "@" (a raw "@" or "/" may sit in a password)
        if "@" in before_query:
            userinfo = before_query.rsplit("@", 1)[0]
            if ":" in userinfo:
                values.append(userinfo.split(":", 1)[1])
            first_part = before_query.split("/", 1)[0]
            if "@" in first_part and ":" in first_part.rsplit("@", 1)[0]:
                values.append(first_part.rsplit("@", 1)[0].split(":", 1)[1])
        for pair in re.split(r"&", query):
            key, sep, value = pair.partition("=")
            if sep and unquote(key).strip().lower() in _DSN_SECRET_KEYS:
                values.append(value)
    else:
        values.extend(_keyword_values(text))
    secrets: Set[str] = set()
    for value in values:
        secrets.update(_forms(value))
    if secrets:
        secrets.add(dsn)
    return secrets


def _keyword_values(text: str) -> List[str]:
    """Values of password keys in `key=value` text, as libpq reads them and greedily."""
    found: List[str] = []
    keys = "|".join(_DSN_SECRET_KEYS)
    # As libpq reads it: a single-quoted value (backslash escapes) or one word.
    for m in re.finditer(
        r"(?i)(?:^|\s)(?:" + keys + r")\s*=\s*('(?:\\.|[^'\\])*'?|(?:\\.|[^\s\\])*)", text
    ):
        found.append(m.group(1))
    # Greedily: everything up to the next libpq keyword (or the end), for malformed text.
    known = "|".join(_LIBPQ_KEYWORDS)
    for m in re.finditer(
        r"(?i)(?:^|\s)(?:" + keys + r")\s*=\s*(.*?)(?=\s+(?:" + known + r")\s*=|\s*$)", text
    ):
        found.append(m.group(1))
    return found


def scrub_dsn(text: str, dsn: str) -> str:
    """`text` without any form of the DSN's secrets (libpq's messages quote them)."""
    return scrub(text, dsn_secrets(dsn))
