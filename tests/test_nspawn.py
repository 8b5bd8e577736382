"""Self-test of the systemd-in-a-container harness (lab.nspawn), on a real systemd."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab.nspawn import (
    SHARED_DIR_INSIDE,
    ContainerError,
    SystemdContainer,
    available,
    cgroup_hierarchies,
    home_dropin,
)

ROOT = Path(__file__).resolve().parent.parent
AVAILABLE, WHY_NOT = available()
needs_nspawn = pytest.mark.skipif(not AVAILABLE, reason=WHY_NOT)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """One booted container shared by this module's tests (booting takes ~0.3 s)."""
    container = SystemdContainer(tmp_path_factory.mktemp("nspawn"), binds_ro=(str(ROOT),))
    container.start(timeout=30)
    try:
        yield container
    finally:
        container.stop()


def _mounted_under(path: Path) -> list:
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        return [line for line in fh if str(path) in line]


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for the host's init to reap it."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            state = next(line for line in fh if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "zombie" not in state


def test_available_matches_this_machine():
    ok, reason = available()
    if os.geteuid() != 0:
        assert not ok and "root" in reason
    elif shutil.which("systemd-nspawn") is None:
        assert not ok and "systemd-nspawn" in reason
    else:
        assert ok and reason == ""


def test_cgroup_layout_is_detected():
    hierarchies = cgroup_hierarchies()
    assert hierarchies, "no cgroup hierarchy found"
    for path in hierarchies:
        assert os.path.exists(os.path.join(path, "cgroup.procs"))


def test_home_dropin_shows_only_paths_under_home():
    assert home_dropin(["/opt/ha-watchdog", "/usr"]) == ""
    text = home_dropin(["/home/ci/.local/python3.12", "/opt/x"])
    assert text.splitlines() == [
        "[Service]",
        "ProtectHome=tmpfs",
        "BindReadOnlyPaths=/home/ci/.local/python3.12",
    ]


TINY_SERVICE = textwrap.dedent(
    """\
    import sys
    import threading
    import time

    sys.path.insert(0, {repo!r})
    from watchdog.systemd import Notifier, enable_crash_dumps

    enable_crash_dumps()
    notifier = Notifier()
    interval = notifier.watchdog_interval()


    def idle_worker():
        time.sleep(3600)


    def stuck_in_loop():
        while True:
            time.sleep(1)


    threading.Thread(target=idle_worker, name="idle", daemon=True).start()
    time.sleep(0.5)  # "first cycle": systemctl start must wait for READY=1
    with open("/run/tiny.ready", "w") as fh:
        fh.write(repr(interval))
    notifier.ready(status="interval=%s caf\\u00e9 \\u2713" % interval)
    for _ in range(3):
        time.sleep(interval / 2)
        notifier.watchdog_ping()
    print("stopped pinging", flush=True)
    stuck_in_loop()
    """
)

TINY_UNIT = textwrap.dedent(
    """\
    [Unit]
    Description=tiny Type=notify service for the harness self-test
    StartLimitIntervalSec=0

    [Service]
    Type=notify
    NotifyAccess=main
    ExecStart={python} /usr/local/lib/tiny/tiny.py
    WatchdogSec=2
    Restart=on-failure
    RestartSec=500ms
    TimeoutStartSec=10
    """
)


@pytest.mark.systemd
@needs_nspawn
def test_notify_service_ready_then_watchdog_abort_and_restart(box):
    box.install_file("/usr/local/lib/tiny/tiny.py", TINY_SERVICE.format(repo=str(ROOT)))
    box.install_unit("tiny.service", TINY_UNIT.format(python=sys.executable))

    started = box.systemctl("start", "tiny.service", timeout=15)
    assert started.ok, started
    # `systemctl start` of a Type=notify unit returns only after READY=1.
    assert box.show("tiny.service", "ActiveState") == "active"
    assert box.run(["cat", "/run/tiny.ready"]).stdout == "1.0"  # WATCHDOG_USEC/2, seconds
    assert box.show("tiny.service", "StatusText") == "interval=1.0 cafe ?"

    # After the last ping the watchdog (2 s) fires, SIGABRT, and Restart= starts it again.
    assert box.wait_for("tiny.service", "NRestarts", lambda v: int(v) >= 1, timeout=15), (
        box.journal("tiny.service")
    )
    assert box.wait_for_journal("tiny.service", "stuck_in_loop", timeout=10)
    journal = box.journal("tiny.service")
    assert "Watchdog timeout" in journal
    assert "Killing process" in journal and "SIGABRT" in journal
    assert "Failed with result 'watchdog'" in journal
    # faulthandler: every thread's stack is in the journal, not only the current one.
    assert "Fatal Python error: Aborted" in journal
    assert "idle_worker" in journal
    box.systemctl("stop", "tiny.service")
    assert box.show("tiny.service", "ActiveState") in ("inactive", "failed")


@pytest.mark.systemd
@needs_nspawn
def test_run_sees_the_container(box):
    assert box.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    # --private-network: only the container's own loopback.
    assert box.run(["ls", "/sys/class/net"]).stdout.split() == ["lo"]
    # Timers are masked so nothing fires during a test.
    assert box.show("timers.target", "LoadState") == "masked"
    assert box.boot_state in ("running", "degraded")


@pytest.mark.systemd
@needs_nspawn
def test_install_file_mode_and_content(box):
    box.install_file("/etc/ha-watchdog/secret.toml", "key = 1\n", mode=0o600)
    assert box.run(["stat", "-c", "%a %U", "/etc/ha-watchdog/secret.toml"]).stdout.strip() == (
        "600 root"
    )
    assert box.run(["cat", "/etc/ha-watchdog/secret.toml"]).stdout == "key = 1\n"
    # The file is the container's (overlay upper layer), not the host's.
    assert not os.path.exists("/etc/ha-watchdog/secret.toml")


@pytest.mark.systemd
@needs_nspawn
def test_long_lived_helper_reachable_over_a_shared_unix_socket(box):
    """A helper under the container's systemd, reached from the host through shared_dir:
    unix sockets in a bound directory cross the container's private network."""
    server = textwrap.dedent(
        f"""\
        import os, socket
        path = {SHARED_DIR_INSIDE + "/echo.sock"!r}
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path + ".tmp")
        os.rename(path + ".tmp", path)
        s.listen(1)
        while True:
            conn, _ = s.accept()
            conn.sendall(b"pong:" + conn.recv(100))
            conn.close()
        """
    )
    box.install_file("/usr/local/lib/echo.py", server)
    started = box.start_helper("echo", [sys.executable, "/usr/local/lib/echo.py"])
    assert started.ok, started
    assert box.show("echo.service", "ActiveState") == "active"
    host_path = box.shared_dir / "echo.sock"
    deadline = time.monotonic() + 10
    while not host_path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(str(host_path))
        client.sendall(b"ping")
        assert client.recv(100) == b"pong:ping"
    assert box.systemctl("stop", "echo.service").ok
    assert box.show("echo.service", "ActiveState") in ("inactive", None, "")


@pytest.mark.systemd
@needs_nspawn
def test_wait_for_gives_up_at_its_deadline(box):
    assert box.wait_for("basic.target", "ActiveState", "active", timeout=2)
    assert not box.wait_for("basic.target", "ActiveState", "no-such-state", timeout=0.3)


@pytest.mark.systemd
@needs_nspawn
def test_stop_leaves_nothing_behind(tmp_path):
    box = SystemdContainer(tmp_path)
    box.start(timeout=30)
    cgroups = [os.path.join(h, box.name) for h in cgroup_hierarchies()]
    assert all(os.path.isdir(c) for c in cgroups)
    box.stop()
    assert not any(os.path.exists(c) for c in cgroups)
    assert not box.running
    assert _mounted_under(tmp_path) == []
    assert box.run(["true"]).error == "container not running"
    box.stop()  # idempotent


@pytest.mark.systemd
@needs_nspawn
def test_stop_kills_what_a_dead_nspawn_left_behind(tmp_path):
    box = SystemdContainer(tmp_path)
    box.start(timeout=30)
    init_pid = box.pid
    os.kill(box.nspawn_pid, signal.SIGKILL)  # the container's systemd survives this
    box.stop()
    assert not _alive(init_pid)
    assert not any(os.path.exists(os.path.join(h, box.name)) for h in cgroup_hierarchies())
    assert _mounted_under(tmp_path) == []


@pytest.mark.systemd
@needs_nspawn
def test_failed_start_is_reported_and_cleaned_up(tmp_path):
    box = SystemdContainer(tmp_path / "work", binds_ro=(str(tmp_path / "missing"),))
    with pytest.raises(ContainerError) as failure:
        box.start(timeout=20)
    assert "console log" in str(failure.value)
    assert not any(os.path.exists(os.path.join(h, box.name)) for h in cgroup_hierarchies())
    assert _mounted_under(tmp_path) == []
