"""Load and validate the TOML configuration.

Every error names the file, the key path and the line, and validation collects all errors
instead of stopping at the first, so `--check-config` can list them in one run. The schema
is declared once, on the dataclasses below (field metadata), and drives both validation and
the defaults; `config.example.toml` documents the same keys.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import socket
import stat
import sys
from dataclasses import dataclass, field
from datetime import time as dtime
from typing import Any, Dict, List, Optional, Tuple

from watchdog.statefile import Unreadable, read_bounded
from watchdog.units import (
    ASCII_ONLY,
    foreign_digits,
    format_duration,
    parse_duration,
    parse_size,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10
    import tomli as tomllib

DEFAULT_PATH = "/etc/ha-watchdog/config.toml"
# A real config is a few KiB; anything beyond this is refused unread.
CONFIG_LIMIT = 1024 * 1024

SEVERITIES = ("ok", "warning", "critical", "unknown")
ALERT_KINDS = ("warning", "critical", "recovery", "info")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# ---------------------------------------------------------------- schema helpers


def _f(kind: str, default: Any, toml: Optional[str] = None, **extra: Any) -> Any:
    """A dataclass field with its TOML kind (and TOML name when it differs)."""
    meta = {"kind": kind, "toml": toml, **extra}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _dur(default: Optional[str], low: str, high: str, why_low: str = "", why_high: str = "",
         positive: bool = False, **extra: Any) -> Any:
    """A duration field bounded to what works: [low, high] (or (0, high] when `positive`),
    with the reason a bound exists, for the error message."""
    value = parse_duration(default) if default is not None else None
    return _f("duration", value, low=parse_duration(low), high=parse_duration(high),
              why_low=why_low, why_high=why_high, positive=positive, **extra)


# Bounds every duration has unless it declares tighter ones: beyond a year, deadlines and
# timers overflow (threading timeouts, datetime arithmetic) and no monitoring makes sense.
_MAX_DURATION = 366 * 86400.0
_MAX_SIZE = 1024**5  # 1 PiB: more WAL than any standby holds
_MAX_INT = 1_000_000
_UNIT_WATCHDOG_SLOT = 60.0  # systemd/ha-watchdog.service: WatchdogSec=120, pinged every 60 s
_PROBE_LIMIT = "5m"
_PROBE_WHY = "a probe blocks its cycle that long; beyond minutes the watchdog is blind"
_DEBOUNCE_LIMIT = "7d"
_DEBOUNCE_WHY = "a problem held back longer than a week is never paged"

# The keys every check table accepts (decision core, see watchdog.core.debounce); each
# section declares them with its own defaults.


def _for(default: str) -> Any:
    return _dur(default, "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY, toml="for")


def _recover_for(default: str) -> Any:
    return _dur(default, "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY)


def _unknown_as(default: str) -> Any:
    return _f("choice", default, choices=SEVERITIES)


def _unknown_for(default: Optional[str] = None) -> Any:
    """None: the check's own `for` (see effective_unknown_for)."""
    return _dur(default, "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY, optional=True)


def _timeout(default: str, what: str = _PROBE_WHY, low: str = "100ms") -> Any:
    return _dur(default, low, _PROBE_LIMIT, why_low="nothing answers faster", why_high=what)


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class NodeConfig:
    # Empty: the host name. Set, it is a label in every alert: printable, one line.
    name: str = _f("str", "", label=True, optional_label=True, max_length=64)


@dataclass(frozen=True)
class DaemonConfig:
    interval: float = _dur("30s", "10ms", "1h", why_low="a tighter loop only burns CPU",
                           why_high="problems would go unseen for longer than an hour")
    state_dir: str = _f("str", "/var/lib/ha-watchdog")
    log_level: str = _f("choice", "info", choices=("debug", "info", "warning", "error"))
    flap_changes: int = _f("int", 4, minimum=2, maximum=1000)
    flap_window: float = _dur("30m", "1s", "7d", positive=True,
                              why_high="a week of state changes is history, not flapping")


@dataclass(frozen=True)
class DrbdConfig:
    format: str = _f(
        "choice", "auto", choices=("auto", "proc", "drbd-overview", "drbdadm-status", "drbdsetup-json")
    )
    path: str = _f("str", "/proc/drbd")
    command: Optional[Tuple[str, ...]] = _f("argv", None, optional=True)
    resources: Optional[Tuple[str, ...]] = _f(
        "strlist", None, optional=True,
        empty="must name at least one resource (leave the key out to watch all of them)",
    )
    timeout: float = _timeout("5s")
    for_: float = _for("30s")
    recover_for: float = _recover_for("30s")
    unknown_as: str = _unknown_as("critical")
    unknown_for: Optional[float] = _unknown_for()


@dataclass(frozen=True)
class ServicesConfig:
    command: Tuple[str, ...] = _f("argv", ("service", "greenarrow", "status"))
    expected_down: Tuple[str, ...] = _f("strlist", ("hvmail-qmail-smtpd3", "hvmail-dnscache"))
    timeout: float = _timeout("10s")
    min_uptime: float = _dur("4s", "0s", "1h",
                             why_high="every restart within it reads as a crash loop")
    for_: float = _for("1m")
    recover_for: float = _recover_for("30s")
    unknown_as: str = _unknown_as("warning")
    unknown_for: Optional[float] = _unknown_for()


@dataclass(frozen=True)
class PostgresConfig:
    dsn: str = _f("str", "")
    connect_timeout: float = _timeout("3s")
    query_timeout: float = _timeout("5s")


@dataclass(frozen=True)
class CanaryConfig:
    """The replication canary (see README "The canary"): on by default, because without it
    an idle pair gives a standby nothing to prove it still receives WAL, and on 9.5-11 the
    watchdog has no other way to tell a hung standby (or a dead link) from an idle one."""

    enabled: bool = _f("bool", True)
    timeout: float = _timeout("2s")


@dataclass(frozen=True)
class PostgresRoleConfig:
    for_: float = _for("30s")
    recover_for: float = _recover_for("30s")
    unknown_as: str = _unknown_as("critical")
    unknown_for: Optional[float] = _unknown_for()


@dataclass(frozen=True)
class StandbysConfig:
    min_streaming: int = _f("int", 1, minimum=0, maximum=100)
    max_reply_age: float = _dur("15s", "1s", "1d", why_low="standbys reply every 10s by default",
                                why_high="a standby silent for a day is long gone")
    warning_bytes: int = _f("size", 64 * 1024**2, minimum=1)
    # Too few standbys streaming because one is missing (not connected, or not yet
    # `streaming`) waits this long before it counts: a walreceiver reconnects within
    # wal_retrieve_retry_interval (5 s by default). A hung one (reply stale) does not wait.
    reconnect_grace: float = _dur("15s", "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY)
    # ... and until this long after this node's role change (a standby being rebuilt).
    role_change_grace: float = _dur("5m", "0s", _DEBOUNCE_LIMIT, why_high=_DEBOUNCE_WHY)
    for_: float = _for("0s")
    recover_for: float = _recover_for("30s")
    unknown_as: str = _unknown_as("warning")
    # PostgreSQL unreachable already pages through postgres_role: give that a head start.
    unknown_for: Optional[float] = _unknown_for("2m")


@dataclass(frozen=True)
class ReplayLagConfig:
    warning: float = _dur("1m", "0s", "30d", positive=True, why_low="any lag would alert")
    critical: float = _dur("5m", "0s", "30d", positive=True, why_low="any lag would alert")
    warning_bytes: int = _f("size", 64 * 1024**2, minimum=1)
    critical_bytes: int = _f("size", 1024**3, minimum=1)
    max_receive_age: float = _dur("45s", "1s", "1d", why_low="WAL arrives in bursts",
                                  why_high="a day without WAL is a dead standby")
    backup_warning: float = _dur("2h", "0s", "30d", positive=True, why_low="any lag would alert")
    backup_critical: float = _dur("6h", "0s", "30d", positive=True, why_low="any lag would alert")
    for_: float = _for("2m")
    recover_for: float = _recover_for("1m")
    unknown_as: str = _unknown_as("warning")
    unknown_for: Optional[float] = _unknown_for()


@dataclass(frozen=True)
class BackupConfig:
    detect: bool = _f("bool", True)
    max_duration: float = _dur("8h", "1s", "7d", positive=True,
                               why_high="a backup held as running for a week hides real lag")
    checks: Tuple[str, ...] = _f("strlist", ("replay_lag",))
    application_names: Tuple[str, ...] = _f("strlist", ("pg_dump", "pg_dumpall", "pg_basebackup"))


@dataclass(frozen=True)
class BackupWindow:
    days: Tuple[str, ...] = _f("days", DAYS)
    start: dtime = _f("clock", None, required=True)
    end: dtime = _f("clock", None, required=True)
    timezone: str = _f("timezone", "UTC")
    checks: Tuple[str, ...] = _f("strlist", ("replay_lag",))


@dataclass(frozen=True)
class AlertTarget:
    name: str = _f("str", "", required=True, label=True, max_length=64)
    url: Optional[str] = _f("str", None, optional=True, secret=True)
    url_file: Optional[str] = _f("str", None, optional=True)
    severities: Tuple[str, ...] = _f("kinds", ALERT_KINDS)


@dataclass(frozen=True)
class AlertsConfig:
    renotify: float = _dur("4h", "0s", "30d",  # 0s: no reminders
                           why_high="a reminder once a month reminds nobody")
    expire: float = _dur("24h", "1m", "30d",
                         why_low="undelivered alerts would be dropped before a channel can recover",
                         why_high="the outbox would keep month-old pages")
    retries: int = _f("int", 3, minimum=0, maximum=20)
    retry_max_wait: float = _dur("30s", "0s", "10m",
                                 why_high="a send round would outlast many cycles")
    send_timeout: float = _dur("30s", "1s", "10m", why_low="every send would time out",
                               why_high="a hung channel would hold deliveries that long")
    targets: Tuple[AlertTarget, ...] = _f("targets", ())
    # The daemon refuses to start when nothing would ever hear from it (no target, no
    # metrics, no heartbeat; see watchdog.preflight.silent_reason) unless this is true.
    allow_silent: bool = _f("bool", False)


@dataclass(frozen=True)
class HeartbeatConfig:
    url: Optional[str] = _f("str", None, optional=True, secret=True)
    timeout: float = _timeout("10s", "a ping that slow is a failed ping")


@dataclass(frozen=True)
class MetricsConfig:
    # Empty: off. "host:port"; a bare ":port" or "port" listens on loopback only.
    listen: Optional[Tuple[str, int]] = _f("listen", None, optional=True)
    textfile: Optional[str] = _f("str", None, optional=True)


@dataclass(frozen=True)
class MaintenanceConfig:
    max_duration: float = _dur("8h", "0s", "30d", positive=True,
                               why_high="a month-long maintenance is a silenced node")


@dataclass(frozen=True)
class DigestConfig:
    at: Optional[dtime] = _f("clock", None, optional=True)
    timezone: str = _f("timezone", "UTC")


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. `source` is the file it came from."""

    node: NodeConfig = field(default_factory=NodeConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    drbd: DrbdConfig = field(default_factory=DrbdConfig)
    services: ServicesConfig = field(default_factory=ServicesConfig)
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    postgres_role: PostgresRoleConfig = field(default_factory=PostgresRoleConfig)
    standbys: StandbysConfig = field(default_factory=StandbysConfig)
    replay_lag: ReplayLagConfig = field(default_factory=ReplayLagConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)
    backup_windows: Tuple[BackupWindow, ...] = ()
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    digest: DigestConfig = field(default_factory=DigestConfig)
    source: str = "<defaults>"
    warnings: Tuple[str, ...] = ()

    @property
    def node_name(self) -> str:
        return self.node.name or socket.gethostname().split(".")[0]

    def check(self, name: str) -> Any:
        """The config section of a check (drbd, services, postgres_role, standbys, replay_lag)."""
        return getattr(self, name)


_SECTIONS = {
    "node": NodeConfig,
    "daemon": DaemonConfig,
    "drbd": DrbdConfig,
    "services": ServicesConfig,
    "postgres": PostgresConfig,
    "canary": CanaryConfig,
    "postgres_role": PostgresRoleConfig,
    "standbys": StandbysConfig,
    "replay_lag": ReplayLagConfig,
    "backup": BackupConfig,
    "alerts": AlertsConfig,
    "heartbeat": HeartbeatConfig,
    "metrics": MetricsConfig,
    "maintenance": MaintenanceConfig,
    "digest": DigestConfig,
}
CHECK_SECTIONS = ("drbd", "postgres_role", "services", "standbys", "replay_lag")


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, located as precisely as we can."""

    path: str
    key: str
    message: str
    line: Optional[int] = None
    column: Optional[int] = None

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(Exception):
    """Raised with every problem found; str() is one line per problem."""

    def __init__(self, problems: List[ConfigProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# ---------------------------------------------------------------- key locator

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def _norm_key(text: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in text.split("."))


class _KeyIndex:
    """Where each table header and `key =` line of a config text is, from one scan.

    A small scan of headers and `key =` lines: enough to point a person at the line for
    errors that the TOML parser itself does not report (wrong type, unknown key, ...).
    Built once per text, so locating thousands of problems stays linear (an index per
    lookup made 4,000 unknown sections take 25 s, on every reload too).
    """

    def __init__(self, text: str):
        self.keys: Dict[str, int] = {}  # full key path -> its first line
        self.headers: Dict[str, int] = {}  # table path -> its last header line
        table = ""
        counts: Dict[str, int] = {}
        for number, line in enumerate(text.splitlines(), 1):
            header = _HEADER_RE.match(line)
            if header:
                name = _norm_key(header.group(2))
                if header.group(1) == "[[":
                    counts[name] = counts.get(name, -1) + 1
                    table = f"{name}.#{counts[name]}"
                else:
                    table = name
                self.headers[table] = number
                continue
            key = _KEY_RE.match(line)
            if key:
                full = f"{table}.{_norm_key(key.group(1))}" if table else _norm_key(key.group(1))
                self.keys.setdefault(full, number)

    def locate(self, keypath: str) -> Optional[int]:
        want = re.sub(r"\[(\d+)\]", r".#\1", keypath)
        if want in self.keys:
            return self.keys[want]
        if want in self.headers:
            return self.headers[want]
        parts = want.split(".")
        for end in range(len(parts) - 1, 0, -1):  # an inline table holding the key
            line = self.keys.get(".".join(parts[:end]))
            if line is not None:
                return line
        return None


def locate(text: str, keypath: str) -> Optional[int]:
    """Line number (1-based) where `keypath` (e.g. "alerts.targets[1].url") is set."""
    return _KeyIndex(text).locate(keypath)


# Arrays and inline tables nested deeper than this are refused before the TOML parser sees
# them (it recurses per level: a 3,000-deep array raised RecursionError, on reload too).
MAX_NESTING = 32
_NEST_TOKEN_RE = re.compile(r'"""|\'\'\'|"|\'|#|\n|[\[\]{}]')
_BASIC_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_ML_BASIC_END_RE = re.compile(r'(?<!\\)(?:\\\\)*"""')


def _nesting_problem(text: str, path: str) -> Optional[ConfigProblem]:
    """A located problem when a value nests arrays/tables deeper than MAX_NESTING."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return None
    depth = 0
    pos = 0
    line_start = 0
    table = ""
    key = ""
    while True:
        match = _NEST_TOKEN_RE.search(text, pos)
        if match is None:
            return None
        token, pos = match.group(0), match.end()
        if token == "\n":
            line_start = pos
        elif token == "#":
            end = text.find("\n", pos)
            pos = len(text) if end < 0 else end
        elif token in ('"""', "'''"):
            if token == "'''":
                end = text.find(token, pos)
            else:
                found = _ML_BASIC_END_RE.search(text, pos)
                end = found.start() if found else -1
            if end < 0:
                return None  # unterminated: the TOML parser reports it
            pos = end + 3
        elif token == '"':
            found = _BASIC_RE.match(text, match.start())
            if found is None:
                return None
            pos = found.end()
        elif token == "'":
            end = text.find("'", pos)
            if end < 0:
                return None
            pos = end + 1
        elif token in "[{":
            if depth == 0 and token == "[" and not text[line_start:match.start()].strip():
                end = text.find("\n", pos)  # a [table] or [[array]] header: skip the line
                end = len(text) if end < 0 else end
                header = _HEADER_RE.match(text[line_start:end])
                table = _norm_key(header.group(2)) if header else table
                pos = end
                continue
            if depth == 0:
                found = _KEY_RE.match(text[line_start:match.start()] + "=")
                key = _norm_key(found.group(1)) if found else ""
            depth += 1
            if depth > MAX_NESTING:
                line = text.count("\n", 0, match.start()) + 1
                keypath = ".".join(p for p in (table, key) if p)
                return ConfigProblem(
                    path, keypath,
                    f"arrays or inline tables nested more than {MAX_NESTING} levels deep",
                    line, match.start() - line_start + 1,
                )
        else:  # "]" or "}"
            depth = max(0, depth - 1)


# ---------------------------------------------------------------- conversion


class _Collector:
    def __init__(self, path: str, text: str):
        self.path = path
        self.text = text
        self.problems: List[ConfigProblem] = []
        self._index: Optional[_KeyIndex] = None

    def add(self, key: str, message: str) -> None:
        if self._index is None:
            self._index = _KeyIndex(self.text)
        self.problems.append(ConfigProblem(self.path, key, message, self._index.locate(key)))


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


# Control characters (C0, DEL, C1), the line/paragraph separators and the bidi overrides:
# in a label they would be printed raw into alerts and logs (a fake second line, a
# terminal escape, text shown reversed).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_DAY_NAMES = {
    **{d: d for d in DAYS},
    **{
        full: full[:3]
        for full in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    },
}


def _check_text(value: str, what: str = "") -> str:
    """No NUL anywhere (no program, path or DSN can hold one; it would raise, not fail)."""
    if "\x00" in value:
        raise ValueError(f"{what}must not contain a NUL character (\\u0000)")
    return value


def _check_label(value: str, meta: Dict[str, Any]) -> str:
    """A name printed in alerts and logs: not empty, one printable line, bounded."""
    if not value.strip():
        raise ValueError(
            "must not be empty (leave the key out to use the host name)"
            if meta.get("optional_label")
            else "must not be empty: alerts and logs name it"
        )
    bad = _CONTROL_RE.search(value)
    if bad:
        raise ValueError(
            f"must not contain control characters (found {bad.group()!r}): "
            "it is printed into alerts and logs"
        )
    limit = meta.get("max_length")
    if limit and len(value) > limit:
        raise ValueError(f"must be at most {limit} characters, got {len(value)}")
    return value


def _bounded(value: float, meta: Dict[str, Any], show: Any, unit: str = "") -> None:
    """Refuse a number outside [low, high] from the field's metadata, saying why."""
    from watchdog.units import format_bytes

    def fmt(number: float) -> str:
        if unit == "duration":
            return _format_bound(number)
        if unit == "size":
            return format_bytes(number)
        return f"{number:g}"

    low = meta.get("low", meta.get("minimum"))
    high = meta.get("high", meta.get("maximum"))
    why_low = meta.get("why_low") or ""
    why_high = meta.get("why_high") or ""
    if meta.get("positive") and value <= 0:
        raise ValueError(f"must be more than 0{'s' if unit == 'duration' else ''}"
                         f"{' (' + why_low + ')' if why_low else ''}, got {show}")
    if low is not None and value < low:
        raise ValueError(
            f"must be at least {fmt(low)}{' (' + why_low + ')' if why_low else ''}, got {show}"
        )
    if high is not None and not value <= high:  # also catches NaN and inf
        raise ValueError(
            f"must be at most {fmt(high)}{' (' + why_high + ')' if why_high else ''}, got {show}"
        )


def _format_bound(seconds: float) -> str:
    """A bound as the config spells durations: 100ms, 1s, 5m, 7d."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{seconds * 1000:g}ms"


def _convert(kind: str, value: Any, meta: Dict[str, Any]) -> Any:
    """Turn one TOML value into its typed form; ValueError with a readable reason.

    Values are bounded to what works: a timeout of 0s fails every call, a `for` of a
    century overflows timers, a name with control characters forges lines in alerts.
    """
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_type_name(value)}")
        _check_text(value)
        if meta.get("label"):
            _check_label(value, meta)
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_type_name(value)}")
        if "minimum" in meta and value < meta["minimum"]:
            raise ValueError(f"must be at least {meta['minimum']}, got {value}")
        high = meta.get("maximum", _MAX_INT)
        if value > high:
            raise ValueError(f"must be at most {high}, got {value}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_type_name(value)}")
        return value
    if kind == "duration":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f'expected a duration string like "30s", got the number {value}')
        seconds = parse_duration(value)
        bounds = {"high": _MAX_DURATION, **{k: v for k, v in meta.items() if v is not None}}
        _bounded(seconds, bounds, repr(value), "duration")
        return seconds
    if kind == "size":
        size = parse_size(value)
        bounds = {"maximum": _MAX_SIZE, **meta}
        if "minimum" in meta:
            bounds["why_low"] = bounds.get("why_low") or "0 bytes would alert on any lag"
        _bounded(size, bounds, repr(value), "size")
        return size
    if kind == "choice":
        if not isinstance(value, str) or value not in meta["choices"]:
            raise ValueError(f"expected one of {', '.join(meta['choices'])}; got {value!r}")
        return value
    if kind in ("argv", "strlist", "days", "kinds"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected an array of strings, got {_type_name(value)}")
        for item in value:
            _check_text(item, f"{item!r}: ")
        if kind == "argv" and (not value or not value[0].strip()):
            raise ValueError("expected a non-empty array: the program and its arguments")
        if kind == "strlist" and not value and meta.get("empty"):
            raise ValueError(meta["empty"])
        if kind == "strlist" and any(not v.strip() for v in value):
            raise ValueError("must not hold an empty string (it would match nothing, or "
                             "everything unnamed)")
        if kind == "days":
            bad = [v for v in value if v.strip().lower() not in _DAY_NAMES]
            if bad:
                raise ValueError(
                    f"unknown day(s) {bad}; use {', '.join(DAYS)} (or full English names)"
                )
            if not value:
                raise ValueError("must name at least one day (an empty list never applies)")
            return tuple(_DAY_NAMES[v.strip().lower()] for v in value)
        if kind == "kinds":
            bad = [v for v in value if v not in ALERT_KINDS]
            if bad:
                raise ValueError(f"unknown severities {bad}; use {', '.join(ALERT_KINDS)}")
            if not value:
                raise ValueError(
                    "must name at least one severity: a target that receives nothing is a "
                    f"target that is never paged; use some of {', '.join(ALERT_KINDS)}"
                )
        return tuple(value)
    if kind == "clock":
        if isinstance(value, dtime):
            return value
        if isinstance(value, str) and re.match(r"^[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?$", value):
            hours, minutes, *rest = (int(x) for x in value.split(":"))
            seconds = rest[0] if rest else 0
            if hours < 24 and minutes < 60 and seconds < 60:
                return dtime(hours, minutes, seconds)
            if hours == 24 and minutes == 0 and seconds == 0:
                return dtime(23, 59, 59, 999999)
        hint = f" ({ASCII_ONLY})" if isinstance(value, str) and foreign_digits(value) else ""
        raise ValueError(f'expected a time of day like "01:30", got {value!r}{hint}')
    if kind == "listen":
        return parse_listen(value)
    if kind == "timezone":
        if not isinstance(value, str):
            raise ValueError(f"expected a time zone name, got {_type_name(value)}")
        _check_text(value)
        load_timezone(value)
        return value
    raise AssertionError(f"unknown kind {kind}")  # pragma: no cover


def parse_listen(value: Any) -> Tuple[str, int]:
    """`"127.0.0.1:9642"`, `"[::1]:9642"`, `"0.0.0.0:9642"`; `":9642"` or `"9642"` mean
    loopback: another address is used only when written out."""
    if not isinstance(value, str):
        raise ValueError(f'expected an address like "127.0.0.1:9642", got {_type_name(value)}')
    text = value.strip()
    bad = f'expected "host:port" like "127.0.0.1:9642" (or ":9642" for loopback), got {value!r}'
    if re.fullmatch(r"[0-9]{1,5}", text):  # ASCII only: int() would read "９６４２"
        host, port_text = "", text
    else:
        match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.\-]*)):([0-9]{1,5})$", text)
        if not match:
            raise ValueError(bad + (f" ({ASCII_ONLY})" if foreign_digits(text) else ""))
        host, port_text = match.group(1) or match.group(2) or "", match.group(3)
    host = host or "127.0.0.1"
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")
    return host, port


def _build(cls: type, data: Any, key: str, out: _Collector) -> Any:
    """Instantiate a section dataclass from a TOML table, recording every problem."""
    if not isinstance(data, dict):
        out.add(key, f"expected a table, got {_type_name(data)}")
        return cls() if not _required_fields(cls) else None
    fields = {(f.metadata.get("toml") or f.name): f for f in dataclasses.fields(cls)}
    values: Dict[str, Any] = {}
    for name, value in data.items():
        keypath = f"{key}.{name}" if key else name
        spec = fields.get(name)
        if spec is None:
            known = ", ".join(sorted(fields))
            out.add(keypath, f"unknown key {name!r} (known keys: {known})")
            continue
        kind = spec.metadata["kind"]
        try:
            if kind == "targets":
                values[spec.name] = _build_targets(value, keypath, out)
            else:
                values[spec.name] = _convert(kind, value, dict(spec.metadata))
        except ValueError as exc:
            out.add(keypath, str(exc))
        except (OverflowError, ArithmeticError):  # "<400 nines>" as a size or a duration
            out.add(keypath, f"value out of range: {_shorten(value)}")
    missing = [n for n in _required_fields(cls) if n not in values]
    given = {spec.name for name, spec in fields.items() if name in data}
    for name in missing:
        if name not in given:  # a given but invalid value has its own error already
            out.add(key, f"missing required key {name!r}")
    if missing:
        return None
    return cls(**values)


def _shorten(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _required_fields(cls: type) -> List[str]:
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("required")]


def _build_targets(value: Any, key: str, out: _Collector) -> Tuple[AlertTarget, ...]:
    if not isinstance(value, list):
        raise ValueError("expected an array of tables ([[alerts.targets]])")
    targets = []
    names = set()
    for index, item in enumerate(value):
        ikey = f"{key}[{index}]"
        target = _build(AlertTarget, item, ikey, out)
        if target is None:
            continue
        if bool(target.url) == bool(target.url_file):
            out.add(ikey, "set exactly one of 'url' or 'url_file'")
            continue
        if target.name in names:
            out.add(f"{ikey}.name", f"duplicate target name {target.name!r}")
        names.add(target.name)
        targets.append(target)
    return tuple(targets)


def _cross_checks(cfg: Config, out: _Collector) -> None:
    from watchdog.model import CHECK_NAMES

    if cfg.replay_lag.critical < cfg.replay_lag.warning:
        out.add("replay_lag.critical", "must not be smaller than replay_lag.warning")
    if cfg.replay_lag.critical_bytes < cfg.replay_lag.warning_bytes:
        out.add("replay_lag.critical_bytes", "must not be smaller than replay_lag.warning_bytes")
    if cfg.replay_lag.backup_critical < cfg.replay_lag.backup_warning:
        out.add("replay_lag.backup_critical", "must not be smaller than replay_lag.backup_warning")
    state_dir = cfg.daemon.state_dir
    if not state_dir.strip():
        out.add("daemon.state_dir", "must not be empty (the daemon keeps its state there)")
    elif os.path.exists(state_dir) and not os.path.isdir(state_dir):
        out.add("daemon.state_dir", f"{state_dir} exists and is not a directory")
    if cfg.canary.timeout > cfg.postgres.query_timeout:
        out.add("canary.timeout",
                f"must not be longer than [postgres] query_timeout "
                f"({cfg.postgres.query_timeout:g}s): the canary is the short one")
    for name in cfg.backup.checks:
        if name not in CHECK_NAMES:
            out.add("backup.checks", f"unknown check {name!r}; use {', '.join(CHECK_NAMES)}")
    for index, window in enumerate(cfg.backup_windows):
        for name in window.checks:
            if name not in CHECK_NAMES:
                out.add(
                    f"backup_windows[{index}].checks",
                    f"unknown check {name!r}; use {', '.join(CHECK_NAMES)}",
                )
        if window.start == window.end:
            out.add(f"backup_windows[{index}].end", "must differ from start")
    if cfg.metrics.textfile is not None and not cfg.metrics.textfile.endswith(".prom"):
        out.add(
            "metrics.textfile",
            "must end in .prom (node_exporter's textfile collector reads only *.prom)",
        )
    wanted = [k for k in ("listen", "textfile") if getattr(cfg.metrics, k) is not None]
    if wanted and not _installed("prometheus_client"):
        out.add(
            f"metrics.{wanted[0]}",
            "needs the prometheus-client package, which is not installed: "
            "pip install 'ha-watchdog[metrics]'",
        )


def _installed(module: str) -> bool:
    """Is `module` importable? (Looked up, not imported: --check-config stays fast.)"""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _permission_warnings(cfg: Config) -> Tuple[str, ...]:
    """Secrets must not be readable by group or others."""
    found = []
    paths = [("config file", cfg.source)] + [
        (f"url_file of target {t.name!r}", t.url_file) for t in cfg.alerts.targets if t.url_file
    ]
    for what, path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            found.append(
                f"{what} {path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
                "it may hold alert secrets: chmod 600 it"
            )
    return tuple(found)


def _usage_warnings(cfg: Config) -> Tuple[str, ...]:
    """Valid settings that will not do what their author probably wants."""
    found = []
    if cfg.digest.at is not None and not any("info" in t.severities for t in cfg.alerts.targets):
        found.append(
            "[digest] at is set but no [[alerts.targets]] receives \"info\": "
            "the daily message will go nowhere"
        )
    # The shipped unit (WatchdogSec=120) needs a completed cycle in every 60 s slot.
    cycle = cfg.drbd.timeout + max(
        cfg.services.timeout, cfg.postgres.connect_timeout + cfg.postgres.query_timeout
    )
    gap = cfg.daemon.interval + cycle
    if gap > _UNIT_WATCHDOG_SLOT:
        found.append(
            f"[daemon] interval ({format_duration(cfg.daemon.interval)}) plus the probes' "
            f"deadlines ({format_duration(cycle)}) let cycles complete up to "
            f"{format_duration(gap)} apart: the shipped systemd unit (WatchdogSec=120) kills "
            f"a daemon without a completed cycle for 60s; raise WatchdogSec in a drop-in to "
            f"at least {int(math.ceil(2 * (gap + 15)))}"
        )
    if cfg.canary.enabled and cfg.replay_lag.max_receive_age <= cfg.daemon.interval:
        found.append(
            f"[replay_lag] max_receive_age ({cfg.replay_lag.max_receive_age:g}s) is not longer "
            f"than [daemon] interval ({cfg.daemon.interval:g}s): the primary writes its canary "
            "once per interval, so on an idle pair the standby's canary ages past the limit "
            "between two writes; make max_receive_age longer than the interval"
        )
    textfile = cfg.metrics.textfile
    if textfile and not os.path.isdir(os.path.dirname(os.path.abspath(textfile))):
        found.append(
            f"[metrics] textfile: directory {os.path.dirname(os.path.abspath(textfile))} "
            "does not exist (yet); the file is written once it does"
        )
    return tuple(found)


def _target_url(target: AlertTarget) -> str:
    """A target's URL text ("" when unknown; an unreadable url_file is reported where the
    URL is used)."""
    if not target.url_file:
        return (target.url or "").strip()
    # Non-blocking open and regular files only: a FIFO or a device never stalls a load.
    try:
        fd = os.open(target.url_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, 4096).decode("utf-8", errors="replace").strip()
    except OSError:
        return ""
    finally:
        os.close(fd)


def pagerduty_warnings(cfg: Config) -> Tuple[str, ...]:
    """PagerDuty targets whose incidents would never resolve.

    Only `?action=map` makes a RECOVERY resolve the incident its PROBLEM opened: without
    it (or with `action=trigger`) every message is a new trigger, the recovery included.
    The same on every apprise (1.9.x through alerts.pagerduty_compat).
    """
    from watchdog.alerts.pagerduty_compat import url_options

    found = []
    for target in cfg.alerts.targets:
        url = _target_url(target)
        if url.split("://", 1)[0].lower() != "pagerduty" or "://" not in url:
            continue
        try:
            action = url_options(url)["action"]
        except ValueError as exc:
            found.append(f"target {target.name!r}: {exc}: every send to it will fail")
            continue
        if action in (None, "trigger"):
            found.append(
                f"target {target.name!r} is PagerDuty without ?action=map: each message, "
                "RECOVERY included, raises a new trigger and no incident ever resolves; "
                "add ?action=map to its URL (pagerduty://IntegrationKey@ApiKey?action=map)"
            )
    return tuple(found)


# ---------------------------------------------------------------- entry points


def parse_config(text: str, path: str = "<string>") -> Config:
    """Validate TOML text; ConfigError listing every problem."""
    out = _Collector(path, text)
    deep = _nesting_problem(text, path)
    if deep is not None:
        raise ConfigError([deep])
    try:
        data = tomllib.loads(text)
    except RecursionError:  # a nesting the scan above did not see
        raise ConfigError([ConfigProblem(path, "", "nested too deeply to read")]) from None
    except tomllib.TOMLDecodeError as exc:
        line, column = _toml_position(exc)
        if line is None and "end of document" in str(exc):
            line = text.count("\n") + 1
            column = len(text.rsplit("\n", 1)[-1]) + 1
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        raise ConfigError(
            [ConfigProblem(path, "", f"TOML syntax error: {message}", line, column)]
        ) from None
    return _from_dict(data, path, out)


def _toml_position(exc: Exception) -> Tuple[Optional[int], Optional[int]]:
    line = getattr(exc, "lineno", None)
    column = getattr(exc, "colno", None)
    if line is None:
        match = re.search(r"line (\d+), column (\d+)", str(exc))
        if match:
            line, column = int(match.group(1)), int(match.group(2))
    return line, column


def _from_dict(data: Dict[str, Any], path: str, out: _Collector) -> Config:
    values: Dict[str, Any] = {}
    for name, value in data.items():
        if name in _SECTIONS:
            built = _build(_SECTIONS[name], value, name, out)
            if built is not None:
                values[name] = built
        elif name == "backup_windows":
            if not isinstance(value, list):
                out.add(name, "expected an array of tables ([[backup_windows]])")
                continue
            windows = []
            for index, item in enumerate(value):
                window = _build(BackupWindow, item, f"{name}[{index}]", out)
                if window is not None:
                    windows.append(window)
            values[name] = tuple(windows)
        else:
            known = ", ".join(sorted(list(_SECTIONS) + ["backup_windows"]))
            out.add(name, f"unknown section {name!r} (known sections: {known})")
    cfg = Config(**values, source=path)
    _cross_checks(cfg, out)
    if out.problems:
        raise ConfigError(out.problems)
    warnings = _permission_warnings(cfg) + _usage_warnings(cfg) + pagerduty_warnings(cfg)
    return dataclasses.replace(cfg, warnings=warnings)


def load_config(path: str = DEFAULT_PATH) -> Config:
    """Read and validate a config file; ConfigError (never a traceback) otherwise."""
    try:
        raw = read_bounded(path, CONFIG_LIMIT)  # a FIFO or /dev/zero is refused, not read
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(path, "", "config file not found")]) from None
    except PermissionError:
        raise ConfigError([ConfigProblem(path, "", "config file not readable (permission denied)")]) from None
    except Unreadable as exc:
        raise ConfigError([ConfigProblem(path, "", f"config file {exc.strerror}")]) from None
    except OSError as exc:
        raise ConfigError([ConfigProblem(path, "", f"cannot read config file: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem(path, "", "not valid UTF-8", line)]) from None
    return parse_config(text, path)


def load_timezone(name: str) -> Any:
    """A tzinfo for an IANA name; ValueError (not a traceback) when unknown."""
    if sys.version_info >= (3, 9):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    else:  # Python 3.8: the backport, a dependency there
        from backports.zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like \"Europe/Berlin\")") from None


def effective_unknown_for(section: Any) -> float:
    """`unknown_for` defaults to the check's own `for`."""
    return section.unknown_for if section.unknown_for is not None else section.for_
