"""The subprocess probe: run a command with a deadline enforced from outside it.

The command runs without a shell, in its own session (process group), and at the deadline
the whole group is killed, grandchildren included (`subprocess.run(timeout=)` alone leaves
them running). A command that cannot run is a result with a reason, never an exception.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence


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


def run_command(
    argv: Sequence[str],
    timeout: float,
    env: Optional[Mapping[str, str]] = None,
    clock=time.monotonic,
    input: Optional[bytes] = None,
) -> CommandResult:
    """Run `argv`, return what it printed; killed whole (process group) at `timeout`.

    `input` is written to its stdin (then closed); without it stdin is /dev/null.
    """
    argv = tuple(argv)
    start = clock()
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
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:  # pipes held open by an unkillable process
            out, err = b"", b""
        return CommandResult(
            argv,
            None,
            _decode(out),
            _decode(err),
            clock() - start,
            f"timed out after {timeout:g}s (killed)",
        )
    finally:
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
    # Kill stragglers that the command left behind in its group.
    _kill_group(proc)
    return CommandResult(argv, proc.returncode, _decode(out), _decode(err), clock() - start)


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
