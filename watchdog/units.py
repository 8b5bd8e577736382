"""Human durations ("500ms", "30s", "5m", "1h") and sizes ("16MB") for the config file."""

from __future__ import annotations

import math
import re

# ASCII digits only: `\d`, int() and float() also accept other scripts' digits ("３０s").
_DURATION_RE = re.compile(r"^[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*(ms|s|m|h|d)[ \t]*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_SIZE_RE = re.compile(
    r"^[ \t]*([0-9]+(?:\.[0-9]+)?)[ \t]*(B|kB|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?[ \t]*$"
)
# Far above any sane size (1 EiB): keeps int() of a float from overflowing.
_SIZE_CEILING = float(1 << 60)
# Like PostgreSQL's own settings, kB/MB/GB are powers of 1024.
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "kB": 1024,
    "KB": 1024,
    "KiB": 1024,
    "MB": 1024**2,
    "MiB": 1024**2,
    "GB": 1024**3,
    "GiB": 1024**3,
    "TB": 1024**4,
    "TiB": 1024**4,
}


def foreign_digits(text: str) -> bool:
    """Does `text` hold digits of another script ("３０")? int() and float() take them."""
    return any(ch.isdigit() and not ch.isascii() for ch in text)


ASCII_ONLY = "only ASCII digits 0-9 are read as numbers"


def parse_duration(text: str) -> float:
    """Seconds in a duration string; ValueError with a readable reason otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string like \"30s\", got {text!r}")
    match = _DURATION_RE.match(text)
    if not match and foreign_digits(text):
        raise ValueError(f"bad duration {text!r}: {ASCII_ONLY}")
    if not match:
        raise ValueError(
            f"bad duration {text!r}: use a number and a unit, e.g. \"500ms\", \"30s\", \"5m\", \"1h\""
        )
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"duration {text[:40]!r} is far too long")
    return seconds


def parse_size(text: str | int) -> int:
    """Bytes in a size string ("16MB", "1GB", "8192"); ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size like \"16MB\", got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative, got {text}")
        return text
    if not isinstance(text, str):
        raise ValueError(f"expected a size like \"16MB\", got {text!r}")
    match = _SIZE_RE.match(text)
    if not match and foreign_digits(text):
        raise ValueError(f"bad size {text!r}: {ASCII_ONLY}")
    if not match:
        raise ValueError(f"bad size {text!r}: use a number and a unit, e.g. \"16MB\", \"1GB\"")
    value = float(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if not math.isfinite(value) or value > _SIZE_CEILING:
        raise ValueError(f"size {text[:40]!r} is far too large")
    return int(value)


def format_duration(seconds: float) -> str:
    """Short human form for messages: 0.4s, 12s, 3m20s, 2h05m, 1d03h."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_bytes(count: float) -> str:
    """Short human form: 512 B, 3.2 MiB."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover
