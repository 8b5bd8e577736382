"""Issue 14, part 4: `ha-watchdog status` shows what the running daemon thinks. A real
daemon on the lab's PostgreSQL pair, a real loopback receiver that goes down, the command
as a real subprocess, as root and as an unprivileged reader of the state directory."""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from lab.cluster import lab_node
from lab.node import NodeDaemon
from watchdog.model import Role
from watchdog.runner import ROLE_CHECKS

HEALTHY_SERVICES = ["sh", "-c", "echo '/service/hvmail-httpd: up (pid 100) 1000 seconds'"]


def status(node: NodeDaemon, *args: str, user: str = "") -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "watchdog", "status", "--config", node.config_path, *args]
    if user:
        argv = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups",
                "--inh-caps=-all", "--", *argv]
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def status_json(node: NodeDaemon) -> Dict[str, Any]:
    result = status(node, "--json")
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def wait(predicate, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.2)


def make_node(tmp_path: Path, pg: Any, receiver: Any) -> NodeDaemon:
    node, _drbd = lab_node(str(tmp_path / "p1"), "p1", "primary", str(pg.primary_dsn),
                           services_command=HEALTHY_SERVICES,
                           targets=[{"name": "hook", "url": receiver.url}])
    return node


def _by_name(checks: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {c["name"]: c for c in checks}


@pytest.mark.slow  # a daemon through a page and its recovery (about 20 s)
def test_status_shows_role_checks_incidents_outbox_and_history(tmp_path, pg, http_receiver):
    node = make_node(tmp_path, pg, http_receiver)
    with node:
        wait(lambda: node.cycles() >= 3, what="first cycles")
        info = status_json(node)
        assert info["node"] == "p1" and info["role"] == "primary"
        assert info["daemon"]["stale"] is False and info["daemon"]["number"] >= 1
        checks = _by_name(info["checks"])
        assert set(checks) == set(ROLE_CHECKS[Role.PRIMARY])
        assert checks["standbys"]["confirmed"] == "ok" and checks["standbys"]["since"]
        assert info["incidents"] == [] and info["outbox"] == []

        # The channel goes down, then the standby: a page waits in the outbox.
        http_receiver.set_down(True)
        pg.stop_standby()
        wait(lambda: status_json(node)["outbox"], what="the page to wait in the outbox")
        info = status_json(node)
        (incident,) = info["incidents"]
        assert incident["check"] == "standbys" and incident["level"] == "critical"
        (waiting,) = info["outbox"]
        assert waiting["target"] == "hook" and waiting["kind"] == "problem"
        assert waiting["says"] == "PROBLEM CRITICAL: standbys on p1 (primary)"
        assert waiting["title"].startswith("[p1] standbys CRITICAL: ")
        wait(lambda: status_json(node)["targets"].get("hook", {}).get("last_error"),
             what="the delivery error")

        text = status(node)
        assert text.returncode == 0, text.stderr
        out = text.stdout
        assert out.startswith("p1: role primary")
        assert "daemon: running; last cycle #" in out
        assert "standbys       CRITICAL since " in out
        assert "open incidents:\n  standbys: critical since " in out
        assert "outbox: 1 alert(s) waiting:\n  -> hook: queued " in out
        assert ": PROBLEM CRITICAL: standbys on p1 (primary)" in out
        assert "target 'hook' last error: " in out
        assert "\033[" not in out  # NO_COLOR, and not a terminal
        assert http_receiver.url not in out + json.dumps(info)  # targets by name only

        http_receiver.set_down(False)
        wait(lambda: status_json(node)["sent"], what="the delivery")
        (sent,) = status_json(node)["sent"]
        assert sent["target"] == "hook" and sent["kind"] == "problem"
        assert sent["headline"] == "PROBLEM CRITICAL: standbys on p1 (primary)"
        assert "last 1 alert(s) sent (newest last):" in status(node).stdout
    pg.start_standby()


def test_status_of_a_stopped_daemon_is_stale_and_reading_changes_nothing(tmp_path, pg,
                                                                          http_receiver):
    node = make_node(tmp_path, pg, http_receiver)
    with node:
        wait(lambda: node.cycles() >= 2, what="first cycles")
    state = Path(node.workdir) / "state"
    # A damaged file the daemon would move aside: status must leave it where it is.
    (state / "outbox.json").write_text("{not json")
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in state.iterdir()}
    time.sleep(3 * 0.5 + 5.5)  # past 3 intervals + the margin
    result = status(node)
    assert result.returncode == 1, result.stderr
    assert "daemon: STALE: not cycling" in result.stdout
    assert "outbox.json is not valid JSON" in result.stdout
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in state.iterdir()}
    assert after == before


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to run the command as another user")
def test_status_as_a_reader_of_the_state_dir(pg, http_receiver):
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="ha-watchdog-status-"))  # pytest's tmp is 0700
    try:
        _as_reader(base, pg, http_receiver)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_reader(base: Path, pg: Any, http_receiver: Any) -> None:
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            "--inh-caps=-all", "--", sys.executable, "-c", "pass"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:  # e.g. a pyenv Python under /root (mode 0700)
        pytest.skip(f"user nobody cannot run {sys.executable}: {probe.stderr.strip()[:200]}")
    base.chmod(0o755)
    node = make_node(base, pg, http_receiver)
    (base / "p1").chmod(0o755)
    with node:
        wait(lambda: node.cycles() >= 2, what="first cycles")
        os.chmod(node.config_path, 0o644)  # a reader may read the config (or pass its own)
        state = Path(node.workdir) / "state"
        denied = status(node, user="nobody")
        assert denied.returncode == 3
        assert f"cannot read {state}: permission denied" in denied.stderr, denied.stderr
        assert "Traceback" not in denied.stderr
        # The README's recipe: the state directory's group is the monitoring user's, setgid,
        # so the files the daemon publishes (status.json, sent.json: 0640) are readable.
        os.chown(state, 0, grp.getgrnam("nogroup").gr_gid)
        state.chmod(0o2750)
        start = node.cycles()
        wait(lambda: node.cycles() >= start + 2, what="a cycle after the chgrp")
        result = status(node, "--json", user="nobody")
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        assert info["role"] == "primary" and info["daemon"]["stale"] is False
        assert info["source"] == "last cycle"  # engine.json and outbox.json stay root's
        assert {c["name"]: c["confirmed"] for c in info["checks"]}["standbys"] == "ok"
        assert (state / "engine.json").stat().st_mode & 0o077 == 0
        text = status(node, user="nobody")
        assert text.returncode == 0 and "as of the daemon's last cycle" in text.stdout


def test_status_without_state_says_so(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "none"}"\n')
    config.chmod(0o600)
    result = subprocess.run([sys.executable, "-m", "watchdog", "status", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert f"no state directory {tmp_path / 'none'}" in result.stderr
