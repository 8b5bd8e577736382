"""Atomic JSON state files (engine state, outbox)."""

from __future__ import annotations

import logging
import os

from watchdog.statefile import read_json, write_json


def test_round_trip_is_private_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "engine.json"
    write_json(str(path), {"checks": {"drbd": "ok"}, "n": 1})
    write_json(str(path), {"checks": {"drbd": "critical"}, "n": 2})
    assert read_json(str(path)) == {"checks": {"drbd": "critical"}, "n": 2}
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(path.parent)) == ["engine.json"]


def test_missing_file_is_none(tmp_path):
    assert read_json(str(tmp_path / "absent.json")) is None


def test_corrupt_file_is_moved_aside_and_logged(tmp_path, caplog):
    path = tmp_path / "engine.json"
    path.write_text('{"checks": {"drbd": ')  # a torn write by something else
    with caplog.at_level(logging.ERROR):
        assert read_json(str(path), clock=lambda: 1234) is None
    assert not path.exists()
    assert (tmp_path / "engine.json.corrupt-1234").exists()
    assert "corrupt" in caplog.text and "engine.json" in caplog.text
