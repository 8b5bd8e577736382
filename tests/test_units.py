"""Durations and sizes, as written in the config file and shown in messages."""

from __future__ import annotations

import pytest

from watchdog.units import format_bytes, format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    "text,seconds",
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (" 1.5s ", 1.5)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "5 minutes", "-1s", "1w", "s"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text,size",
    [("16MB", 16 << 20), ("1GB", 1 << 30), ("8192", 8192), (8192, 8192), ("16kB", 16384), ("2MiB", 2 << 20)],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "16 XB", "lots", True, -1, 1.5])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_formatting():
    assert format_duration(0.42) == "0.4s"
    assert format_duration(75) == "1m15s"
    assert format_duration(7500) == "2h05m"
    assert format_duration(90000) == "1d01h"
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 1024 * 1024) == "3.0 MiB"
