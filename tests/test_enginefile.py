"""watchdog.enginefile: engine.json's load and writes, and what the daemon is told about them."""

from __future__ import annotations

import json

from watchdog.core.state import EngineState
from watchdog.enginefile import STATE_WRITE_NOTIFY_AFTER, EngineFile

T = 1717416000.0  # 2024-06-03 12:00:00 UTC


def test_absent_and_sound_files_load_without_a_notice(tmp_path):
    keeper = EngineFile(str(tmp_path / "engine.json"), lambda: T)
    assert keeper.load(EngineState) is None and keeper.notices == []
    assert keeper.save(EngineState().to_json(), T, "mail1", str(tmp_path)) == []
    assert isinstance(keeper.load(EngineState), EngineState) and keeper.notices == []


def test_a_damaged_file_is_salvaged_and_the_loss_becomes_a_notice(tmp_path):
    path = tmp_path / "engine.json"
    data = EngineState().to_json()
    data["checks"] = {"services": ["not", "an", "object"]}
    path.write_text(json.dumps(data))
    keeper = EngineFile(str(path), lambda: T)
    assert isinstance(keeper.load(EngineState), EngineState)
    ((subject, lines),) = keeper.notices
    assert subject == "its alert state was damaged"
    assert lines[:2] == [f"State file {path} was damaged.", "Lost: the state of check 'services'."]
    # Unparseable: the whole state is lost, and the file moved aside says so.
    path.write_text("{not json")
    keeper = EngineFile(str(path), lambda: T)
    assert keeper.load(EngineState) is None
    ((subject, lines),) = keeper.notices
    assert "Lost: the whole state." in lines


def test_a_failing_write_is_counted_at_once_told_after_some_cycles_and_its_end_too(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    keeper = EngineFile(str(blocker / "engine.json"), lambda: T)
    told = []
    for i in range(STATE_WRITE_NOTIFY_AFTER + 2):
        told.append(keeper.save({"version": 2}, T + i, "mail1", str(blocker)))
    assert keeper.failures == STATE_WRITE_NOTIFY_AFTER + 2
    assert [len(t) for t in told] == [0] * (STATE_WRITE_NOTIFY_AFTER - 1) + [1, 0, 0]
    (problem,) = told[STATE_WRITE_NOTIFY_AFTER - 1]
    assert (problem.kind, problem.severity) == ("problem", "warning")
    assert "it cannot save its state" in problem.body
    assert f"({STATE_WRITE_NOTIFY_AFTER} cycles in a row)" in problem.body
    blocker.unlink()
    (recovery,) = keeper.save({"version": 2}, T + 60, "mail1", str(blocker))
    assert recovery.kind == "recovery" and "State saved again to" in recovery.body
    assert json.loads((blocker / "engine.json").read_text()) == {"version": 2}
    assert keeper.save({"version": 2}, T + 70, "mail1", str(blocker)) == []  # told once
    assert keeper.failures == STATE_WRITE_NOTIFY_AFTER + 2  # a count since start


def test_the_last_write_at_exit_never_raises(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("x")
    EngineFile(str(blocker / "engine.json"), lambda: T).save_at_exit({"version": 2})
