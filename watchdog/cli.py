"""Command line: `ha-watchdog [--config PATH] [--once [--json] | --check-config | --test-alert]`.

Exit codes of `--once` follow the Nagios plugin convention (0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN); usage and configuration errors exit 3 with a message on stderr, never a
traceback. `--once` must not import apprise (slow to load): alert code is imported only in
the modes that send.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from watchdog import __version__
from watchdog.config import DEFAULT_PATH, Config, ConfigError, load_config

EXIT_UNKNOWN = 3


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; Nagios wants 3 (UNKNOWN)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_UNKNOWN)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ha-watchdog",
        description=(
            "Watch a two-node DRBD + PostgreSQL streaming-replication cluster. Without "
            "--once it runs as a daemon and sends alerts on state changes."
        ),
        epilog="`ha-watchdog demo` starts a whole two-node cluster on loopback and watches it.",
    )
    parser.add_argument("command", nargs="?", choices=["demo"], help="demo: run the built-in demo")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"configuration file (default {DEFAULT_PATH})",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run the checks once and exit (Nagios codes)")
    mode.add_argument("--check-config", action="store_true", help="validate the config and exit")
    mode.add_argument("--test-alert", action="store_true", help="send a test alert to every target")
    parser.add_argument("--json", action="store_true", help="with --once: print one JSON object")
    parser.add_argument("--version", action="version", version=f"ha-watchdog {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)  # demo: short form
    return parser


def _say(message: str, priority: int) -> None:
    """A line on stderr; under systemd with a syslog priority prefix (`journalctl -p`)."""
    from watchdog.systemd import journal_detected

    prefix = f"<{priority}>" if journal_detected() else ""
    print(f"{prefix}{message}", file=sys.stderr)


def _load(args: argparse.Namespace) -> Config:
    """The config: an explicit --config must exist; the default path may be absent."""
    if args.config is None and not os.path.exists(DEFAULT_PATH):
        if args.check_config:
            return load_config(DEFAULT_PATH)  # reports "not found"
        print(f"note: {DEFAULT_PATH} not found; using built-in defaults", file=sys.stderr)
        return Config()
    return load_config(args.config or DEFAULT_PATH)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.json and not args.once:
        print("ha-watchdog: error: --json only goes with --once", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.command == "demo":
        from watchdog.demo import run_demo

        return run_demo(quick=args.quick, verbose=args.verbose)
    try:
        cfg = _load(args)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(f"config error: {problem}", 3)
        if args.check_config and len(exc.problems) > 1:
            _say(f"{len(exc.problems)} errors", 3)
        return EXIT_UNKNOWN
    if args.check_config or args.once or args.test_alert:
        for warning in cfg.warnings:
            _say(f"warning: {warning}", 4)  # the daemon logs them itself
    if args.check_config:
        print(f"{cfg.source}: OK")
        return 0
    if args.once:
        return _once(cfg, as_json=args.json)
    if args.test_alert:
        return _test_alert(cfg)
    from watchdog.daemon import run_daemon

    return run_daemon(cfg, config_path=args.config or DEFAULT_PATH, verbose=args.verbose)


def _once(cfg: Config, as_json: bool) -> int:
    from watchdog.render import render_json, render_table
    from watchdog.runner import run_cycle, stateless_relax

    try:
        cycle = run_cycle(cfg, relax=stateless_relax(cfg))
    except Exception as exc:  # noqa: BLE001 - last resort: UNKNOWN, never a traceback
        print(f"UNKNOWN: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    report = cycle.report
    if as_json:
        print(render_json(report))
    else:
        print(render_table(report, colour=sys.stdout.isatty()))
    return int(report.status)


def _test_alert(cfg: Config) -> int:
    from watchdog.alerts.delivery import send_test

    if not cfg.alerts.targets:
        print("no [[alerts.targets]] configured", file=sys.stderr)
        return EXIT_UNKNOWN
    results = send_test(cfg, cfg.node_name)
    failed = 0
    for name, ok, message in results:
        print(f"{name}: {'ok' if ok else 'FAILED'}{(' - ' + message) if message else ''}")
        failed += 0 if ok else 1
    return 0 if failed == 0 else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
