"""A real daemontools service tree: `svscan` over a temporary directory of services.

Used by the tests and the demo as "hvmail-like services on the primary". Every service is
a real supervised process, so `svstat` (and the `services` check) see exactly what they
would see on a GreenArrow box. svscan, every supervise and every service process run in one
process group of their own, which `close()` kills whole before removing the tree.

Kinds of service:
- "up": runs a long sleep.
- "down": normally up (no `down` file), stopped with `svc -d` once supervised.
- "normally_down": has a `down` file, never started (GreenArrow's "down by default").
- "crashloop": its run script exits 1 at once; supervise restarts it about every second.
- "paused": up, then `svc -p` (SIGSTOP).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from watchdog.probes.command import CommandResult, run_command
from watchdog.probes.daemontools import SvstatEntry, parse_svstat

KINDS = ("up", "down", "normally_down", "crashloop", "paused")

_RUN_UP = "#!/bin/sh\nexec sleep 1000000\n"
_RUN_CRASH = "#!/bin/sh\necho 'lab: crashing on purpose' >&2\nexit 1\n"
_TOOLS = ("svscan", "supervise", "svstat", "svc")


class LabError(RuntimeError):
    """The lab could not bring the tree into the intended state (with what svstat said)."""


def missing_tools() -> Optional[str]:
    """Why a real tree cannot run here (a daemontools program not on PATH), or None."""
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"daemontools not installed ({', '.join(missing)} not found on PATH)"
    return None


def _write_script(path: str, text: str) -> None:
    """Replace a run script atomically, so supervise never execs a half-written file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.replace(tmp, path)


class ServiceTree:
    """A service directory with named services under `svscan`; a context manager.

    `services` maps a service name (e.g. "hvmail-httpd") to its kind (see KINDS). On enter
    it starts svscan and waits (at most `ready_timeout` seconds) until svstat shows every
    service in its intended state.
    """

    def __init__(
        self,
        base_dir: str,
        services: Mapping[str, str],
        ready_timeout: float = 15.0,
        command_timeout: float = 5.0,
        run: Callable[..., CommandResult] = run_command,
    ):
        for name, kind in services.items():
            if kind not in KINDS:
                raise ValueError(f"unknown service kind {kind!r} for {name!r}; use {KINDS}")
            if not name or "/" in name or name.startswith("."):
                raise ValueError(f"bad service name {name!r}")
        self.base_dir = base_dir
        self.services: Dict[str, str] = dict(services)
        self.ready_timeout = ready_timeout
        self.command_timeout = command_timeout
        self._run = run
        self.dir: Optional[str] = None
        self._svscan: Optional[subprocess.Popen] = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> ServiceTree:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create the tree, start svscan, wait until every service is as intended."""
        reason = missing_tools()
        if reason:
            raise LabError(reason)
        self.dir = tempfile.mkdtemp(prefix="svtree-", dir=self.base_dir)
        try:
            for name, kind in self.services.items():
                self._create(name, kind)
            self._svscan = subprocess.Popen(
                ["svscan", self.dir],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.dir,
            )
            deadline = time.monotonic() + self.ready_timeout
            for name in self.services:
                self._wait_supervised(name, deadline)
            for name, kind in self.services.items():
                if kind == "down":
                    self.stop(name)
                elif kind == "paused":
                    self.wait_for(name, lambda e: e.state == "up", deadline - time.monotonic())
                    self.svc(name, "-p")
            for name, kind in self.services.items():
                self.wait_for(name, _INTENDED[kind], max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Kill svscan, every supervise and service process (their group), remove the tree."""
        if self._svscan is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._svscan.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._svscan.wait(timeout=5)
            self._svscan = None
        if self.dir is not None:
            self._kill_strays()
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _kill_strays(self) -> None:
        """Kill any process still working in the tree (one that left our process group)."""
        assert self.dir is not None
        root = os.path.realpath(self.dir)
        try:
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        except OSError:
            return
        for pid in pids:
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                continue
            if cwd == root or cwd.startswith(root + os.sep):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    # ------------------------------------------------------------ layout

    def path(self, name: str) -> str:
        """The service directory of `name` (what svstat prints at the start of its line)."""
        if self.dir is None:
            raise LabError("the service tree is not open")
        return os.path.join(self.dir, name)

    def status_command(self, names: Optional[Sequence[str]] = None) -> List[str]:
        """`svstat <dir>/<service>...`: usable as `[services] command`."""
        return ["svstat"] + [self.path(n) for n in (names or list(self.services))]

    def _create(self, name: str, kind: str) -> None:
        path = self.path(name)
        os.mkdir(path)
        _write_script(os.path.join(path, "run"), _RUN_CRASH if kind == "crashloop" else _RUN_UP)
        if kind == "normally_down":
            open(os.path.join(path, "down"), "w").close()

    # ------------------------------------------------------------ svstat / svc

    def status(self, names: Optional[Sequence[str]] = None) -> Dict[str, SvstatEntry]:
        """svstat's view of the services, by name (missing when svstat printed nothing)."""
        result = self._run(self.status_command(names), timeout=self.command_timeout)
        entries, _ = parse_svstat(result.stdout)
        return {entry.name: entry for entry in entries}

    def svc(self, name: str, *flags: str) -> None:
        """Send `svc` flags (e.g. "-d", "-u", "-k") to a service; LabError if svc failed."""
        result = self._run(["svc", *flags, self.path(name)], timeout=self.command_timeout)
        if not result.ok or result.stderr.strip():
            raise LabError(
                f"svc {' '.join(flags)} {name} failed: {result.error or result.stderr.strip()}"
            )

    def start(self, name: str) -> None:
        """`svc -u`: want it up (and continue it if paused)."""
        self.svc(name, "-u", "-c")

    def stop(self, name: str) -> None:
        """`svc -d`: want it down; supervise sends TERM (and CONT)."""
        self.svc(name, "-d")

    def kill_service(self, name: str) -> None:
        """`svc -k`: SIGKILL the process; supervise restarts it if it is wanted up."""
        self.svc(name, "-k")

    def pause(self, name: str) -> None:
        self.svc(name, "-p")

    def make_crashloop(self, name: str, timeout: float = 10.0) -> None:
        """Turn a service into one whose run script exits at once, and restart it into that.

        Returns once svstat shows a process of the new run script.
        """
        _write_script(os.path.join(self.path(name), "run"), _RUN_CRASH)
        self.services[name] = "crashloop"
        self.svc(name, "-u", "-c", "-k")
        self.wait_for(name, lambda e: e.state == "up" and not _runs_sleep(e.pid), timeout)

    def make_healthy(self, name: str, timeout: float = 10.0) -> SvstatEntry:
        """Give a service the long-running run script again, want it up, wait until it runs."""
        _write_script(os.path.join(self.path(name), "run"), _RUN_UP)
        self.services[name] = "up"
        self.svc(name, "-u", "-c")
        return self.wait_for(name, lambda e: e.state == "up" and _runs_sleep(e.pid), timeout)

    # ------------------------------------------------------------ waiting

    def _wait_supervised(self, name: str, deadline: float) -> None:
        """Until supervise has opened its control fifo (then svc works)."""
        ok = os.path.join(self.path(name), "supervise", "ok")
        while time.monotonic() < deadline:
            if os.path.exists(ok) and self._run(["svok", self.path(name)], timeout=2).ok:
                return
            time.sleep(0.02)
        raise LabError(f"{name}: supervise did not start within {self.ready_timeout:g}s")

    def wait_for(
        self, name: str, predicate: Callable[[SvstatEntry], bool], timeout: float = 10.0
    ) -> SvstatEntry:
        """Poll svstat until `predicate(entry)` holds for `name`; LabError at `timeout`."""
        deadline = time.monotonic() + timeout
        last: Optional[SvstatEntry] = None
        while True:
            last = self.status([name]).get(name)
            if last is not None and predicate(last):
                return last
            if time.monotonic() >= deadline:
                seen = last.raw if last is not None else "no svstat line"
                raise LabError(f"{name}: not in the intended state after {timeout:g}s ({seen})")
            time.sleep(0.05)


def _runs_sleep(pid: Optional[int]) -> bool:
    """Whether `pid` is the long sleep of the healthy run script (not the crashing one)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0")[0].endswith(b"sleep")
    except OSError:
        return False


_INTENDED: Dict[str, Callable[[SvstatEntry], bool]] = {
    "up": lambda e: e.state == "up" and not e.paused and e.want is None,
    "down": lambda e: e.state == "down" and e.normally == "up" and e.want is None,
    "normally_down": lambda e: e.state == "down" and e.normally == "down",
    "crashloop": lambda e: e.state in ("up", "down"),
    "paused": lambda e: e.state == "up" and e.paused,
}
