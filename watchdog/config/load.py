"""Load and validate the TOML configuration.

Every error names the file, the key path and the line, and validation collects all errors
instead of stopping at the first, so `--check-config` can list them in one run. The schema
is declared once, on the section dataclasses (field metadata), and drives both validation
and the defaults; `config.example.toml` documents the same keys. The checks' sections come
from the check registry (watchdog.checks.registry).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import stat
import sys
from typing import Any, Dict, List, Optional, Tuple

from watchdog.config.convert import _convert, _type_name
from watchdog.config.errors import ConfigError, ConfigProblem, _Collector, _nesting_problem
from watchdog.config.schema import _UNIT_WATCHDOG_SLOT
from watchdog.config.sections import _BASE_SECTIONS, AlertTarget, BackupWindow, Config
from watchdog.statefile import Unreadable, read_bounded
from watchdog.units import (
    format_duration,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.8-3.10
    import tomli as tomllib

DEFAULT_PATH = "/etc/ha-watchdog/config.toml"
# A real config is a few KiB; anything beyond this is refused unread.
CONFIG_LIMIT = 1024 * 1024

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
    built = cls(**values)
    # A section may say which of its values parse but cannot work together (a check's
    # own rules, declared next to its keys): `problems()` -> [(key, reason)].
    problems = getattr(built, "problems", None)
    if callable(problems):
        for name, reason in problems():
            out.add(f"{key}.{name}" if key else name, reason)
    return built


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


def all_sections() -> Dict[str, type]:
    """Every TOML table (but [[backup_windows]]): the base sections and each registered
    check's (imported late: the registry imports the check modules, which import config)."""
    from watchdog.checks.registry import sections

    return {**_BASE_SECTIONS, **sections()}


def _cross_checks(cfg: Config, out: _Collector) -> None:
    from watchdog.checks.registry import names

    known = names()
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
        if name not in known:
            out.add("backup.checks", f"unknown check {name!r}; use {', '.join(known)}")
    for index, window in enumerate(cfg.backup_windows):
        for name in window.checks:
            if name not in known:
                out.add(
                    f"backup_windows[{index}].checks",
                    f"unknown check {name!r}; use {', '.join(known)}",
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


# A warning before it is located: (key path, or "" for the whole file; message).
Warning = Tuple[str, str]


def _permission_warnings(cfg: Config) -> List[Warning]:
    """Secrets must not be readable by group or others."""
    found = []
    paths = [("", "config file", cfg.source)] + [
        (f"alerts.targets[{i}].url_file", f"url_file of target {t.name!r}", t.url_file)
        for i, t in enumerate(cfg.alerts.targets) if t.url_file
    ]
    for key, what, path in paths:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            found.append((key,
                f"{what} {path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
                "it may hold alert secrets: chmod 600 it"
            ))
    return found


def _usage_warnings(cfg: Config) -> List[Warning]:
    """Valid settings that will not do what their author probably wants."""
    found = []
    if cfg.digest.at is not None and not any("info" in t.severities for t in cfg.alerts.targets):
        found.append(("digest.at",
            "is set but no [[alerts.targets]] receives \"info\": "
            "the daily message will go nowhere"
        ))
    # The shipped unit (WatchdogSec=120) needs a completed cycle in every 60 s slot.
    cycle = cfg.drbd.timeout + max(
        cfg.services.timeout, cfg.postgres.connect_timeout + cfg.postgres.query_timeout
    )
    gap = cfg.daemon.interval + cycle
    if gap > _UNIT_WATCHDOG_SLOT:
        found.append(("daemon.interval",
            f"{format_duration(cfg.daemon.interval)} plus the probes' "
            f"deadlines ({format_duration(cycle)}) let cycles complete up to "
            f"{format_duration(gap)} apart: the shipped systemd unit (WatchdogSec=120) kills "
            f"a daemon without a completed cycle for 60s; raise WatchdogSec in a drop-in to "
            f"at least {int(math.ceil(2 * (gap + 15)))}"
        ))
    if cfg.canary.enabled and cfg.replay_lag.max_receive_age <= cfg.daemon.interval:
        found.append(("replay_lag.max_receive_age",
            f"{cfg.replay_lag.max_receive_age:g}s is not longer "
            f"than [daemon] interval ({cfg.daemon.interval:g}s): the primary writes its canary "
            "once per interval, so on an idle pair the standby's canary ages past the limit "
            "between two writes; make max_receive_age longer than the interval"
        ))
    textfile = cfg.metrics.textfile
    if textfile and not os.path.isdir(os.path.dirname(os.path.abspath(textfile))):
        found.append(("metrics.textfile",
            f"directory {os.path.dirname(os.path.abspath(textfile))} "
            "does not exist (yet); the file is written once it does"
        ))
    return found


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
    """PagerDuty targets whose incidents would never resolve (see `_pagerduty_warnings`),
    as text (preflight and tools call it without a config text to locate keys in)."""
    return tuple(message for _, message in _pagerduty_warnings(cfg))


def _pagerduty_warnings(cfg: Config) -> List[Warning]:
    """PagerDuty targets whose incidents would never resolve.

    Only `?action=map` makes a RECOVERY resolve the incident its PROBLEM opened: without
    it (or with `action=trigger`) every message is a new trigger, the recovery included.
    The same on every apprise (1.9.x through alerts.pagerduty_compat).
    """
    from watchdog.alerts.pagerduty_compat import url_options

    found = []
    for index, target in enumerate(cfg.alerts.targets):
        key = f"alerts.targets[{index}].{'url_file' if target.url_file else 'url'}"
        url = _target_url(target)
        if url.split("://", 1)[0].lower() != "pagerduty" or "://" not in url:
            continue
        try:
            action = url_options(url)["action"]
        except ValueError as exc:
            found.append((key, f"target {target.name!r}: {exc}: every send to it will fail"))
            continue
        if action in (None, "trigger"):
            found.append((key,
                f"target {target.name!r} is PagerDuty without ?action=map: each message, "
                "RECOVERY included, raises a new trigger and no incident ever resolves; "
                "add ?action=map to its URL (pagerduty://IntegrationKey@ApiKey?action=map)"
            ))
    return found


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
    extra: Dict[str, Any] = {}
    known_sections = all_sections()
    fields = {f.name for f in dataclasses.fields(Config)}
    for name, value in data.items():
        if name in known_sections:
            built = _build(known_sections[name], value, name, out)
            if built is not None:
                (values if name in fields else extra)[name] = built
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
            known = ", ".join(sorted(list(known_sections) + ["backup_windows"]))
            out.add(name, f"unknown section {name!r} (known sections: {known})")
    cfg = Config(**values, source=path, extra_checks=extra)
    _cross_checks(cfg, out)
    if out.problems:
        raise ConfigError(out.problems)
    # Located like errors ("file:line: [key] message"), so a person finds what to change.
    found = _permission_warnings(cfg) + _usage_warnings(cfg) + _pagerduty_warnings(cfg)
    warnings = tuple(str(out.problem(key, message)) for key, message in found)
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
