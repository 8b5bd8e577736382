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
from typing import Any, Dict, List, Optional

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
    parser.add_argument(
        "command",
        nargs="?",
        choices=["demo", "maintenance"],
        help="demo: run the built-in demo; maintenance: see `ha-watchdog maintenance --help`",
    )
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
    parser.add_argument(
        "--pg-version", metavar="MAJOR",
        help="demo: run the cluster on this PostgreSQL major version (9.5, 10 ... 18; "
             "builds installed by .ci/pg-builds; default: the system's server)")
    return parser


def build_maintenance_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ha-watchdog maintenance",
        description=(
            "Silence paging on this node for a bounded time (planned work). Checks keep "
            "running and problems are tracked; when it ends one message lists what happened "
            "and problems still open page as usual. Acts on the running daemon through its "
            "state directory."
        ),
    )
    parser.add_argument("--config", metavar="PATH", help=f"configuration file (default {DEFAULT_PATH})")
    sub = parser.add_subparsers(dest="action", metavar="{on,off,status}")
    sub.required = True
    on = sub.add_parser("on", help="start (or extend) maintenance: --for and --reason required")
    on.add_argument("--for", dest="duration", metavar="DURATION",
                    help='how long, e.g. "30m", "2h" (required; at most [maintenance] max_duration)')
    on.add_argument("--reason", default="", help="why (goes into the notification; required)")
    off = sub.add_parser("off", help="end maintenance now")
    status = sub.add_parser("status", help="show the maintenance and what the daemon made of it")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    for command in (on, off):
        command.add_argument("--wait", type=float, default=20.0, metavar="SECONDS",
                             help="how long to wait for the running daemon to confirm "
                             "(default 20; 0: do not wait)")
    return parser


def _maintenance(argv: List[str], config: Optional[str]) -> int:
    from watchdog import maintenance

    args = build_maintenance_parser().parse_args(argv)
    try:
        cfg = load_config(args.config or config or DEFAULT_PATH)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(f"config error: {problem}", 3)
        return EXIT_UNKNOWN
    if args.action == "on":
        return maintenance.command_on(cfg, args.duration, args.reason, args.wait)
    if args.action == "off":
        return maintenance.command_off(cfg, args.wait)
    return maintenance.command_status(cfg, as_json=args.json)


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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("install-unit", "example-config"):
        from watchdog.install import main as install_main  # the files a wheel carries

        return install_main(argv)
    if "maintenance" in argv:
        # `ha-watchdog [--config P] maintenance ...`: a command line of its own.
        index = argv.index("maintenance")
        head = build_parser().parse_args(argv[:index])
        if head.once or head.check_config or head.test_alert or head.json or head.command:
            print("ha-watchdog: error: only --config may come before `maintenance`",
                  file=sys.stderr)
            return EXIT_UNKNOWN
        return _maintenance(argv[index + 1 :], head.config)
    args = build_parser().parse_args(argv)
    if args.json and not args.once:
        print("ha-watchdog: error: --json only goes with --once", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.pg_version and args.command != "demo":
        print("ha-watchdog: error: --pg-version only goes with demo", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.command == "demo":
        from watchdog.demo import run_demo

        return run_demo(quick=args.quick, verbose=args.verbose, pg_version=args.pg_version)
    try:
        cfg = _load(args)
    except ConfigError as exc:
        for problem in exc.problems:
            _say(f"config error: {problem}", 3)
        if args.check_config and len(exc.problems) > 1:
            _say(f"{len(exc.problems)} errors", 3)
        return EXIT_UNKNOWN
    except Exception as exc:  # noqa: BLE001 - last resort: a message, never a traceback
        _say(f"config error: {args.config or DEFAULT_PATH}: cannot load it "
             f"({type(exc).__name__}: {str(exc)[:200]})", 3)
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
    state = once_maintenance(cfg)
    if as_json:
        public = {k: v for k, v in state.items() if k != "line"}
        print(render_json(report, {"maintenance": public}))
    else:
        notes = [state["line"]] if state.get("line") else []
        print(render_table(report, colour=sys.stdout.isatty(), notes=notes))
    return int(report.status)


def once_maintenance(cfg: Config) -> Dict[str, Any]:
    """What `--once` says about maintenance: {"active": bool, ...the request} (+ "line")."""
    import time

    from watchdog.alerts.message import format_time
    from watchdog.maintenance import read_request
    from watchdog.units import format_duration

    now = time.time()
    request, error = read_request(cfg.daemon.state_dir, cfg.maintenance.max_duration, now)
    if error:
        return {"active": False, "error": error, "line": f"maintenance: unknown ({error})"}
    if request is None or not request.active(now):
        return {"active": False}
    line = (
        f"maintenance: ON until {format_time(request.until)} "
        f"({format_duration(request.until - now)} left), asked by {request.by}: "
        f"{request.reason} (the daemon pages nobody)"
    )
    return {"active": True, "reason": request.reason, "by": request.by,
            "started": request.started, "until": request.until, "line": line}


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
