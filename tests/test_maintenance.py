"""Maintenance requests: the pure model (watchdog.core.maintenance) and the request file and
commands (watchdog.maintenance). The daemon end to end is in test_daemon.py."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from watchdog.config import Config, DaemonConfig, MaintenanceConfig
from watchdog.core import maintenance as core
from watchdog.maintenance import (
    EXIT_NOT_APPLIED,
    EXIT_OK,
    EXIT_REFUSED,
    RequestWatcher,
    command_off,
    command_on,
    command_status,
    read_request,
    request_path,
    who,
    write_request,
)

T0 = 1_800_000_000.0
HOUR = 3600.0


# ---------------------------------------------------------------- the model


def test_request_is_bounded_and_capped():
    m = core.request("id1", "failover\ttest\n", "alice", T0, 2 * HOUR, 8 * HOUR)
    assert (m.reason, m.by, m.started, m.until) == ("failover test", "alice", T0, T0 + 2 * HOUR)
    assert m.active(T0) and m.active(T0 + 2 * HOUR - 1) and not m.active(T0 + 2 * HOUR)
    assert not m.active(T0 - 1)
    for bad in (0, -5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="more than 0s"):
            core.request("i", "r", "b", T0, bad, 8 * HOUR)
    with pytest.raises(ValueError, match=r"max_duration \(8h00m\)"):
        core.request("i", "r", "b", T0, 9 * HOUR, 8 * HOUR)


def test_file_round_trip_and_cap_applied_again_when_read():
    m = core.request("id1", "r", "b", T0, 6 * HOUR, 8 * HOUR)
    back = core.from_json(json.loads(json.dumps(m.to_json())), 8 * HOUR)
    assert back == m
    # The cap was lowered since (or the file was edited): the end moves in, and says why.
    capped = core.from_json(m.to_json(), 1 * HOUR)
    assert capped.until == T0 + HOUR and capped.requested_until == T0 + 6 * HOUR
    assert capped.how_it_ended(T0 + 2 * HOUR) == "expired (capped by [maintenance] max_duration)"
    assert m.how_it_ended(T0 + 7 * HOUR) == "expired"
    assert m.how_it_ended(T0) == "not started yet"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"version": 2}, "unknown version"),
        ({"until": T0 - 1}, "not after"),
        ({"started": "yesterday"}, "'started' must be a number"),
        ({"until": None}, "'until' must be a number"),
        ({"reason": ""}, "'reason' must be a non-empty string"),
        ({"id": 7}, "'id' must be a non-empty string"),
        ({"ended": True}, "'ended' must be a number"),
    ],
)
def test_damaged_documents_are_refused_with_the_reason(change, reason):
    data = core.request("id1", "r", "b", T0, HOUR, 8 * HOUR).to_json()
    data.update(change)
    with pytest.raises(ValueError, match=reason):
        core.from_json(data, 8 * HOUR)
    with pytest.raises(ValueError, match="not a JSON object"):
        core.from_json([data], 8 * HOUR)


def test_extend_keeps_the_id_and_the_cap_counts_from_the_first_start():
    m = core.request("id1", "r", "alice", T0, 2 * HOUR, 4 * HOUR)
    longer = core.extend(m, "r2", "bob", T0 + HOUR, 3 * HOUR, 4 * HOUR)
    assert (longer.id, longer.started, longer.until, longer.by) == ("id1", T0, T0 + 4 * HOUR, "bob")
    with pytest.raises(ValueError, match="turn it off and on again"):
        core.extend(m, "r", "bob", T0 + HOUR, 3.5 * HOUR, 4 * HOUR)


def test_turned_off_ends_it_and_says_by_whom():
    m = core.request("id1", "r", "alice", T0, 2 * HOUR, 8 * HOUR)
    off = core.turned_off(m, "bob", T0 + 600)
    assert not off.active(T0 + 601) and off.end_time() == T0 + 600
    assert off.how_it_ended(T0 + 700) == "turned off by bob"


def test_long_or_multiline_text_is_one_bounded_line():
    m = core.request("i", "x" * 1000 + "\n\x1b[31mred", "a\nb", T0, HOUR, 8 * HOUR)
    assert len(m.reason) == core.MAX_TEXT and m.reason.endswith("...")
    assert m.by == "a b"


# ---------------------------------------------------------------- the file and the commands


def make_cfg(tmp_path, cap: str = "8h") -> Config:
    from watchdog.units import parse_duration

    return Config(
        daemon=DaemonConfig(state_dir=str(tmp_path / "state"), interval=1.0),
        maintenance=MaintenanceConfig(max_duration=parse_duration(cap)),
    )


def test_read_request_missing_damaged_and_unreadable(tmp_path):
    state = tmp_path / "state"
    assert read_request(str(state), HOUR) == (None, None)
    state.mkdir()
    (state / "maintenance.json").write_text("{not json")
    request, error = read_request(str(state), HOUR)
    assert request is None and "not a valid maintenance request" in error
    assert "no maintenance applied" in error
    (state / "maintenance.json").unlink()
    (state / "maintenance.json").mkdir()
    request, error = read_request(str(state), HOUR)
    assert request is None and "cannot read" in error


def test_write_request_is_private_and_atomic(tmp_path):
    m = core.request("id1", "r", "b", T0, HOUR, 8 * HOUR)
    write_request(str(tmp_path), m)
    path = request_path(str(tmp_path))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["maintenance.json"]  # no temp file left
    assert read_request(str(tmp_path), 8 * HOUR, m.started) == (m, None)


def test_watcher_sees_each_change_once(tmp_path):
    path = tmp_path / "maintenance.json"
    watcher = RequestWatcher(str(path))
    assert not watcher.changed()
    write_request(str(tmp_path), core.request("a", "r", "b", T0, HOUR, 8 * HOUR))
    assert watcher.changed() and not watcher.changed()
    write_request(str(tmp_path), core.request("b", "r", "b", T0, HOUR, 8 * HOUR))
    assert watcher.changed()
    path.unlink()
    assert watcher.changed() and not watcher.changed()


def test_who_names_the_sudo_user():
    me = who({}, os.getuid())
    assert me and "(" not in me
    assert who({"SUDO_USER": "alice"}, 0) == "alice (as root)"
    assert who({}, 2**31 - 7) == f"uid {2**31 - 7}"


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def fake_daemon(cfg: Config, record, when: float) -> None:
    """Write what a running daemon keeps in its state file (its record of the maintenance)."""
    os.makedirs(cfg.daemon.state_dir, exist_ok=True)
    path = os.path.join(cfg.daemon.state_dir, "engine.json")
    with open(path, "w") as handle:
        json.dump({"version": 1, "maintenance": record}, handle)
    os.utime(path, (when, when))


def test_on_waits_for_the_daemon_and_reports_plainly(tmp_path, capsys):
    cfg = make_cfg(tmp_path)
    clock = Clock(T0)
    fake_daemon(cfg, None, T0 - 1)
    rc = command_on(cfg, "2h", "failover test", 3.0, clock, clock.sleep, by="alice")
    out = capsys.readouterr().out
    assert rc == EXIT_NOT_APPLIED and "did not confirm it within 3.0s" in out
    assert "stays in effect" in out
    request, _ = read_request(cfg.daemon.state_dir, 8 * HOUR, T0)
    assert (request.by, request.reason, request.until) == ("alice", "failover test", T0 + 2 * HOUR)
    # Once the daemon's state shows it, `on` again (an extension) is confirmed.
    clock.now = T0 + 60
    record = {"id": request.id, "until": T0 + 3 * HOUR + 60, "events": []}
    fake_daemon(cfg, record, clock.now)
    assert command_on(cfg, "3h", "longer", 3.0, clock, clock.sleep, by="bob") == EXIT_OK
    assert "maintenance extended until" in capsys.readouterr().out


def test_on_with_a_stopped_daemon_says_so_at_once(tmp_path, capsys):
    cfg = make_cfg(tmp_path)
    clock = Clock(T0)
    fake_daemon(cfg, None, T0 - 3600)
    assert command_on(cfg, "10m", "x", 20.0, clock, clock.sleep, by="a") == EXIT_NOT_APPLIED
    assert "last cycle was 1h00m ago: is it running?" in capsys.readouterr().out
    assert clock.now == T0  # did not wait the 20 s


def test_on_refusals(tmp_path, capsys):
    cfg = make_cfg(tmp_path, cap="1h")
    assert command_on(cfg, None, "x", 0) == EXIT_REFUSED
    assert "--for is required" in capsys.readouterr().err
    assert command_on(cfg, "2h", "x", 0) == EXIT_REFUSED
    assert "max_duration (1h00m)" in capsys.readouterr().err
    assert command_on(cfg, "soon", "x", 0) == EXIT_REFUSED
    assert "bad duration" in capsys.readouterr().err
    assert command_on(cfg, "10m", "  ", 0) == EXIT_REFUSED
    assert not os.path.exists(request_path(cfg.daemon.state_dir))
    blocked = dataclasses.replace(cfg, daemon=DaemonConfig(state_dir="/proc/none/state"))
    assert command_on(blocked, "10m", "x", 0) == EXIT_REFUSED
    assert "cannot write" in capsys.readouterr().err


def test_off_and_status(tmp_path, capsys):
    cfg = make_cfg(tmp_path)
    clock = Clock(T0)
    assert command_off(cfg, 0, clock, clock.sleep) == EXIT_OK
    assert "not on; nothing to do" in capsys.readouterr().out
    command_on(cfg, "1h", "disk swap", 0, clock, clock.sleep, by="alice")
    request, _ = read_request(cfg.daemon.state_dir, 8 * HOUR, T0)
    event = {"at": T0 + 5, "kind": "problem", "check": "standbys", "severity": "critical",
             "line": "PROBLEM CRITICAL: standbys on n (primary)", "sent": False}
    fake_daemon(cfg, {"id": request.id, "until": request.until, "events": [event]}, T0 + 5)
    capsys.readouterr()
    clock.now = T0 + 10
    assert command_status(cfg, as_json=False, clock=clock) == EXIT_OK
    out = capsys.readouterr().out
    assert "maintenance: ON until" in out and "59m50s left" in out and "alice" in out
    assert "daemon: applied; 1 notification(s)" in out and "[held back]" in out
    assert command_status(cfg, as_json=True, clock=clock) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["active"] and data["applied"] and data["events"] == [event]
    fake_daemon(cfg, None, T0 + 11)
    assert command_off(cfg, 1.0, clock, clock.sleep, by="bob") == EXIT_OK
    assert "the running daemon applied it" in capsys.readouterr().out
    command_status(cfg, as_json=False, clock=clock)
    out = capsys.readouterr().out
    assert "maintenance: off" in out and "turned off by bob" in out


# ---------------------------------------------------------------- untrusted or damaged (issue 11)


def written(tmp_path, started=T0, mode=0o600, uid=None) -> str:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    write_request(str(state), core.request("id1", "r", "b", started, HOUR, 8 * HOUR))
    path = request_path(str(state))
    os.chmod(path, mode)
    if uid is not None:
        os.chown(path, uid, -1)
    return str(state)


def test_a_request_from_root_or_the_daemons_user_is_trusted(tmp_path):
    state = written(tmp_path)
    request, error = read_request(state, 8 * HOUR, T0)
    assert error is None and request.id == "id1"
    # Written a little ahead of this clock (another clock, a step): accepted.
    assert read_request(state, 8 * HOUR, T0 - 60)[0] is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_request_owned_by_another_user_silences_nothing(tmp_path):
    state = written(tmp_path, uid=65534)
    request, error = read_request(state, 8 * HOUR, T0)
    assert request is None
    assert "owned by uid 65534, not by root or the daemon's user" in error
    assert "no maintenance applied" in error
    # The daemon's own user (when it is not root) may write it.
    assert read_request(state, 8 * HOUR, T0, euid=65534)[0] is not None


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
def test_a_group_or_world_writable_request_silences_nothing(tmp_path, mode):
    request, error = read_request(written(tmp_path, mode=mode), 8 * HOUR, T0)
    assert request is None and f"writable by group or others (mode {mode:04o})" in error


def test_a_request_starting_in_the_future_silences_nothing(tmp_path):
    state = written(tmp_path, started=T0 + 3 * HOUR)
    request, error = read_request(state, 8 * HOUR, T0)
    assert request is None and "starts in the future" in error


def test_a_symlinked_or_fifo_request_file_is_refused_without_blocking(tmp_path):
    import threading

    state = tmp_path / "state"
    state.mkdir()
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    os.symlink(target, state / "maintenance.json")
    assert "symbolic link" in read_request(str(state), HOUR, T0)[1]
    os.unlink(state / "maintenance.json")
    os.mkfifo(state / "maintenance.json")
    box = []
    thread = threading.Thread(target=lambda: box.append(read_request(str(state), HOUR, T0)),
                              daemon=True)
    thread.start()
    thread.join(10)
    assert box, "reading a FIFO request file blocked"
    assert box[0][0] is None and "is a FIFO" in box[0][1]


def test_a_request_nested_200000_deep_is_refused_by_the_cli_without_a_traceback(tmp_path):
    """`maintenance status` and `--once` crashed with RecursionError on such a file."""
    import subprocess
    import sys

    from conftest import ROOT

    state = tmp_path / "state"
    state.mkdir()
    (state / "maintenance.json").write_text("[" * 30_000 + "]" * 30_000)
    request, error = read_request(str(state), HOUR, T0)
    assert request is None and "nested too deeply" in error
    (state / "maintenance.json").write_text("[" * 200_000 + "]" * 200_000)
    request, error = read_request(str(state), HOUR, T0)
    assert request is None and "is too large (400000 bytes" in error
    config = tmp_path / "config.toml"
    config.write_text(f'[daemon]\nstate_dir = "{state}"\n[drbd]\npath = "{tmp_path}/none"\n'
                      '[services]\ncommand = ["true"]\n'
                      '[postgres]\ndsn = "host=127.0.0.1 port=1 connect_timeout=1"\n')
    config.chmod(0o600)
    for args in (["maintenance", "status"], ["--once", "--json"]):
        done = subprocess.run([sys.executable, "-m", "watchdog", "--config", str(config), *args],
                              capture_output=True, text=True, timeout=60, cwd=str(ROOT))
        assert "Traceback" not in done.stderr, done.stderr
        assert "is too large" in done.stdout + done.stderr
    assert json.loads(done.stdout)["maintenance"]["active"] is False
