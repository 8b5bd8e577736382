"""The subprocess probe: run a command with a deadline enforced from outside it.

The command runs without a shell, in its own session (process group), and at the deadline
the whole group is killed, grandchildren included (`subprocess.run(timeout=)` alone leaves
them running). A command that cannot run is a result with a reason, never an exception.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence


@dataclass(frozen=True)
class CommandResult:
    argv: tuple
    returncode: Optional[int]  # None when it did not run or was killed at the deadline
    stdout: str
    stderr: str
    duration: float
    error: Optional[str] = None  # why it did not run or did not finish

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# What one command may print (stdout and stderr together) before it is killed: the probes'
# commands print kilobytes; a runaway one must not take the daemon's memory or its time.
MAX_OUTPUT = 4 * 1024 * 1024
_CHUNK = 64 * 1024


def run_command(
    argv: Sequence[str],
    timeout: float,
    env: Optional[Mapping[str, str]] = None,
    clock=time.monotonic,
    input: Optional[bytes] = None,
    max_output: int = MAX_OUTPUT,
) -> CommandResult:
    """Run `argv`, return what it printed; killed whole (process group) at `timeout`, or
    as soon as it has printed more than `max_output` bytes (both are errors, with the
    output read so far).

    `input` is written to its stdin (then closed); without it stdin is /dev/null.
    """
    argv = tuple(argv)
    start = clock()
    deadline = time.monotonic() + max(0.0, timeout)
    child_env = dict(os.environ if env is None else env)
    # Parsers expect untranslated, uncoloured output.
    child_env.setdefault("LC_ALL", "C")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=child_env,
        )
    except FileNotFoundError:
        return CommandResult(argv, None, "", "", clock() - start, f"command not found: {argv[0]}")
    except PermissionError:
        return CommandResult(argv, None, "", "", clock() - start, f"permission denied: {argv[0]}")
    except OSError as exc:
        return CommandResult(argv, None, "", "", clock() - start, f"cannot run {argv[0]}: {exc}")
    out: List[bytes] = []
    err: List[bytes] = []
    try:
        error = _exchange(proc, input, deadline, max_output, out, err)
        if error is None:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # closed its output but kept running
                error = "timeout"
        if error == "timeout":
            error = f"timed out after {timeout:g}s (killed)"
        if error is not None:
            _kill_group(proc)
            return CommandResult(argv, None, _decode(b"".join(out)), _decode(b"".join(err)),
                                 clock() - start, error)
    finally:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
    # Kill stragglers that the command left behind in its group.
    _kill_group(proc)
    return CommandResult(argv, proc.returncode, _decode(b"".join(out)), _decode(b"".join(err)),
                         clock() - start)


def _exchange(proc: subprocess.Popen, input: Optional[bytes], deadline: float,
              max_output: int, out: List[bytes], err: List[bytes]) -> Optional[str]:
    """Feed stdin and drain stdout/stderr until both close: None, "timeout", or the
    reason the output cap was hit. Reads at most `max_output` + one chunk."""
    sel = selectors.DefaultSelector()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        sinks = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
        for fd in sinks:
            sel.register(fd, selectors.EVENT_READ)
        pending = memoryview(input or b"")
        stdin_fd = -1
        if proc.stdin is not None:
            if pending:
                stdin_fd = proc.stdin.fileno()
                os.set_blocking(stdin_fd, False)
                sel.register(stdin_fd, selectors.EVENT_WRITE)
            else:
                proc.stdin.close()
        total = 0
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            for key, _ in sel.select(left):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        pending = pending[os.write(fd, pending[:_CHUNK]):]
                    except BlockingIOError:
                        continue
                    except OSError:  # the child closed its stdin (BrokenPipe)
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(fd)
                        assert proc.stdin is not None
                        proc.stdin.close()
                    continue
                data = os.read(fd, _CHUNK)
                if not data:
                    sel.unregister(fd)
                    continue
                sinks[fd].append(data)
                total += len(data)
                if total > max_output:
                    return (f"printed more than {max_output} bytes of output "
                            "(killed at the cap; the output is not used)")
        return None
    finally:
        sel.close()


def package_env(env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """`env` (default: ours) with this package first on PYTHONPATH, so that a child
    `python -m watchdog...` imports this very copy, from a source tree as from a venv."""
    out = dict(os.environ if env is None else env)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    rest = [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    out["PYTHONPATH"] = os.pathsep.join([root] + rest)
    return out


def _decode(data: Optional[bytes]) -> str:
    return (data or b"").decode("utf-8", errors="replace")
