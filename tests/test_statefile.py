"""Atomic JSON state files (engine state, outbox)."""

from __future__ import annotations

import logging
import os

from watchdog.statefile import MAX_DEPTH, Unreadable, load_json, read_bounded, read_json, write_json


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


# ---------------------------------------------------------------- damaged state (issue 11)


def in_thread(fn, timeout=10.0):
    """Run `fn` in a daemon thread: (finished, result). A hang (a FIFO opened blocking)
    shows as finished=False instead of hanging the test run."""
    import threading

    box = []
    thread = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(box), (box[0] if box else None)


def test_a_fifo_in_place_of_a_state_file_is_moved_aside_not_waited_on(tmp_path, caplog):
    path = tmp_path / "engine.json"
    os.mkfifo(path)
    with caplog.at_level(logging.ERROR):
        finished, loaded = in_thread(lambda: load_json(str(path), clock=lambda: 7))
    assert finished, "reading a FIFO blocked"
    assert loaded.data is None and "is a FIFO, not a regular file" in loaded.problem
    assert not path.exists() and (tmp_path / "engine.json.corrupt-7").exists()
    assert "FIFO" in caplog.text


def test_a_directory_in_place_of_a_state_file_is_moved_aside(tmp_path):
    path = tmp_path / "engine.json"
    (path / "inner").mkdir(parents=True)
    loaded = load_json(str(path), clock=lambda: 8)
    assert loaded.data is None and "is a directory" in loaded.problem
    write_json(str(path), {"n": 1})  # and the next write works again
    assert read_json(str(path)) == {"n": 1}
    assert (tmp_path / "engine.json.corrupt-8" / "inner").is_dir()


def test_state_nested_200000_deep_is_corrupt_not_a_recursion_error(tmp_path):
    path = tmp_path / "engine.json"
    path.write_text("[" * 200_000 + "]" * 200_000)
    loaded = load_json(str(path), clock=lambda: 9)
    assert loaded.data is None and "nested too deeply" in loaded.problem
    # Deep enough to hurt later code but within the C parser's limit: refused too.
    path.write_text("[" * 500 + "]" * 500)
    assert "nested too deeply" in load_json(str(path)).problem
    path.write_text("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert load_json(str(path)).problem is None


def test_reads_are_bounded_and_refuse_devices_and_symlinks(tmp_path):
    finished, error = in_thread(lambda: _error(lambda: read_bounded("/dev/zero", 1024)))
    assert finished and isinstance(error, Unreadable)
    assert error.strerror == "is a character device, not a regular file"
    big = tmp_path / "big"
    with open(big, "wb") as handle:
        handle.truncate(1025)  # sparse: costs no disk
    error = _error(lambda: read_bounded(str(big), 1024))
    assert isinstance(error, Unreadable) and "too large (1025 bytes" in error.strerror
    assert read_bounded(str(big), 1025) == b"\0" * 1025
    link = tmp_path / "link"
    link.symlink_to(big)
    assert read_bounded(str(link), 2048) == b"\0" * 1025
    error = _error(lambda: read_bounded(str(link), 2048, follow_symlinks=False))
    assert isinstance(error, Unreadable) and "symbolic link" in error.strerror


def _error(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the test looks at what was raised
        return exc
    return None
