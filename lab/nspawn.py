"""A real systemd, booted as PID 1 of a throwaway container, for tests.

Unit files, Type=notify, WatchdogSec=, Restart= and the hardening options only mean
something to a real systemd. This boots one in about half a second, needing root and
systemd-nspawn (Debian package `systemd-container`, pinned to the host's systemd version),
without touching the host:

* Everything runs inside `unshare --mount --propagation private`: the container's mounts
  live in a private mount namespace, which the kernel tears down when its last process
  exits, so nothing is ever mounted in the host's namespace.
* The container root is an overlay with `lowerdir=/` (the host's root file system, read
  through) and its upper layer on a tmpfs: whatever the container writes vanishes with it.
  Other file systems mounted on the host (and later changes under /) are only seen through
  binds: pass them in `binds_ro` / `binds_rw`.
* A tmpfs on the host's /run/systemd (inside the private namespace) keeps nspawn's runtime
  files off the host; timers.target is masked so no timer fires during a test.
* The process is put in a private cgroup under each systemd-relevant hierarchy
  (`/sys/fs/cgroup/systemd` and `/sys/fs/cgroup/unified` on a hybrid host, the cgroup2 root
  on a unified one); nspawn `--keep-unit --register=no` runs the container there, without
  machined. stop() kills whatever is left in those cgroups and removes them.
* `--private-network`: the container has its own loopback only. Reach it through unix
  sockets in a bound directory (`shared_dir`, bound at `SHARED_DIR_INSIDE`).

Commands run inside with `nsenter` into all of PID 1's namespaces, every one with a
deadline (run_command). Long-lived helpers (a PostgreSQL, a receiver) belong under the
container's systemd: start_helper() runs them as transient units with `systemd-run`.

The host side (can this machine run one, cgroups, /proc, and the part that runs in the
private mount namespace) is lab.nspawnhost; `python -m lab.nspawn --inner` stays the entry.

Typical use::

    with SystemdContainer(tmp_path, binds_ro=(repo_root,)) as box:
        box.install_unit("demo.service", text)
        assert box.systemctl("start", "demo.service").ok
        assert box.wait_for("demo.service", "NRestarts", lambda v: int(v) >= 1, timeout=10)
        print(box.journal("demo.service"))
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

from lab.nspawnhost import (
    CGROUP_ROOT,
    CONTAINER_ENV,
    SHARED_DIR_INSIDE,
    Bind,
    ContainerError,
    _bind_pair,
    _cgroup_pids,
    _find_container_init,
    _inner,
    _wait_exit,
    available,
    cgroup_hierarchies,
    home_dropin,
    python_paths,
)
from watchdog.probes.command import CommandResult, package_env, run_command

# Re-exported: the tests import these from here.
__all__ = [
    "CGROUP_ROOT", "CONTAINER_ENV", "SHARED_DIR_INSIDE", "Bind", "ContainerError",
    "SystemdContainer", "available", "cgroup_hierarchies", "home_dropin", "python_paths",
]


class SystemdContainer:
    """A booted systemd in a throwaway container; a context manager (start/stop).

    `workdir` (host, e.g. pytest's tmp_path) holds the mount points, `console.log` (the
    container's boot console) and `shared/` (bound read-write at SHARED_DIR_INSIDE).
    `binds_ro` / `binds_rw`: host paths, or (host, inside) pairs; the running interpreter's
    venv (if any) is always bound read-only at its own path, and its base installation is
    seen through the overlay (bind it too if it is on another file system). `unit` is the
    target systemd boots to: basic.target gives journald, sockets and a "running" system
    without the services of multi-user.target.
    """

    def __init__(
        self,
        workdir: Union[str, Path],
        binds_ro: Sequence[Bind] = (),
        binds_rw: Sequence[Bind] = (),
        unit: str = "basic.target",
        nspawn: str = "systemd-nspawn",
        python: str = sys.executable,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        if ":" in str(self.workdir):
            raise ValueError(f"workdir must not contain ':' (nspawn bind syntax): {workdir}")
        self.unit = unit
        self.nspawn = nspawn
        self.python = python
        self.name = "ha-watchdog-lab-" + uuid.uuid4().hex[:12]
        self.shared_dir = self.workdir / "shared"
        self.console_path = self.workdir / "console.log"
        ro = [_bind_pair(b) for b in binds_ro]
        in_venv = sys.prefix != sys.base_prefix
        if in_venv and sys.prefix not in [h for h, _ in ro]:
            ro.append((sys.prefix, sys.prefix))
        self.binds_ro: Tuple[Tuple[str, str], ...] = tuple(ro)
        self.binds_rw: Tuple[Tuple[str, str], ...] = tuple(_bind_pair(b) for b in binds_rw)
        self.pid: Optional[int] = None  # the container's PID 1, as the host sees it
        self.boot_state: Optional[str] = None  # "running" or "degraded" once booted
        self._proc: Optional[subprocess.Popen] = None
        self._console = None
        self._cgroups: Tuple[str, ...] = ()

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> SystemdContainer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 20.0) -> None:
        """Boot the container and wait until systemd reports the system running.

        Raises ContainerError (after cleaning up) with the console's last lines if it
        does not get there within `timeout`.
        """
        ok, reason = available(self.nspawn)
        if not ok:
            raise ContainerError(reason)
        if self._proc is not None:
            raise ContainerError("already started")
        deadline = time.monotonic() + timeout
        hierarchies = cgroup_hierarchies()
        self._cgroups = tuple(os.path.join(h, self.name) for h in hierarchies)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.shared_dir.mkdir(exist_ok=True)
        spec = {
            "cgroups": list(self._cgroups),
            "workdir": str(self.workdir),
            "argv": self._nspawn_argv(),
            "timeout": max(1.0, timeout / 4),
        }
        env = package_env()
        self._console = open(self.console_path, "ab")  # noqa: SIM115 - open until stop()
        try:
            self._proc = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    self.python,
                    "-m",
                    "lab.nspawn",
                    "--inner",
                    json.dumps(spec),
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            self.stop()
            raise ContainerError(f"cannot run unshare: {exc}") from exc
        try:
            self._wait_booted(deadline)
        except ContainerError:
            self.stop()
            raise

    def _nspawn_argv(self) -> List[str]:
        argv = [
            self.nspawn,
            "-q",
            "-D",
            str(self.workdir / "overlay" / "root"),
            "--boot",
            "--register=no",
            "--keep-unit",
            "--private-network",
            "--console=passive",
            "--link-journal=no",
            f"--bind={self.shared_dir}:{SHARED_DIR_INSIDE}",
        ]
        argv += [f"--bind-ro={h}:{i}" for h, i in self.binds_ro]
        argv += [f"--bind={h}:{i}" for h, i in self.binds_rw]
        argv += ["--", f"--unit={self.unit}"]
        return argv

    def _wait_booted(self, deadline: float) -> None:
        assert self._proc is not None
        while self.pid is None:
            if self._proc.poll() is not None:
                raise ContainerError(self._failure("nspawn exited during boot"))
            self.pid = _find_container_init(self._proc.pid)
            if self.pid is None:
                if time.monotonic() > deadline:
                    raise ContainerError(self._failure("container PID 1 did not appear"))
                time.sleep(0.02)
        state = ""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ContainerError(self._failure(f"not booted in time (state {state!r})"))
            result = self.run(["systemctl", "is-system-running", "--wait"], timeout=remaining)
            state = result.stdout.strip()
            if state in ("running", "degraded"):
                self.boot_state = state
                return
            if state == "maintenance":  # emergency/rescue mode: it will not get better
                raise ContainerError(self._failure("booted into maintenance (emergency) mode"))
            if self._proc.poll() is not None:
                raise ContainerError(self._failure("nspawn exited during boot"))
            time.sleep(0.05)

    def _failure(self, what: str) -> str:
        text = f"{what}; console log {self.console_path} ends:\n{self.console_log()[-3000:]}"
        if self.pid is not None:
            journal = self.run(["journalctl", "--no-pager", "-q", "-n", "30"], timeout=5)
            text += f"\njournal ends:\n{journal.stdout}"
        return text

    @property
    def nspawn_pid(self) -> Optional[int]:
        """The systemd-nspawn process (the container's supervisor), once started."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self.pid is not None

    def stop(self, timeout: float = 15.0) -> None:
        """Shut the container down and clean up; safe to call at any point, repeatedly.

        SIGTERM to nspawn powers the container off cleanly (units get their stop
        semantics); past half the timeout it is killed. Then every process left in the
        private cgroups is killed and the cgroups are removed. The mounts need no
        unmounting: they die with the private mount namespace.
        """
        deadline = time.monotonic() + timeout
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            if not _wait_exit(proc, deadline - timeout / 2):
                proc.send_signal(signal.SIGTERM)  # nspawn: a second SIGTERM = immediate
                if not _wait_exit(proc, time.monotonic() + 1.0):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
        if proc is not None and proc.poll() is None:
            _wait_exit(proc, max(deadline, time.monotonic() + 1.0))
        self.pid = None
        try:
            self._remove_cgroups(deadline)
        finally:
            if self._console is not None:
                self._console.close()
                self._console = None

    def _remove_cgroups(self, deadline: float) -> None:
        leftover = [c for c in self._cgroups if os.path.isdir(c)]
        while leftover:
            for top in leftover:
                for pid in _cgroup_pids(top):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                # Children before parents; rmdir fails (EBUSY) while a process remains.
                for dirpath, _dirs, _files in sorted(
                    os.walk(top), key=lambda entry: -entry[0].count("/")
                ):
                    with contextlib.suppress(OSError):
                        os.rmdir(dirpath)
            leftover = [c for c in leftover if os.path.isdir(c)]
            if not leftover:
                break
            if time.monotonic() > deadline:
                raise ContainerError(f"could not remove cgroups: {leftover}")
            time.sleep(0.05)
        self._cgroups = ()

    # -- talking to it ----------------------------------------------------------------

    def run(
        self, argv: Sequence[str], timeout: float = 10.0, env: Optional[Mapping[str, str]] = None
    ) -> CommandResult:
        """Run a command inside (all of PID 1's namespaces), killed at `timeout`.

        The command runs in the host's cgroup, not under the container's systemd: for
        anything that must outlive the call, use start_helper().
        """
        argv = tuple(argv)
        if self.pid is None:
            return CommandResult(argv, None, "", "", 0.0, "container not running")
        full = [
            "nsenter",
            "--target",
            str(self.pid),
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--cgroup",
            "--",
            *argv,
        ]
        merged = dict(CONTAINER_ENV)
        merged.update(env or {})
        return run_command(full, timeout, env=merged)

    def systemctl(self, *args: str, timeout: float = 10.0) -> CommandResult:
        """`systemctl ARGS` inside the container."""
        return self.run(["systemctl", "--no-pager", "--no-ask-password", *args], timeout)

    def show(self, unit: str, prop: str, timeout: float = 10.0) -> Optional[str]:
        """One property of a unit (`systemctl show -P`), None when it cannot be read."""
        result = self.systemctl("show", "-P", prop, unit, timeout=timeout)
        return result.stdout.strip() if result.ok else None

    def wait_for(
        self,
        unit: str,
        prop: str,
        value: Union[str, Callable[[str], bool]],
        timeout: float = 10.0,
        interval: float = 0.05,
    ) -> bool:
        """Poll a unit property until it equals `value` (or `value(current)` is true);
        False at the deadline. A callable that raises ValueError counts as no match."""
        deadline = time.monotonic() + timeout
        while True:
            current = self.show(unit, prop, timeout=max(1.0, deadline - time.monotonic()))
            if current is not None:
                try:
                    matched = value(current) if callable(value) else current == value
                except ValueError:
                    matched = False
                if matched:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def journal(self, unit: Optional[str] = None, timeout: float = 10.0) -> str:
        """The container's journal (of one unit, if given), with microsecond times."""
        argv = ["journalctl", "--no-pager", "-q", "-o", "short-precise"]
        if unit:
            argv += ["-u", unit]
        return self.run(argv, timeout).stdout

    def wait_for_journal(self, unit: Optional[str], text: str, timeout: float = 10.0) -> bool:
        """Poll the journal until `text` appears (journald writes asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            if text in self.journal(unit, timeout=max(1.0, deadline - time.monotonic())):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def install_file(
        self, path: str, content: Union[str, bytes], mode: int = 0o644, timeout: float = 10.0
    ) -> None:
        """Write a file inside the container (parent directories created, owner root).

        Staged in shared_dir and copied with `install` inside, so that symlinks on the
        way are resolved as the container sees them.
        """
        if not os.path.isabs(path):
            raise ValueError(f"path must be absolute: {path!r}")
        data = content.encode("utf-8") if isinstance(content, str) else content
        staged_name = ".install-" + uuid.uuid4().hex
        staged = self.shared_dir / staged_name
        staged.write_bytes(data)
        try:
            result = self.run(
                [
                    "install",
                    "-D",
                    "-m",
                    format(mode, "o"),
                    f"{SHARED_DIR_INSIDE}/{staged_name}",
                    path,
                ],
                timeout,
            )
        finally:
            staged.unlink()
        if not result.ok:
            raise ContainerError(f"install {path} failed: {result.error or result.stderr}")

    def install_unit(
        self, name: str, text: str, dropins: Optional[Mapping[str, str]] = None
    ) -> None:
        """Install /etc/systemd/system/NAME (+ NAME.d/*.conf drop-ins) and daemon-reload."""
        self.install_file(f"/etc/systemd/system/{name}", text)
        for conf, body in (dropins or {}).items():
            self.install_file(f"/etc/systemd/system/{name}.d/{conf}", body)
        result = self.systemctl("daemon-reload", timeout=30)
        if not result.ok:
            raise ContainerError(f"daemon-reload failed: {result.error or result.stderr}")

    def start_helper(
        self,
        name: str,
        argv: Sequence[str],
        properties: Sequence[str] = (),
        env: Optional[Mapping[str, str]] = None,
        timeout: float = 10.0,
    ) -> CommandResult:
        """Run a long-lived helper as transient unit NAME.service under the container's
        systemd (`systemd-run`; returns once it has been exec'ed). Stop it with
        `systemctl("stop", NAME)`; its output is in journal(NAME)."""
        run_argv = ["systemd-run", "--quiet", "--collect", f"--unit={name}", "--service-type=exec"]
        run_argv += [f"--property={p}" for p in properties]
        run_argv += [f"--setenv={k}={v}" for k, v in (env or {}).items()]
        return self.run([*run_argv, "--", *argv], timeout)

    def console_log(self) -> str:
        """What the container printed on its console (boot and shutdown messages)."""
        try:
            return self.console_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--inner":
        sys.exit(_inner(json.loads(sys.argv[2])))
    sys.exit("usage: python -m lab.nspawn --inner SPEC (used by SystemdContainer)")
