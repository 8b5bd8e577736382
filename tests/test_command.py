"""probes.command.run_command: real processes, their stdin, and the deadline on the group."""

from __future__ import annotations

import os
import sys
import time

from conftest import ROOT

from watchdog.probes.command import package_env, run_command


def test_input_goes_to_stdin_and_stdin_is_otherwise_empty():
    fed = run_command(["sh", "-c", "wc -c; cat >/dev/null"], timeout=10, input=b"x" * 200_000)
    assert fed.ok and fed.stdout.strip() == "200000"  # larger than a pipe buffer
    empty = run_command(["sh", "-c", "wc -c"], timeout=10)
    assert empty.ok and empty.stdout.strip() == "0"  # /dev/null: never waits for a terminal


def test_the_whole_group_is_killed_at_the_deadline(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    started = time.monotonic()
    result = run_command(
        ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"], timeout=1, input=b"ignored"
    )
    assert time.monotonic() - started < 5
    assert result.returncode is None and result.error == "timed out after 1s (killed)"
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{grandchild}") and time.monotonic() < deadline:
        with open(f"/proc/{grandchild}/stat") as stat:
            if stat.read().split(") ", 1)[1].startswith("Z"):
                break  # killed, not yet reaped by its init
        time.sleep(0.05)
    else:
        assert not os.path.exists(f"/proc/{grandchild}"), "the grandchild survived the deadline"


def test_a_missing_command_is_a_reason(tmp_path):
    result = run_command([str(tmp_path / "nothing")], timeout=5, input=b"x")
    assert not result.ok and result.error == f"command not found: {tmp_path / 'nothing'}"


def test_package_env_makes_a_child_import_this_copy(tmp_path):
    env = package_env({"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "PATH": os.environ["PATH"]})
    parts = env["PYTHONPATH"].split(os.pathsep)
    assert parts == [str(ROOT), str(tmp_path)]  # ours first, once; the rest kept in order
    result = run_command([sys.executable, "-c", "import watchdog; print(watchdog.__file__)"],
                         timeout=30, env=env)
    assert result.ok and result.stdout.strip() == str(ROOT / "watchdog" / "__init__.py")


def test_output_is_capped_and_the_printer_killed_at_the_cap(tmp_path):
    """A command printing 1 GB was buffered whole (1.65 GB, 20 s past a 3 s deadline)."""
    pidfile = tmp_path / "printer.pid"
    result = run_command(
        ["sh", "-c", f"echo $$ > {pidfile}; exec head -c 1000000000 /dev/zero"],
        timeout=60, max_output=1024 * 1024,
    )
    assert not result.ok and result.returncode is None
    assert result.error == ("printed more than 1048576 bytes of output "
                            "(killed at the cap; the output is not used)")
    assert len(result.stdout) <= 1024 * 1024 + 64 * 1024  # read up to the cap, not beyond
    printer = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{printer}") or _zombie(printer)


def test_stderr_counts_towards_the_cap_and_small_output_is_whole():
    noisy = run_command(["sh", "-c", "head -c 300000 /dev/zero >&2"], timeout=30,
                        max_output=100_000)
    assert noisy.error is not None and noisy.error.startswith("printed more than 100000 bytes")
    fine = run_command(["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x"], timeout=30)
    assert fine.ok and fine.stdout == "x" * 300_000


def test_a_command_that_closes_its_output_still_meets_the_deadline():
    result = run_command(["sh", "-c", "exec >&- 2>&-; sleep 60"], timeout=1)
    assert result.error == "timed out after 1s (killed)"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True
