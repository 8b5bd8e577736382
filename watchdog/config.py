"""Load and validate the TOML configuration.

Every error names the file, the key path and the line, and validation collects all errors
instead of stopping at the first, so `--check-config` can list them in one run. The schema
is declared once, on the dataclasses below (field metadata), and drives both validation and
the defaults; `config.example.toml` documents the same keys.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import socket
import stat
import sys
from dataclasses import dataclass, field
from datetime import time as dtime
from typing import Any, Dict, List, Optional, Tuple

from watchdog.statefile import Unreadable, read_bounded
from watchdog.units import parse_duration, parse_size

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


# The keys every check table accepts (decision core, see watchdog.core.debounce); each
# section declares them with its own defaults.


def _for(default: str) -> Any:
    return _f("duration", parse_duration(default), toml="for")


def _recover_for(default: str) -> Any:
    return _f("duration", parse_duration(default))


def _unknown_as(default: str) -> Any:
    return _f("choice", default, choices=SEVERITIES)


def _unknown_for(default: Optional[str] = None) -> Any:
    """None: the check's own `for` (see effective_unknown_for)."""
    return _f("duration", parse_duration(default) if default else None, optional=True)


# ---------------------------------------------------------------- sections


@dataclass(frozen=True)
class NodeConfig:
    name: str = _f("str", "")


@dataclass(frozen=True)
class DaemonConfig:
    interval: float = _f("duration", 30.0)
    state_dir: str = _f("str", "/var/lib/ha-watchdog")
    log_level: str = _f("choice", "info", choices=("debug", "info", "warning", "error"))
    flap_changes: int = _f("int", 4, minimum=2)
    flap_window: float = _f("duration", 1800.0)


@dataclass(frozen=True)
class DrbdConfig:
    format: str = _f(
        "choice", "auto", choices=("auto", "proc", "drbd-overview", "drbdadm-status", "drbdsetup-json")
    )
    path: str = _f("str", "/proc/drbd")
    command: Optional[Tuple[str, ...]] = _f("argv", None, optional=True)
    resources: Optional[Tuple[str, ...]] = _f("strlist", None, optional=True)
    timeout: float = _f("duration", 5.0)
    for_: float = _for("30s")
    recover_for: float = _recover_for("30s")
    unknown_as: str = _unknown_as("critical")
    unknown_for: Optional[float] = _unknown_for()


@dataclass(frozen=True)
class ServicesConfig:
    command: Tuple[str, ...] = _f("argv", ("service", "greenarrow", "status"))
    expected_down: Tuple[str, ...] = _f("strlist", ("hvmail-qmail-smtpd3", "hvmail-dnscache"))
    timeout: float = _f("duration", 10.0)
    min_uptime: float = _f("duration", 4.0)
    for_: float = _for("1m")
    recover_for: float = _recover_for("30s")
    unknown_as: str = _unknown_as("warning")
    unknown_for: Optional[float] = _unknown_for()


@dataclass(frozen=True)
class PostgresConfig:
    dsn: str = _f("str", "")
    connect_timeout: float = _f("duration", 3.0)
    query_timeout: float = _f("duration", 5.0)


@dataclass(frozen=True)
class PostgresRoleConfig:
    for_: float = _for("30s")
    recover_for: float = _recover_for("30s")
    unknown_as: str = _unknown_as("critical")
    unknown_for: Optional[float] = _unknown_for()


@dataclass(frozen=True)
class StandbysConfig:
    min_streaming: int = _f("int", 1, minimum=0)
    max_reply_age: float = _f("duration", 15.0)
    warning_bytes: int = _f("size", 64 * 1024**2)
    for_: float = _for("0s")
    recover_for: float = _recover_for("30s")
    unknown_as: str = _unknown_as("warning")
    # PostgreSQL unreachable already pages through postgres_role: give that a head start.
    unknown_for: Optional[float] = _unknown_for("2m")


@dataclass(frozen=True)
class ReplayLagConfig:
    warning: float = _f("duration", 60.0)
    critical: float = _f("duration", 300.0)
    warning_bytes: int = _f("size", 64 * 1024**2)
    critical_bytes: int = _f("size", 1024**3)
    max_receive_age: float = _f("duration", 45.0)
    backup_warning: float = _f("duration", 7200.0)
    backup_critical: float = _f("duration", 6 * 3600.0)
    for_: float = _for("2m")
    recover_for: float = _recover_for("1m")
    unknown_as: str = _unknown_as("warning")
    unknown_for: Optional[float] = _unknown_for()


@dataclass(frozen=True)
class BackupConfig:
    detect: bool = _f("bool", True)
    max_duration: float = _f("duration", 8 * 3600.0)
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
    name: str = _f("str", "", required=True)
    url: Optional[str] = _f("str", None, optional=True, secret=True)
    url_file: Optional[str] = _f("str", None, optional=True)
    severities: Tuple[str, ...] = _f("kinds", ALERT_KINDS)


@dataclass(frozen=True)
class AlertsConfig:
    renotify: float = _f("duration", 4 * 3600.0)
    expire: float = _f("duration", 24 * 3600.0)
    retries: int = _f("int", 3, minimum=0)
    retry_max_wait: float = _f("duration", 30.0)
    send_timeout: float = _f("duration", 30.0)
    targets: Tuple[AlertTarget, ...] = _f("targets", ())


@dataclass(frozen=True)
class HeartbeatConfig:
    url: Optional[str] = _f("str", None, optional=True, secret=True)
    timeout: float = _f("duration", 10.0)


@dataclass(frozen=True)
class MetricsConfig:
    # Empty: off. "host:port"; a bare ":port" or "port" listens on loopback only.
    listen: Optional[Tuple[str, int]] = _f("listen", None, optional=True)
    textfile: Optional[str] = _f("str", None, optional=True)


@dataclass(frozen=True)
class MaintenanceConfig:
    max_duration: float = _f("duration", 8 * 3600.0)


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


def _convert(kind: str, value: Any, meta: Dict[str, Any]) -> Any:
    """Turn one TOML value into its typed form; ValueError with a readable reason."""
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {_type_name(value)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_type_name(value)}")
        if "minimum" in meta and value < meta["minimum"]:
            raise ValueError(f"must be at least {meta['minimum']}, got {value}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_type_name(value)}")
        return value
    if kind == "duration":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise ValueError(f'expected a duration string like "30s", got the number {value}')
        return parse_duration(value)
    if kind == "size":
        return parse_size(value)
    if kind == "choice":
        if not isinstance(value, str) or value not in meta["choices"]:
            raise ValueError(f"expected one of {', '.join(meta['choices'])}; got {value!r}")
        return value
    if kind in ("argv", "strlist", "days", "kinds"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected an array of strings, got {_type_name(value)}")
        if kind == "argv" and not value:
            raise ValueError("expected a non-empty array: the program and its arguments")
        if kind == "days":
            bad = [v for v in value if v.lower()[:3] not in DAYS]
            if bad:
                raise ValueError(f"unknown day(s) {bad}; use {', '.join(DAYS)}")
            return tuple(v.lower()[:3] for v in value)
        if kind == "kinds":
            bad = [v for v in value if v not in ALERT_KINDS]
            if bad:
                raise ValueError(f"unknown severities {bad}; use {', '.join(ALERT_KINDS)}")
        return tuple(value)
    if kind == "clock":
        if isinstance(value, dtime):
            return value
        if isinstance(value, str) and re.match(r"^\d{1,2}:\d{2}(:\d{2})?$", value):
            hours, minutes, *rest = (int(x) for x in value.split(":"))
            seconds = rest[0] if rest else 0
            if hours < 24 and minutes < 60 and seconds < 60:
                return dtime(hours, minutes, seconds)
            if hours == 24 and minutes == 0 and seconds == 0:
                return dtime(23, 59, 59, 999999)
        raise ValueError(f'expected a time of day like "01:30", got {value!r}')
    if kind == "listen":
        return parse_listen(value)
    if kind == "timezone":
        if not isinstance(value, str):
            raise ValueError(f"expected a time zone name, got {_type_name(value)}")
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
    if text.isdigit():
        host, port_text = "", text
    else:
        match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.\-]*)):(\d+)$", text)
        if not match:
            raise ValueError(bad)
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
    for name in missing:
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
    if cfg.daemon.interval <= 0:
        out.add("daemon.interval", "must be more than 0s")
    state_dir = cfg.daemon.state_dir
    if not state_dir.strip():
        out.add("daemon.state_dir", "must not be empty (the daemon keeps its state there)")
    elif os.path.exists(state_dir) and not os.path.isdir(state_dir):
        out.add("daemon.state_dir", f"{state_dir} exists and is not a directory")
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
    if cfg.maintenance.max_duration <= 0:
        out.add("maintenance.max_duration", "must be more than 0s")
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
    textfile = cfg.metrics.textfile
    if textfile and not os.path.isdir(os.path.dirname(os.path.abspath(textfile))):
        found.append(
            f"[metrics] textfile: directory {os.path.dirname(os.path.abspath(textfile))} "
            "does not exist (yet); the file is written once it does"
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
    return dataclasses.replace(cfg, warnings=_permission_warnings(cfg) + _usage_warnings(cfg))


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
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name like \"Europe/Berlin\")") from None


def effective_unknown_for(section: Any) -> float:
    """`unknown_for` defaults to the check's own `for`."""
    return section.unknown_for if section.unknown_for is not None else section.for_
