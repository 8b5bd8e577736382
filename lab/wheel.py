"""Build this checkout's wheel and install it into a fresh venv, as an operator would.

For the tests that follow the README's install steps (tests/test_wheel.py) and run the
installed unit under a real systemd (tests/test_passfile_e2e.py): `pip wheel --no-deps`
of the checkout, `python -m venv`, then `pip install WHEEL` with its dependencies from
whatever package index pip is configured with. Each step runs with a deadline and
raises WheelError with pip's own output when it fails. Interpreters are found under
pyenv's root: the newest patch release of a minor version.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, Mapping, Optional

ROOT = Path(__file__).resolve().parent.parent


class WheelError(RuntimeError):
    """A build or install step failed; the message carries its output."""


def clean_env() -> Mapping[str, str]:
    """The caller's environment without what would make a child use this venv's packages."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(argv: List[str], timeout: float, what: str) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                env=dict(clean_env()))
    except subprocess.TimeoutExpired:
        raise WheelError(f"{what}: no result within {timeout:g}s") from None
    except OSError as exc:
        raise WheelError(f"{what}: cannot run {argv[0]}: {exc}") from None
    if result.returncode != 0:
        raise WheelError(f"{what} failed (exit {result.returncode}):\n"
                         f"{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result


def build_wheel(dest: Path, source: Path = ROOT, python: str = sys.executable) -> Path:
    """The wheel of `source`, built by pip into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    _run([python, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(source)],
         600, "pip wheel")
    wheels = sorted(dest.glob("ha_watchdog-*.whl"))
    if len(wheels) != 1:
        raise WheelError(f"expected one ha_watchdog wheel in {dest}, found {wheels}")
    return wheels[0]


def install_venv(python: str, wheel: Path, venv: Path, timeout: float = 900) -> Path:
    """A new venv at `venv` made by `python`, with the wheel and its dependencies: the
    README's steps (venv, upgrade pip, install)."""
    _run([python, "-m", "venv", str(venv)], 120, f"{python} -m venv")
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    _run([*pip, "install", "-q", "--upgrade", "pip"], timeout, "pip install --upgrade pip")
    _run([*pip, "install", "-q", str(wheel)], timeout, f"pip install {wheel.name}")
    return venv


def pyenv_root() -> Optional[str]:
    root = os.environ.get("PYENV_ROOT")
    if not root:
        try:
            found = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10)
            root = found.stdout.strip() if found.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            root = None
    root = root or os.path.expanduser("~/.pyenv")
    return root if os.path.isdir(root) else None


def find_python(minor: str) -> Optional[str]:
    """The running interpreter if it is `minor` ("3.8"), else the newest pyenv patch release
    of it (3.8.18 over 3.8.9); None when there is none."""
    if minor == "{}.{}".format(*sys.version_info[:2]):
        return sys.executable
    root = pyenv_root()
    if root is None:
        return None
    candidates = []
    for path in glob.glob(os.path.join(root, "versions", f"{minor}.*", "bin", "python")):
        match = re.search(rf"/{re.escape(minor)}\.(\d+)/bin/python$", path)
        if match and os.access(path, os.X_OK):
            candidates.append((int(match.group(1)), path))
    return max(candidates)[1] if candidates else None
