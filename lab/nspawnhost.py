"""lab.nspawn's host side: whether this machine can run a container, its cgroup
hierarchies and /proc plumbing, the paths the interpreter needs inside, and the part that
runs in the private mount namespace before it becomes systemd-nspawn (`_inner`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

from watchdog.probes.command import run_command

#: Where `shared_dir` appears inside the container (read-write bind).
SHARED_DIR_INSIDE = "/run/ha-watchdog-lab"

#: The environment of commands run inside: nothing of the caller's leaks in (a host
#: NOTIFY_SOCKET or INVOCATION_ID would confuse what runs inside).
CONTAINER_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}

CGROUP_ROOT = "/sys/fs/cgroup"

Bind = Union[str, Tuple[str, str]]


class ContainerError(RuntimeError):
    """The container could not be started, or a harness step inside it failed."""


def available(nspawn: str = "systemd-nspawn") -> Tuple[bool, str]:
    """Can a container be booted here? (False, why) when not."""
    if os.geteuid() != 0:
        return False, "needs root (systemd-nspawn, mounts and cgroups)"
    if shutil.which(nspawn) is None:
        return False, f"{nspawn} not found (Debian package systemd-container)"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return False, f"{tool} not found (util-linux)"
    if not cgroup_hierarchies():
        return False, f"no systemd cgroup hierarchy mounted under {CGROUP_ROOT}"
    return True, ""


def _mounts(mountinfo: str = "/proc/self/mountinfo") -> Dict[str, str]:
    """mount point -> file system type (the last mount on a point wins)."""
    result: Dict[str, str] = {}
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) >= 5 and right:
                    point = fields[4].replace("\\040", " ")
                    result[point] = right.split()[0]
    except OSError:
        pass
    return result


def cgroup_hierarchies(
    root: str = CGROUP_ROOT, mountinfo: str = "/proc/self/mountinfo"
) -> Tuple[str, ...]:
    """The cgroup hierarchies systemd uses here: unified, hybrid or legacy layout."""
    mounts = _mounts(mountinfo)
    if mounts.get(root) == "cgroup2":
        return (root,)  # unified
    found = []
    for sub, fstype in (("systemd", "cgroup"), ("unified", "cgroup2")):
        path = os.path.join(root, sub)
        if mounts.get(path) == fstype:
            found.append(path)
    return tuple(found)


def home_dropin(paths: Iterable[str]) -> str:
    """A [Service] drop-in that keeps ProtectHome= but shows `paths` that lie under it.

    ProtectHome=yes hides /root, /home and /run/user. A test venv or interpreter often
    lives there (e.g. a pyenv under a home directory); ProtectHome=tmpfs plus read-only
    binds keeps the rest hidden. Returns "" when none of `paths` is under a home directory.
    """
    homes = ("/root", "/home", "/run/user")
    wanted: List[str] = []
    for path in paths:
        real = os.path.realpath(path)
        for candidate in (path, real):
            under_home = any(candidate == h or candidate.startswith(h + "/") for h in homes)
            if under_home and candidate not in wanted:
                wanted.append(candidate)
    if not wanted:
        return ""
    lines = ["[Service]", "ProtectHome=tmpfs"]
    lines += [f"BindReadOnlyPaths={p}" for p in wanted]
    return "\n".join(lines) + "\n"


def python_paths() -> Tuple[str, ...]:
    """Directories the running interpreter needs (venv, its base installation)."""
    paths = []
    for path in (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix):
        if path and path not in paths:
            paths.append(path)
    return tuple(paths)


def _bind_pair(bind: Bind) -> Tuple[str, str]:
    host, inside = (bind, bind) if isinstance(bind, str) else bind
    host, inside = os.path.abspath(host), inside
    for path in (host, inside):
        if ":" in path or not os.path.isabs(path):
            raise ValueError(f"bind path must be absolute and without ':': {path!r}")
    return host, inside


def _wait_exit(proc: subprocess.Popen, deadline: float) -> bool:
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        return True
    except subprocess.TimeoutExpired:
        return False


def _read_status(pid: str) -> Dict[str, str]:
    fields = {}
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def _find_container_init(nspawn_pid: int) -> Optional[int]:
    """The child of nspawn that is PID 1 of a new PID namespace."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        status = _read_status(entry)
        if status.get("PPid") != str(nspawn_pid):
            continue
        nspid = status.get("NSpid", "").split()
        if len(nspid) >= 2 and nspid[-1] == "1":
            return int(entry)
    return None


def _cgroup_pids(top: str) -> List[int]:
    pids = []
    for dirpath, _dirs, files in os.walk(top):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(dirpath, "cgroup.procs"), encoding="ascii") as fh:
                    pids += [int(line) for line in fh if line.strip()]
            except (OSError, ValueError):
                pass
    return pids


# -- the part that runs inside the private mount namespace ---------------------------------


def _inner(spec: Mapping) -> int:
    """Set up cgroups and mounts in the fresh namespace, then become systemd-nspawn."""
    timeout = float(spec["timeout"])
    pid = str(os.getpid())
    for cgroup in spec["cgroups"]:
        os.makedirs(cgroup, exist_ok=True)
        with open(os.path.join(cgroup, "cgroup.procs"), "w", encoding="ascii") as fh:
            fh.write(pid)
    overlay = os.path.join(spec["workdir"], "overlay")
    os.makedirs(overlay, exist_ok=True)
    _mount(["-t", "tmpfs", "-o", "mode=0755", "tmpfs", overlay], timeout)
    upper, work, root = (os.path.join(overlay, d) for d in ("upper", "work", "root"))
    for path in (upper, work, root):
        os.mkdir(path)
    _mount(
        ["-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={upper},workdir={work}", root],
        timeout,
    )
    _mount(["-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run/systemd"], timeout)
    units = os.path.join(root, "etc/systemd/system")
    os.makedirs(units, exist_ok=True)
    timers = os.path.join(units, "timers.target")
    if os.path.lexists(timers):
        os.unlink(timers)
    os.symlink("/dev/null", timers)
    sys.stdout.flush()
    argv = spec["argv"]
    os.execvp(argv[0], argv)
    return 1  # not reached


def _mount(args: List[str], timeout: float) -> None:
    result = run_command(["mount", *args], timeout)
    if not result.ok:
        raise SystemExit(f"mount {' '.join(args)} failed: {result.error or result.stderr.strip()}")
