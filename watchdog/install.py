"""`ha-watchdog install-unit` and `ha-watchdog example-config`: install from a wheel alone.

The systemd unit and the example config live once, at the top of the repository
(`systemd/ha-watchdog.service`, `config.example.toml`). A wheel carries them as package
data under `watchdog/data/` (the build copies them there, see pyproject.toml); a checkout
(editable install) has no such directory and reads the repository's files in place. Either
way these commands print or install the very text the project tests.

The shipped unit's ExecStart= names the README's location (/opt/ha-watchdog); the unit
written here names the `ha-watchdog` script that is running (or `--bin PATH`) and the
config file given, so a venv elsewhere needs no hand edit. Every refusal exits 3 with the
reason, like the rest of the command line's usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence

UNIT_NAME = "ha-watchdog.service"
EXAMPLE_NAME = "config.example.toml"
UNIT_DIR = "/etc/systemd/system"
DEFAULT_CONFIG = "/etc/ha-watchdog/config.toml"
EXIT_OK, EXIT_REFUSED = 0, 3

_PACKAGE_DIR = Path(__file__).resolve().parent
# Where each file is in a wheel (package data), then in a checkout (the single source).
_SOURCES = {
    UNIT_NAME: (_PACKAGE_DIR / "data" / UNIT_NAME, _PACKAGE_DIR.parent / "systemd" / UNIT_NAME),
    EXAMPLE_NAME: (_PACKAGE_DIR / "data" / EXAMPLE_NAME, _PACKAGE_DIR.parent / EXAMPLE_NAME),
}
# systemd reads `%` (specifiers), `$` (variables), `\\`, quotes and whitespace in ExecStart=
# specially; a path made of these characters needs no quoting at all.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./+:@,=-]*$")
# ProtectHome=yes makes these invisible to the service: a script there cannot start.
_HIDDEN_BY_PROTECT_HOME = ("/home", "/root", "/run/user")
_EXEC_START = re.compile(r"(?m)^ExecStart=.*$")


class InstallError(Exception):
    """A refusal: the message says what to change."""


def packaged_file(name: str) -> Path:
    """The path of a shipped file: the wheel's copy, else the checkout's original."""
    for path in _SOURCES[name]:
        if path.is_file():
            return path
    raise InstallError(
        f"{name} is missing from this installation (looked in "
        f"{', '.join(str(p) for p in _SOURCES[name])}); reinstall ha-watchdog"
    )


def packaged_text(name: str) -> str:
    return packaged_file(name).read_text(encoding="utf-8")


def default_bin() -> Optional[str]:
    """The `ha-watchdog` console script beside the running interpreter (a venv's bin/)."""
    candidate = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "ha-watchdog")
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return None


def check_path(path: str, what: str) -> None:
    """Refuse a path that systemd would read differently or cannot see."""
    if not path.startswith("/"):
        raise InstallError(f"{what} must be an absolute path, got {path!r}")
    if not _SAFE_PATH.match(path):
        raise InstallError(
            f"{what} {path!r} has characters systemd reads specially in ExecStart= "
            "(whitespace, quotes, %, $, \\): use a path made of letters, digits and ._-/+:@,="
        )
    for hidden in _HIDDEN_BY_PROTECT_HOME:
        if path == hidden or path.startswith(hidden + "/"):
            raise InstallError(
                f"{what} {path} is under {hidden}, which the unit's ProtectHome=yes hides "
                "from the service: install ha-watchdog elsewhere (the README uses "
                "/opt/ha-watchdog) or pass --bin/--config with a path outside "
                f"{', '.join(_HIDDEN_BY_PROTECT_HOME)}"
            )


def render_unit(template: str, bin_path: str, config_path: str) -> str:
    """The unit with ExecStart= naming `bin_path` and `config_path`; the rest unchanged."""
    check_path(bin_path, "--bin")
    check_path(config_path, "--config")
    lines = _EXEC_START.findall(template)
    if len(lines) != 1:
        raise InstallError(f"the shipped unit has {len(lines)} ExecStart= lines, expected 1")
    return _EXEC_START.sub(f"ExecStart={bin_path} --config {config_path}", template)


def _read_existing(path: str) -> Optional[str]:
    """What `path` holds now (None: nothing there). Opened non-blocking, regular files
    only, read bounded: a FIFO or a device given as the target never hangs the command."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InstallError(f"cannot read the existing {path}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InstallError(f"{path} exists and is not a regular file")
        data = os.read(fd, 1 << 20)
    except OSError as exc:
        raise InstallError(f"cannot read the existing {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")


def write_file(path: str, text: str, mode: int, force: bool) -> str:
    """Write atomically (temp file + rename); "written", or "unchanged" when identical.

    An existing file with other content is kept unless `force`: it may hold local edits.
    """
    current = _read_existing(path)
    if current == text:
        try:
            os.chmod(path, mode)
        except OSError as exc:
            raise InstallError(f"cannot set mode {mode:o} on {path}: {exc.strerror or exc}"
                               ) from None
        return "unchanged"
    if current is not None and not force:
        raise InstallError(
            f"{path} exists with other content (local edits?); keep local changes in a "
            "drop-in (`systemctl edit ha-watchdog`) or pass --force to replace it"
            if path.endswith(".service")
            else f"{path} exists with other content; pass --force to replace it"
        )
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, temp = tempfile.mkstemp(prefix=".ha-watchdog-", dir=directory)
    except OSError as exc:
        raise InstallError(f"cannot write in {directory}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise InstallError(f"cannot write {path}: {exc.strerror or exc}") from None
    return "written"


# ---------------------------------------------------------------- commands


def _parser_unit() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ha-watchdog install-unit",
        description=(
            f"Install the systemd unit ({UNIT_NAME}) with ExecStart= naming this "
            "installation's ha-watchdog script, or print it."
        ),
        epilog=(
            "Then: systemctl daemon-reload && systemctl enable --now ha-watchdog. "
            "Local changes belong in a drop-in (systemctl edit ha-watchdog)."
        ),
    )
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the unit on stdout instead of installing it")
    parser.add_argument("--bin", metavar="PATH",
                        help="the ha-watchdog script for ExecStart= (default: the one beside "
                             "this Python, e.g. /opt/ha-watchdog/bin/ha-watchdog)")
    parser.add_argument("--config", metavar="PATH", default=DEFAULT_CONFIG,
                        help=f"the config file the service reads (default {DEFAULT_CONFIG})")
    parser.add_argument("--unit-dir", metavar="DIR", default=UNIT_DIR,
                        help=f"where to install the unit (default {UNIT_DIR})")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing unit file that differs")
    return parser


def _parser_example() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ha-watchdog example-config",
        description="Print the example configuration, or write it to a file (mode 0600).",
        epilog=f"e.g. ha-watchdog example-config --output {DEFAULT_CONFIG}",
    )
    parser.add_argument("--output", metavar="FILE", help="write it here instead of stdout")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing file that differs")
    return parser


def command_install_unit(argv: Sequence[str]) -> int:
    args = _parser_unit().parse_args(list(argv))
    bin_path = args.bin or default_bin()
    if bin_path is None:
        raise InstallError(
            f"no ha-watchdog script beside {sys.executable}; give its path with --bin PATH"
        )
    unit = render_unit(packaged_text(UNIT_NAME), bin_path, args.config)
    if not (os.path.isfile(bin_path) and os.access(bin_path, os.X_OK)):
        problem = f"--bin {bin_path} is not an executable file here"
        if not args.print_only:
            raise InstallError(problem)
        print(f"warning: {problem}", file=sys.stderr)
    if args.print_only:
        sys.stdout.write(unit)
        return EXIT_OK
    if not os.path.isdir(args.unit_dir):
        raise InstallError(f"{args.unit_dir} is not a directory (is this a systemd host?)")
    target = os.path.join(args.unit_dir, UNIT_NAME)
    outcome = write_file(target, unit, 0o644, args.force)
    print(f"{target}: {outcome} (ExecStart={bin_path} --config {args.config})")
    if not os.path.exists(args.config):
        print(f"note: {args.config} does not exist yet: ha-watchdog example-config "
              f"--output {args.config}")
    print("next: systemctl daemon-reload && systemctl enable --now ha-watchdog")
    return EXIT_OK


def command_example_config(argv: Sequence[str]) -> int:
    args = _parser_example().parse_args(list(argv))
    text = packaged_text(EXAMPLE_NAME)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    # Alert URLs and DSN passwords end up in this file: owner-only from the start.
    outcome = write_file(args.output, text, 0o600, args.force)
    print(f"{args.output}: {outcome} (mode 0600); edit [postgres] dsn and [[alerts.targets]]")
    return EXIT_OK


COMMANDS = {"install-unit": command_install_unit, "example-config": command_example_config}


def main(argv: List[str]) -> int:
    """`argv[0]` is the command name; usage errors and refusals exit 3."""
    name, rest = argv[0], argv[1:]
    try:
        return COMMANDS[name](rest)
    except InstallError as exc:
        print(f"ha-watchdog {name}: error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except SystemExit as exc:  # argparse: --help exits 0, a usage error 2 (Nagios wants 3)
        code = exc.code if isinstance(exc.code, int) else EXIT_REFUSED
        return EXIT_OK if code == 0 else EXIT_REFUSED

