"""The daemon against damaged state, hostile files and floods (issue 11): real
`ha-watchdog` processes, real files, FIFOs and sockets, a real HTTP receiver.

No PostgreSQL here: the DSN points at a closed port (those checks say UNKNOWN), and every
scenario watches the DRBD check, staged through the lab's /proc/drbd file. Each asserts
which alerts arrived, never how fast.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import shutil
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from lab import cluster
from lab.drbdstate import DrbdStateFile
from lab.node import NodeDaemon
from lab.receivers import free_port, is_about

pytestmark = [pytest.mark.slow]

DEAD_DSN = "host=127.0.0.1 port=1 connect_timeout=1"
WAIT = 60.0  # an upper bound for "eventually" on a busy machine (each send is a child)
HEALTHY_SERVICES = ["sh", "-c", "echo '/service/hvmail-httpd: up (pid 100) 1000 seconds'"]


def lab_node(tmp_path: Path, receiver: Any, overrides: Optional[Dict[str, Any]] = None,
             python: str = sys.executable) -> Tuple[NodeDaemon, DrbdStateFile]:
    return cluster.lab_node(str(tmp_path / "p1"), "p1", "primary", DEAD_DSN,
                            services_command=HEALTHY_SERVICES,
                            targets=[{"name": "hook", "url": receiver.url}],
                            overrides=overrides, python=python)


def state_dir(node: NodeDaemon) -> Path:
    return Path(node.workdir) / "state"


def headlines(receiver: Any, title: str) -> List[str]:
    return [m["message"].splitlines()[0] for m in receiver.messages
            if is_about(m.get("title"), title)]


def wait_cycles(node: NodeDaemon, count: int, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    start = node.cycles()
    while node.cycles() < start + count:
        assert node.running(), "\n".join(node.log()[-30:])
        assert time.monotonic() < deadline, "no cycles:\n" + "\n".join(node.log()[-30:])
        time.sleep(0.1)


def split_brain(drbd: DrbdStateFile) -> None:
    drbd.set(cstate="StandAlone", peer_role="Unknown", peer_disk="DUnknown")


def drbd_problem_arrives(receiver: Any) -> bool:
    return receiver.wait_for(
        lambda _: any(h.startswith("PROBLEM") for h in headlines(receiver, "[p1] drbd")), WAIT)


def stops_cleanly(node: NodeDaemon) -> None:
    """SIGTERM is heard (a process blocked on a FIFO ignored it) and the exit is clean."""
    assert node.running()
    node.signal(signal.SIGTERM)
    assert node.proc is not None
    assert node.proc.wait(20) == 0, "\n".join(node.log()[-20:])


# ---------------------------------------------------------------- 1: a failed state write


def test_a_failed_state_write_still_sends_the_problem_and_says_so(tmp_path, http_receiver):
    """engine.json replaced by a directory: the cycle used to fail after the engine had
    marked the PROBLEM told, so it was never sent (and its RECOVERY came out of nowhere)."""
    port = free_port()
    node, drbd = lab_node(tmp_path, http_receiver,
                          overrides={"metrics": {"listen": f"127.0.0.1:{port}"}})
    engine = state_dir(node) / "engine.json"
    with node:
        wait_cycles(node, 2)
        while not engine.is_dir():  # the daemon may write it again between the two steps
            try:
                engine.unlink()
                engine.mkdir()
            except (FileNotFoundError, FileExistsError):
                continue
        (engine / "in-the-way").write_text("x")
        split_brain(drbd)
        assert drbd_problem_arrives(http_receiver), node.log()[-30:]
        assert node.wait_log(r"ERROR.*cannot write .*engine.json.*alerts are still sent", 10)
        # It persists: one notification says so, the metric counts it.
        assert http_receiver.wait_for(
            lambda _: "PROBLEM WARNING: ha-watchdog on p1: it cannot save its state"
            in headlines(http_receiver, "[p1] ha-watchdog"), WAIT)
        failures = scrape(port).get("ha_watchdog_state_write_failures_total", 0.0)
        assert failures >= 3
        shutil.rmtree(engine)
        assert http_receiver.wait_for(
            lambda _: "RECOVERY: ha-watchdog on p1: it cannot save its state"
            in headlines(http_receiver, "[p1] ha-watchdog"), WAIT)
        assert node.wait_log(r"state file .*engine.json written again", 10)
    assert json.loads(engine.read_text())["checks"]["drbd"]["incident"] is not None
    assert headlines(http_receiver, "[p1] drbd").count(
        headlines(http_receiver, "[p1] drbd")[0]) == 1  # sent once, not again
    errors = [line for line in node.log() if "cannot write" in line and "ERROR" in line]
    assert len(errors) == 1, errors  # logged when it began, not every cycle


def scrape(port: int) -> Dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


# ---------------------------------------------------------------- 2: a metrics flood


def test_a_connection_flood_on_the_metrics_port_starves_nothing(tmp_path, http_receiver):
    """About 1,020 idle connections used to take every descriptor of a daemon with the
    usual 1024 limit: cycles failed with EMFILE and no PROBLEM went out."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300:
        if hard != resource.RLIM_INFINITY and hard < 1300:
            pytest.skip("the test itself needs 1,300 descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1300, hard))
    wrapper = tmp_path / "python-1024"  # the daemon gets the common default limit
    wrapper.write_text(f'#!/bin/sh\nulimit -n 1024\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    port = free_port()
    node, drbd = lab_node(tmp_path, http_receiver, python=str(wrapper),
                          overrides={"metrics": {"listen": f"127.0.0.1:{port}"}})
    flood: List[socket.socket] = []
    with node:
        wait_cycles(node, 2)
        try:
            for _ in range(1100):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                flood.append(sock)
                # Paced like a script's loop: a burst would overflow the listen queue and
                # the server's kernel would drop most of it before anything is accepted.
                time.sleep(0.002)
            established = wait_connected(flood, 60.0)
            wait_cycles(node, 3)
            split_brain(drbd)
            assert drbd_problem_arrives(http_receiver), node.log()[-30:]
            wait_cycles(node, 2)
            assert not [line for line in node.log() if "Too many open files" in line]
            assert established >= 1000  # the flood really happened
        finally:
            for sock in flood:
                sock.close()
        deadline = time.monotonic() + WAIT  # the endpoint serves again once the flood ends
        while True:
            try:
                assert scrape(port)["ha_watchdog_cycles_total"] >= 5
                break
            except OSError:
                assert time.monotonic() < deadline, "the metrics endpoint never came back"
                time.sleep(0.5)
        stops_cleanly(node)


def wait_connected(socks: List[socket.socket], timeout: float) -> int:
    """Wait until the non-blocking connects complete (the server accepted or its kernel
    queued them) or `timeout` passes; how many did. A daemon that lets the flood take its
    descriptors stops accepting, so not all of them may ever complete."""
    sel = selectors.DefaultSelector()  # epoll: descriptors above 1024 are fine
    for sock in socks:
        sel.register(sock, selectors.EVENT_WRITE)
    done = 0
    deadline = time.monotonic() + timeout
    try:
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(1.0):
                sel.unregister(key.fileobj)
                if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    done += 1
    finally:
        sel.close()
    return done


# ---------------------------------------------------------------- 4, 6: damaged state at start


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def outbox_with_a_list_id() -> str:
    entry = {"id": ["a"], "kind": "problem", "severity": "critical", "notify_type": "failure",
             "title": "[p1] drbd", "body": "x", "node": "p1", "created": 1.0}
    return json.dumps({"version": 1, "targets": {"hook": {"delivered": {}, "pending": [
        {"queued": time.time(), "notification": entry}]}}})


DAMAGE = {
    "engine.json is a directory": ("engine.json", "dir"),
    "engine.json nested 200,000 deep": ("engine.json", nested(200_000)),
    "outbox.json nested 200,000 deep": ("outbox.json", nested(200_000)),
    "an outbox id that is a list": ("outbox.json", outbox_with_a_list_id()),
    "engine.json is a FIFO": ("engine.json", "fifo"),
    "outbox.json is a FIFO": ("outbox.json", "fifo"),
    "maintenance.json is a FIFO": ("maintenance.json", "fifo"),
}


@pytest.mark.parametrize("name, content", DAMAGE.values(), ids=list(DAMAGE))
def test_damaged_state_at_start_neither_crashes_nor_hangs_and_pages(
    tmp_path, http_receiver, name, content
):
    node, drbd = lab_node(tmp_path, http_receiver)
    state = state_dir(node)
    state.mkdir(mode=0o700)
    path = state / name
    if content == "dir":
        (path / "inner").mkdir(parents=True)
    elif content == "fifo":
        os.mkfifo(path, 0o600)
    else:
        path.write_text(content)
    with node:
        wait_cycles(node, 2)
        split_brain(drbd)
        assert drbd_problem_arrives(http_receiver), node.log()[-30:]
        if name != "maintenance.json":  # a lost state file is said, not just logged
            assert http_receiver.wait_for(
                lambda _: any(h.startswith("NOTICE: ha-watchdog on p1")
                              for h in headlines(http_receiver, "[p1] ha-watchdog")), WAIT)
        else:
            assert node.wait_log(r"ERROR.*maintenance: .*is a FIFO", 10)
        stops_cleanly(node)


def test_an_engine_state_of_the_wrong_shape_is_said_before_problems_page_again(
    tmp_path, http_receiver
):
    """`[1,2,3]` (or another version) used to become a fresh state without a word, so open
    problems paged again as if new."""
    node, drbd = lab_node(tmp_path, http_receiver)
    state_dir(node).mkdir(mode=0o700)
    (state_dir(node) / "engine.json").write_text(json.dumps({"version": 99, "checks": {}}))
    with node:
        assert http_receiver.wait_for(
            lambda _: headlines(http_receiver, "[p1] ha-watchdog"), WAIT)
        assert node.wait_log(r"ERROR.*engine.json", 5)
    (message,) = [m for m in http_receiver.messages if is_about(m["title"], "[p1] ha-watchdog")]
    assert message["message"].startswith("NOTICE: ha-watchdog on p1: its alert state was damaged")
    assert "version '99'" in message["message"] and "reported again" in message["message"]


# ---------------------------------------------------------------- 5: a damaged request file


@pytest.mark.parametrize("depth", [30_000, 200_000])
def test_a_deeply_nested_request_file_silences_nothing_and_stops_nothing(
    tmp_path, http_receiver, depth
):
    node, drbd = lab_node(tmp_path, http_receiver)
    with node:
        wait_cycles(node, 2)
        request = state_dir(node) / "maintenance.json"
        request.write_text(nested(depth))
        request.chmod(0o600)
        assert node.wait_log(r"ERROR.*maintenance: .*(nested too deeply|too large)", 10)
        split_brain(drbd)
        assert drbd_problem_arrives(http_receiver), node.log()[-30:]
        wait_cycles(node, 2)


def test_an_untrusted_request_file_silences_nothing(tmp_path, http_receiver):
    node, drbd = lab_node(tmp_path, http_receiver)
    with node:
        wait_cycles(node, 2)
        now = time.time()
        request = state_dir(node) / "maintenance.json"
        request.write_text(json.dumps({"version": 1, "id": "x", "reason": "r", "by": "mallory",
                                       "started": now, "until": now + 3600}))
        request.chmod(0o666)
        assert node.wait_log(r"ERROR.*maintenance: .*writable by group or others", 10)
        split_brain(drbd)
        assert drbd_problem_arrives(http_receiver), node.log()[-30:]


# ---------------------------------------------------------------- 7: reload


@pytest.mark.parametrize("bad", [
    '[replay_lag]\nwarning_bytes = "' + "9" * 400 + '"\n',
    "[daemon]\nx = " + nested(3000) + "\n",
], ids=["400 nines", "3000-deep array"])
def test_a_reload_with_a_hostile_config_keeps_the_running_one(tmp_path, http_receiver, bad):
    node, drbd = lab_node(tmp_path, http_receiver)
    with node:
        wait_cycles(node, 2)
        node.write_raw_config(bad)
        node.reload()
        assert node.wait_log(r"reload rejected, keeping the running config", 10), node.log()[-20:]
        wait_cycles(node, 2)
        split_brain(drbd)
        assert drbd_problem_arrives(http_receiver), node.log()[-30:]
        assert not [line for line in node.log() if "Traceback" in line]
        stops_cleanly(node)
