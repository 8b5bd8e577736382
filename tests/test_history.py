"""The sent history behind `ha-watchdog status` (watchdog.alerts.history): bounded, readable
by the state directory's group, never fatal."""

from __future__ import annotations

import os
import stat

from watchdog.alerts.history import KEEP, SentHistory, read_history


def test_history_is_bounded_and_survives_a_restart(tmp_path):
    history = SentHistory(str(tmp_path), keep=5)
    for i in range(12):
        history.record({"at": float(i), "target": "hook", "headline": f"n{i}"})
    again = SentHistory(str(tmp_path), keep=5)
    again.record({"at": 12.0, "target": "hook", "headline": "n12"})
    entries = read_history(again.path)
    assert [e["headline"] for e in entries] == ["n8", "n9", "n10", "n11", "n12"]
    assert stat.S_IMODE(os.stat(again.path).st_mode) == 0o640
    assert KEEP == 50


def test_a_damaged_or_unwritable_history_costs_nothing(tmp_path, caplog):
    path = tmp_path / "sent.json"
    path.write_text("{oops")
    assert read_history(str(path)) == []
    history = SentHistory(str(tmp_path / "missing" / "deeper"))
    os.makedirs(tmp_path / "missing")
    (tmp_path / "missing" / "deeper").write_text("a file where the directory should be")
    history.record({"at": 1.0})  # does not raise
    history.record({"at": 2.0})
    assert sum("could not record the sent history" in r.message for r in caplog.records) == 1
