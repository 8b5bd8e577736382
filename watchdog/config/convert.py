"""One TOML value to its typed, bounded form (a ValueError says why, readably)."""

from __future__ import annotations

import re
from datetime import time as dtime
from typing import Any, Dict, Tuple

from watchdog.config.schema import _MAX_DURATION, _MAX_INT, _MAX_SIZE, ALERT_KINDS, DAYS
from watchdog.units import (
    ASCII_ONLY,
    foreign_digits,
    parse_duration,
    parse_size,
)


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
    if kind == "custom":
        # A check's own value type: the field's `parse` turns the TOML value into it
        # (ValueError with the reason, located like every other key).
        return meta["parse"](value)
    if kind == "timezone":
        if not isinstance(value, str):
            raise ValueError(f"expected a time zone name, got {_type_name(value)}")
        _check_text(value)
        from watchdog.config.load import load_timezone

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


