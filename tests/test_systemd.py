"""systemd integration: the unit file (lint, requirements, hardening under a real systemd),
the sd_notify wrapper against a real notify socket, journal logging and crash dumps."""

from __future__ import annotations

import io
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.nspawn import SystemdContainer, available, home_dropin, python_paths
from watchdog.config import DaemonConfig
from watchdog.probes.command import run_command
from watchdog.systemd import (
    STATUS_MAX_LEN,
    JournalFormatter,
    Notifier,
    journal_detected,
    sanitize_status,
    setup_logging,
    syslog_priority,
)

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "ha-watchdog.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")
NSPAWN_OK, NSPAWN_WHY_NOT = available()


# ---- the unit file --------------------------------------------------------------------------


def parse_unit(text: str) -> Dict[str, List[Tuple[str, str]]]:
    """Sections -> (key, value) pairs in order; keys may repeat, as systemd allows."""
    sections: Dict[str, List[Tuple[str, str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"key outside a section: {raw}"
        current.append((key.strip(), value.strip()))
    return sections


def values(section: List[Tuple[str, str]], key: str) -> List[str]:
    return [v for k, v in section if k == key]


def lintable_copy(tmp_path: Path, text: str) -> Path:
    """The unit with ExecStart= pointed at an executable that exists here.

    `systemd-analyze verify` complains when the ExecStart= binary is missing, and the
    production path (/opt/ha-watchdog/bin/ha-watchdog) is not installed on a test host.
    Everything else is verified as written.
    """
    true = os.path.realpath(shutil.which("true") or "/bin/true")
    rewritten, count = re.subn(
        r"^ExecStart=\S+", f"ExecStart={true}", text, count=1, flags=re.MULTILINE
    )
    assert count == 1
    path = tmp_path / "ha-watchdog.service"
    path.write_text(rewritten, encoding="utf-8")
    return path


def lint(path: Path):
    """`systemd-analyze verify`: it only warns (rc 0) on unknown keys and bad values, so
    the lint is "exit 0 and nothing on stderr"."""
    result = run_command([SYSTEMD_ANALYZE, "verify", str(path)], timeout=60)
    return result, (result.returncode == 0 and result.error is None and not result.stderr.strip())


@needs_analyze
def test_unit_passes_systemd_analyze_verify_silently(tmp_path):
    result, clean = lint(lintable_copy(tmp_path, UNIT.read_text(encoding="utf-8")))
    assert clean, result


@needs_analyze
@pytest.mark.parametrize(
    "breakage, message",
    [
        ("WatchdogSecs=120", "Unknown key"),  # a typo in a key is ignored, not fatal
        ("WatchdogSec=two minutes", "Failed to parse"),
    ],
)
def test_lint_catches_a_broken_copy(tmp_path, breakage, message):
    text = UNIT.read_text(encoding="utf-8").replace("WatchdogSec=120", breakage)
    assert text != UNIT.read_text(encoding="utf-8")
    result, clean = lint(lintable_copy(tmp_path, text))
    assert result.returncode == 0  # systemd itself does not fail on it ...
    assert not clean  # ... which is why the lint looks at stderr
    assert message in result.stderr


def test_unit_carries_the_required_settings():
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    service = unit["Service"]

    def one(key: str) -> str:
        found = values(service, key)
        assert len(found) == 1, (key, found)
        return found[0]

    assert one("Type") == "notify"  # systemd 252 has no notify-reload
    assert one("NotifyAccess") == "main"
    assert one("ExecStart") == (
        "/opt/ha-watchdog/bin/ha-watchdog --config /etc/ha-watchdog/config.toml"
    )
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Restart") == "on-failure"
    assert one("StateDirectory") == "ha-watchdog"
    # A metrics flood or a leak must not take the descriptors the probes need (issue 11).
    assert int(one("LimitNOFILE")) >= 4096
    assert 0 < int(one("TasksMax")) <= 1024
    assert one("ProtectSystem") == "strict"
    assert one("PrivateTmp") == "no"  # the PostgreSQL socket may live in /tmp
    assert one("NoNewPrivileges") == "yes"
    assert one("MemoryDenyWriteExecute") == "yes"
    assert set(one("RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    caps = one("CapabilityBoundingSet").split()
    assert "CAP_SYS_ADMIN" not in caps and "CAP_NET_ADMIN" not in caps
    assert "CAP_SYS_MODULE" not in caps
    assert values(service, "User") == []  # the probes need root
    assert unit["Install"] == [("WantedBy", "multi-user.target")]


def test_watchdog_timeout_fits_the_default_interval():
    """The loop pings every WatchdogSec/2, only after a completed cycle; a cycle starts
    every `interval` and takes up to ~15 s (its probes' deadlines), so every WatchdogSec/2
    window must cover interval + 15 s, plus slack for alert delivery and scheduling, or a
    healthy daemon gets killed."""
    service = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]
    watchdog_sec = float(values(service, "WatchdogSec")[0])
    max_cycle, slack = 15, 10
    assert watchdog_sec / 2 >= DaemonConfig().interval + max_cycle + slack
    assert float(values(service, "TimeoutStartSec")[0]) > 15  # READY=1 after one cycle


@needs_analyze
def test_security_exposure_stays_low(tmp_path):
    path = lintable_copy(tmp_path, UNIT.read_text(encoding="utf-8"))
    result = run_command([SYSTEMD_ANALYZE, "security", "--offline=true", str(path)], timeout=60)
    match = re.search(r"Overall exposure level for ha-watchdog\.service: ([0-9.]+)", result.stdout)
    assert match, result
    assert float(match.group(1)) <= 3.0, result.stdout


# ---- sanitize_status ------------------------------------------------------------------------


def test_status_is_folded_to_one_ascii_line():
    assert sanitize_status("drbd: café ✓\n\tpostgres:  ok ") == "drbd: cafe ? postgres: ok"
    assert sanitize_status("zero\u200bwidth") == "zerowidth"
    long = sanitize_status("x" * 500)
    assert len(long) == STATUS_MAX_LEN and long.endswith("...")


@given(st.text(), st.integers(min_value=0, max_value=300))
def test_status_is_always_printable_ascii_and_bounded(text, max_len):
    line = sanitize_status(text, max_len)
    assert len(line) <= max_len
    assert all(" " <= ch <= "~" for ch in line)
    line.encode("latin-1")  # what sdnotify does; must never fail


# ---- Notifier against a real notify socket --------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield str(path), sock
    sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode("ascii")


def nothing_pending(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        sock.recv(4096)
    except socket.timeout:
        return True
    finally:
        sock.settimeout(2)
    return False


def test_ready_status_and_watchdog_reach_the_socket(notify_socket):
    path, sock = notify_socket
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready()
    assert receive(sock) == "READY=1"
    notifier.ready(status="first cycle done")
    assert receive(sock) == "READY=1\nSTATUS=first cycle done"
    notifier.status("standby lag 3 s — primary «ok»\nsecond line")
    assert receive(sock) == "STATUS=standby lag 3 s ? primary ?ok? second line"
    notifier.watchdog_ping()
    assert receive(sock) == "WATCHDOG=1"
    notifier.stopping()
    assert receive(sock) == "STOPPING=1"
    notifier.close()


def test_reloading_carries_a_monotonic_timestamp(notify_socket):
    path, sock = notify_socket
    with Notifier(socket_path=path, environ={}, monotonic_usec=lambda: 12345678) as notifier:
        notifier.reloading(status="reloading config")
    assert receive(sock) == "RELOADING=1\nMONOTONIC_USEC=12345678\nSTATUS=reloading config"


def test_socket_path_overrides_the_environment(notify_socket, tmp_path):
    path, sock = notify_socket
    with Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "else")}, socket_path=path) as notifier:
        notifier.ready()
    assert receive(sock) == "READY=1"


def test_abstract_namespace_socket():
    name = "ha-watchdog-test-" + uuid.uuid4().hex
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        with Notifier(environ={"NOTIFY_SOCKET": "@" + name}) as notifier:
            notifier.watchdog_ping()
        assert receive(sock) == "WATCHDOG=1"


def test_reconnects_when_the_socket_is_recreated(tmp_path):
    path = str(tmp_path / "notify")
    first = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    first.bind(path)
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    notifier.ready()
    assert receive(first) == "READY=1"
    first.close()
    os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as second:
        second.bind(path)
        second.settimeout(2)
        notifier.watchdog_ping()  # the old connection is dead: reconnect and resend
        assert receive(second) == "WATCHDOG=1"
        notifier.close()


def test_sdnotify_is_imported_only_when_needed():
    code = (
        "import sys, watchdog.systemd as s; n = s.Notifier(environ={}); n.ready();"
        " n.watchdog_ping(); print('sdnotify' in sys.modules)"
    )
    result = run_command(
        [sys.executable, "-c", code], timeout=30, env=dict(os.environ, PYTHONPATH=str(ROOT))
    )
    assert result.stdout.strip() == "False", result


def test_without_a_socket_everything_is_a_quiet_no_op(tmp_path):
    notifier = Notifier(environ={})
    assert not notifier.enabled
    for call in (notifier.ready, notifier.watchdog_ping, notifier.stopping, notifier.reloading):
        assert call() is None
    assert notifier.status("x") is None
    # A socket that does not exist: dropped, never raised.
    gone = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert gone.enabled
    gone.ready(status="nobody listens")
    gone.watchdog_ping()


def test_an_empty_status_clears_it_and_sends_nothing_else(notify_socket):
    path, sock = notify_socket
    with Notifier(environ={"NOTIFY_SOCKET": path}) as notifier:
        notifier.status("")
    assert receive(sock) == "STATUS="
    assert nothing_pending(sock)


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"WATCHDOG_USEC": "120000000"}, 60.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4243"}, None),  # not ours
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ, expected):
    assert Notifier(environ=environ, getpid=lambda: 4242).watchdog_interval() == expected


def test_watchdog_interval_uses_the_real_pid_by_default():
    env = {"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(environ=env).watchdog_interval() == 1.5
    env["WATCHDOG_PID"] = str(os.getpid() + 1)
    assert Notifier(environ=env).watchdog_interval() is None


# ---- logging --------------------------------------------------------------------------------


@pytest.fixture
def clean_root_logger():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("apprise").level)
    yield root
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.getLogger("apprise").setLevel(saved[2])


@pytest.mark.parametrize(
    "level, prefix",
    [
        (logging.DEBUG, "<7>"),
        (logging.INFO, "<6>"),
        (logging.WARNING, "<4>"),
        (logging.ERROR, "<3>"),
        (logging.CRITICAL, "<2>"),
    ],
)
def test_journal_formatter_prefixes_the_syslog_priority(level, prefix):
    record = logging.LogRecord("watchdog.loop", level, __file__, 1, "cycle %d done", (7,), None)
    assert JournalFormatter().format(record) == f"{prefix}watchdog.loop: cycle 7 done"
    assert syslog_priority(level) == int(prefix[1])


def test_journal_formatter_prefixes_every_line_of_a_traceback():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter())
    logger = logging.getLogger("ha-watchdog-test.traceback")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        logger.exception("probe failed")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "<3>ha-watchdog-test.traceback: probe failed"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert "<3>ValueError: bad" in lines


def _log_to_file(tmp_path, environ, level="info"):
    path = tmp_path / "stderr.txt"
    with open(path, "w", encoding="utf-8") as stream:
        setup_logging(level, stream=stream, environ=environ)
        logging.getLogger("ha.test").warning("replay lag %s", "high")
        logging.getLogger("ha.test").debug("details")
    return path.read_text(encoding="utf-8")


def test_setup_logging_uses_the_journal_format_when_stderr_is_the_journal_stream(
    tmp_path, clean_root_logger
):
    path = tmp_path / "stderr.txt"
    path.write_text("")
    st_ = os.stat(path)
    text = _log_to_file(tmp_path, {"JOURNAL_STREAM": f"{st_.st_dev}:{st_.st_ino}"})
    assert text == "<4>ha.test: replay lag high\n"


def test_setup_logging_is_plain_when_stderr_was_redirected(tmp_path, clean_root_logger):
    text = _log_to_file(tmp_path, {"JOURNAL_STREAM": "1:2", "INVOCATION_ID": "abc"})
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING ha\.test: replay lag high\n", text
    ), text


def test_setup_logging_without_systemd_is_plain_and_honours_the_level(tmp_path, clean_root_logger):
    text = _log_to_file(tmp_path, {}, level="debug")
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" WARNING ha.test: replay lag high")
    assert lines[1].endswith(" DEBUG ha.test: details")
    # apprise logs secrets at DEBUG: it stays at INFO whatever our level.
    assert logging.getLogger("apprise").level == logging.INFO


def test_invocation_id_alone_means_journal_unless_a_terminal(tmp_path):
    with open(tmp_path / "f", "w") as stream:
        assert journal_detected({"INVOCATION_ID": "abc"}, stream)
        assert not journal_detected({}, stream)
    master, replica = os.openpty()  # a real terminal: e.g. StandardError=tty
    try:
        with os.fdopen(replica, "w") as terminal:
            assert not journal_detected({"INVOCATION_ID": "abc"}, terminal)
    finally:
        os.close(master)


def test_setup_logging_replaces_its_own_handler(clean_root_logger, tmp_path):
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        first = setup_logging("info", journal=True, stream=a)
        second = setup_logging("warning", journal=False, stream=b)
        ours = [h for h in clean_root_logger.handlers if h in (first, second)]
        assert ours == [second]
        assert clean_root_logger.level == logging.WARNING


# ---- crash dumps ----------------------------------------------------------------------------


def test_sigabrt_dumps_every_thread(tmp_path):
    """What systemd's watchdog does (SIGABRT), to a process that called enable_crash_dumps."""
    script = tmp_path / "abort.py"
    script.write_text(
        textwrap.dedent(
            """\
            import os, signal, threading
            from watchdog.systemd import enable_crash_dumps

            def worker_waits(event):
                event.wait()

            def main_aborts():
                event = threading.Event()
                threading.Thread(target=worker_waits, args=(event,), daemon=True).start()
                enable_crash_dumps()
                os.kill(os.getpid(), signal.SIGABRT)

            main_aborts()
            """
        ),
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = run_command([sys.executable, str(script)], timeout=30, env=env)
    assert result.returncode == -signal.SIGABRT
    assert "Fatal Python error: Aborted" in result.stderr
    assert "worker_waits" in result.stderr and "main_aborts" in result.stderr
    assert result.stderr.count("Thread 0x") + result.stderr.count("Current thread 0x") >= 2


def test_main_thread_takes_the_watchdog_sigabrt_after_sigstop(tmp_path):
    """A stopped daemon (the watchdog's case) gets SIGABRT then SIGCONT: any unblocked thread
    could take the pending signal. Only the main thread may, so its stack is dumped as the
    current thread, never read half-changed while it runs. Repeated: the choice was random."""
    script = tmp_path / "stopped.py"
    script.write_text(
        textwrap.dedent(
            """\
            import threading
            from concurrent.futures import ThreadPoolExecutor
            from watchdog.systemd import enable_crash_dumps

            def worker_waits(event):
                event.wait()

            def main_loop_waits():
                enable_crash_dumps()
                event = threading.Event()
                for _ in range(3):
                    threading.Thread(target=worker_waits, args=(event,), daemon=True).start()
                pool = ThreadPoolExecutor(4)
                list(pool.map(abs, range(8)))  # idle pool threads, like apprise's
                print("ready", flush=True)
                while True:
                    event.wait(0.05)

            main_loop_waits()
            """
        ),
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for attempt in range(8):
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            assert proc.stdout.readline() == "ready\n"
            for sig in (signal.SIGSTOP, signal.SIGABRT, signal.SIGCONT):
                os.kill(proc.pid, sig)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == -signal.SIGABRT, stderr
        current = stderr.split("Current thread 0x", 1)[1].split("\n\n", 1)[0]
        assert "main_loop_waits" in current, (attempt, stderr)
        assert "Segmentation fault" not in stderr
        assert stderr.count("Thread 0x") >= 4, stderr  # 3 workers, pool thread(s)


# ---- the hardened unit under a real systemd -------------------------------------------------

PROBE = textwrap.dedent(
    """\
    import ctypes, ctypes.util, json, os, signal, socket, struct, sys, time
    sys.path.insert(0, {repo!r})
    from watchdog.probes.command import run_command
    from watchdog.systemd import Notifier, enable_crash_dumps

    enable_crash_dumps()
    notifier = Notifier()
    STATE = "/var/lib/ha-watchdog/probe.json"
    generation = 0
    flags = {{"reload": False, "stop": False}}


    def attempt(fn, *args):
        try:
            return {{"ok": True, "value": fn(*args)}}
        except Exception as exc:
            return {{"ok": False, "error": repr(exc), "errno": getattr(exc, "errno", None)}}


    def imports():
        import apprise, psycopg, sdnotify, tenacity
        apprise.Apprise().add("json://127.0.0.1:9/")  # loads the plugins
        return psycopg.pq.__impl__


    def ctypes_callback():
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        cmp = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)
        )(lambda a, b: a[0] - b[0])
        numbers = (ctypes.c_int * 4)(3, 1, 2, 0)
        libc.qsort(numbers, 4, ctypes.sizeof(ctypes.c_int), cmp)
        return list(numbers)


    def postgres(host):
        import psycopg
        with psycopg.connect(host=host, user="postgres", dbname="postgres",
                             connect_timeout=5) as conn:
            return conn.execute("select 1").fetchone()[0]


    def write(path):
        with open(path, "w") as fh:
            fh.write("x")
        return "written"


    def command(*argv):
        result = run_command(argv, timeout=10)
        if result.error:
            raise RuntimeError(result.error)
        return result.stdout.strip()


    def genl_family(name):
        # CTRL_CMD_GETFAMILY on generic netlink, as drbdsetup does to find "drbd".
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 16) as s:
            s.settimeout(5)
            payload = name.encode() + b"\\0"
            attr = struct.pack("HH", 4 + len(payload), 2) + payload
            attr += b"\\0" * (-len(attr) % 4)
            body = struct.pack("BBH", 3, 1, 0) + attr
            s.send(struct.pack("IHHII", 16 + len(body), 0x10, 1, 1, 0) + body)
            reply = s.recv(65536)
        if struct.unpack("H", reply[4:6])[0] == 2:
            return "error %d" % -struct.unpack("i", reply[16:20])[0]
        return "found"


    def proc_status():
        fields = {{}}
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return {{k: fields[k] for k in ("CapBnd", "CapEff", "NoNewPrivs", "Seccomp", "Uid")}}


    def writable_executable_memory():
        import mmap
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        return "mapped"


    def blocked_syscall():
        os.sched_setaffinity(0, os.sched_getaffinity(0))  # @resources: denied
        return "allowed"


    def mounts():
        with open("/proc/self/mountinfo") as fh:
            return [line.split()[4] for line in fh]


    def run_checks():
        global generation
        generation += 1
        results = {{
            "generation": generation,
            "imports": attempt(imports),
            "ctypes_callback": attempt(ctypes_callback),
            "pg_unix_tmp": attempt(postgres, "/tmp"),
            "pg_tcp_loopback": attempt(postgres, "127.0.0.1"),
            "write_etc": attempt(write, "/etc/ha-watchdog-probe"),
            "write_tmp": attempt(write, "/tmp/ha-watchdog-probe"),
            "write_state": attempt(write, "/var/lib/ha-watchdog/probe.txt"),
            "svstat": attempt(command, "svstat", "/service/hvmail-demo"),
            "systemctl": attempt(command, "systemctl", "is-system-running"),
            "genl_nlctrl": attempt(genl_family, "nlctrl"),
            "blocked_syscall": attempt(blocked_syscall),
            "wx_memory": attempt(writable_executable_memory),
            "status": proc_status(),
            "mounts": mounts(),
        }}
        with open(STATE + ".tmp", "w") as fh:
            json.dump(results, fh)
        os.replace(STATE + ".tmp", STATE)


    signal.signal(signal.SIGHUP, lambda *a: flags.update(reload=True))
    signal.signal(signal.SIGTERM, lambda *a: flags.update(stop=True))
    run_checks()
    notifier.ready(status="probe generation 1")
    while not flags["stop"]:
        time.sleep(0.05)
        if flags["reload"]:
            flags["reload"] = False
            notifier.reloading()
            run_checks()
            notifier.ready(status="probe generation %d" % generation)
    notifier.stopping()
    """
)


def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.systemd
@pytest.mark.skipif(not NSPAWN_OK, reason=NSPAWN_WHY_NOT)
def test_hardened_unit_leaves_the_probes_what_they_need(tmp_path):
    """The unit as shipped (ExecStart swapped for a probe script) under a real systemd:
    PostgreSQL over a /tmp unix socket and TCP loopback, svstat on a supervised service,
    generic netlink, systemctl, CPython + dependencies under MemoryDenyWriteExecute; and
    the hardening is really in force. Reload (SIGHUP) and stop go through the daemon."""
    pg_bin = "/usr/lib/postgresql/15/bin"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("needs a postgres OS user (PostgreSQL server package)")
    if not os.path.exists(f"{pg_bin}/postgres") or not shutil.which("supervise"):
        pytest.skip("needs PostgreSQL 15 server binaries and daemontools")
    with SystemdContainer(tmp_path, binds_ro=(str(ROOT),)) as box:
        # A PostgreSQL listening on /tmp (where a source build puts its socket) and loopback.
        assert box.run(["install", "-d", "-o", "postgres", "-g", "postgres", "/srv/pg"]).ok
        initdb = box.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                f"{pg_bin}/initdb",
                "-D",
                "/srv/pg/data",
                "--no-sync",
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
            timeout=60,
        )
        assert initdb.ok, initdb
        assert box.start_helper(
            "lab-postgres",
            [
                f"{pg_bin}/postgres",
                "-D",
                "/srv/pg/data",
                "-k",
                "/tmp",
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            properties=["User=postgres"],
        ).ok
        # A daemontools service, as GreenArrow's /service/hvmail-* are.
        box.install_file("/service/hvmail-demo/run", "#!/bin/sh\nexec sleep 600\n", mode=0o755)
        assert box.start_helper("lab-supervise", ["supervise", "/service/hvmail-demo"]).ok
        assert _until(
            lambda: box.run(["svstat", "/service/hvmail-demo"]).stdout.find(": up (pid") > 0, 10
        )
        assert _until(lambda: box.run([f"{pg_bin}/pg_isready", "-h", "/tmp"]).ok, 20)
        assert box.run(["mkdir", "-p", "/mnt/drbd-demo"]).ok

        unit = re.sub(
            r"^ExecStart=.*$",
            f"ExecStart={sys.executable} /usr/local/lib/ha-watchdog-probe.py",
            UNIT.read_text(encoding="utf-8"),
            count=1,
            flags=re.MULTILINE,
        )
        box.install_file("/usr/local/lib/ha-watchdog-probe.py", PROBE.format(repo=str(ROOT)))
        # Only for the test interpreter (e.g. a pyenv in a home directory); the rest of
        # the home directories stays hidden.
        dropin = home_dropin([*python_paths(), str(ROOT)])
        box.install_unit(
            "ha-watchdog.service", unit, dropins={"interpreter.conf": dropin} if dropin else None
        )

        started = box.systemctl("start", "ha-watchdog.service", timeout=60)
        assert started.ok, (started, box.journal("ha-watchdog.service"))
        assert box.show("ha-watchdog.service", "ActiveState") == "active"
        assert box.show("ha-watchdog.service", "StatusText") == "probe generation 1"
        checks = json.loads(box.run(["cat", "/var/lib/ha-watchdog/probe.json"]).stdout)

        assert checks["imports"]["ok"], checks["imports"]
        assert checks["ctypes_callback"] == {"ok": True, "value": [0, 1, 2, 3]}
        assert checks["pg_unix_tmp"] == {"ok": True, "value": 1}, checks["pg_unix_tmp"]
        assert checks["pg_tcp_loopback"] == {"ok": True, "value": 1}, checks["pg_tcp_loopback"]
        assert checks["svstat"]["ok"] and ": up (pid " in checks["svstat"]["value"], checks
        assert checks["systemctl"]["ok"] and checks["systemctl"]["value"] in (
            "running",
            "degraded",
        ), checks["systemctl"]
        assert checks["genl_nlctrl"] == {"ok": True, "value": "found"}, checks["genl_nlctrl"]
        assert checks["write_state"]["ok"]
        # ... and the hardening is in force.
        assert checks["write_etc"]["errno"] == 30  # EROFS
        assert checks["write_tmp"]["errno"] == 30
        assert checks["blocked_syscall"]["errno"] == 1  # EPERM, not killed by SIGSYS
        assert checks["wx_memory"]["errno"] == 1  # MemoryDenyWriteExecute is really on
        status = checks["status"]
        assert int(status["CapBnd"], 16) == (1 << 1) | (1 << 2)  # DAC_OVERRIDE, DAC_READ_SEARCH
        assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
        assert status["Uid"].split()[0] == "0"

        # A mount made after start (a DRBD volume on failover) is seen after a reload.
        assert "/mnt/drbd-demo" not in checks["mounts"]
        assert box.run(["mount", "-t", "tmpfs", "lab-drbd", "/mnt/drbd-demo"]).ok
        reloaded = box.systemctl("reload", "ha-watchdog.service", timeout=30)
        assert reloaded.ok, reloaded
        assert box.wait_for("ha-watchdog.service", "StatusText", "probe generation 2", timeout=20)
        assert box.show("ha-watchdog.service", "ActiveState") == "active"
        checks = json.loads(box.run(["cat", "/var/lib/ha-watchdog/probe.json"]).stdout)
        assert "/mnt/drbd-demo" in checks["mounts"]

        assert box.systemctl("stop", "ha-watchdog.service", timeout=40).ok
        assert box.show("ha-watchdog.service", "Result") == "success"
        assert box.show("ha-watchdog.service", "NRestarts") == "0"
